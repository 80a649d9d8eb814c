# Fresh machine: `make discover` or `make test` (each creates .venv and installs first).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv discover test test-slow test-all bench clean

$(STAMP): pyproject.toml
	# The sandbox needs bubblewrap (kernel namespaces); as root, install it from the distribution.
	command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null); } || \
	  echo "warning: bubblewrap is missing: sandboxed checks will fail closed until it is installed"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch first (a local wheel); a plain `torch` requirement would pull a CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,scale]'
	touch $(STAMP)

venv: $(STAMP)

discover: $(STAMP)
	$(BIN)/modis discover --config etc/discover-cpu.yaml
	$(BIN)/modis tree show --run-dir runs/discover

# Two workers (the machines have two cores); a file's tests stay on one worker. `make test` is
# everything but the tests marked slow (end-to-end discoveries, clusters, compilation, browser);
# `make test-slow` runs those, `make test-all` both (CI runs both).
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

test: $(STAMP)
	$(PYTEST) -m "not slow"

test-slow: $(STAMP)
	$(PYTEST) -m slow

test-all: test test-slow

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
