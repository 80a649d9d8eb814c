"""Dependencies between the package's layers point one way.

Every module of ``model_discovery`` is parsed (never imported) and its imports of
``model_discovery.*`` are checked against this table. A layer may import itself and the layers
listed for it, nothing else; a layer lists only layers above it in the table, so the table is a DAG
(checked too)::

    layer       packages / modules                                      may import
    ---------   -----------------------------------------------------   ----------------------------------
    records     records, errors, safe_io, paths                          (nothing)
    gau         gau                                                      records
    train       train                                                    records
    check       check                                                    records, gau, train
    verify      verify                                                   records, gau, train, check
    runners     runners                                                  records, verify
    evolution   evolution                                                records, gau
    select      select                                                   records, gau, evolution
    knowledge   knowledge                                                records, gau
    genome      genome (unit invention)                                  records, gau
    agents      agents                                                   records, gau, check, knowledge, genome
    design      design (the design flow)                                 records, gau, agents
    config      config (SystemConfig)                                    records, gau, select, design
    scheduler   scheduler                                                records, evolution, runners, select
    system      system                                                   everything above but cli, app
    app         app (Streamlit)                                          records, gau, evolution, knowledge,
                                                                         genome, agents, config
    cli         cli                                                      everything above but app

    records(+errors, safe_io, paths) <- gau <- check <- verify <- runners <- scheduler <- system <- cli
    records <- train <- check;  records <- evolution <- select <- scheduler;  gau <- knowledge <- agents
    check <- agents <- design <- config <- system;  select <- config;  gau <- genome <- agents

Also asserted, for every module:

- no module-level import cycle (``from pkg import submodule`` counts as importing the submodule);
- no ``model_discovery.*`` import inside a function, except in the sandbox warm-ups
  (:data:`WARMUP_FUNCTIONS`: functions that import what a sandboxed target needs before the
  sandbox locks imports down);
- function-level imports of other packages only for heavy or optional ones (:data:`LAZY_OK`),
  ``torch`` only in modules that do not import it at module level, anything in a warm-up, and the
  few imports listed in :data:`INTENDED` with their reason.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "model_discovery"

# layer -> (module prefixes, allowed layers); in order: a layer lists only layers before it
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "records": (("records", "errors", "safe_io", "paths"), ()),
    "gau": (("gau",), ("records",)),
    "train": (("train",), ("records",)),
    "check": (("check",), ("records", "gau", "train")),
    "verify": (("verify",), ("records", "gau", "train", "check")),
    "runners": (("runners",), ("records", "verify")),
    "evolution": (("evolution",), ("records", "gau")),
    "select": (("select",), ("records", "gau", "evolution")),
    "knowledge": (("knowledge",), ("records", "gau")),
    "genome": (("genome",), ("records", "gau")),
    "agents": (("agents",), ("records", "gau", "check", "knowledge", "genome")),
    "design": (("design",), ("records", "gau", "agents")),
    "config": (("config",), ("records", "gau", "select", "design")),
    "scheduler": (("scheduler",), ("records", "evolution", "runners", "select")),
    "system": (("system",), ("records", "gau", "train", "check", "verify", "runners", "evolution", "select",
                             "knowledge", "genome", "agents", "design", "config", "scheduler")),
    "app": (("app",), ("records", "gau", "evolution", "knowledge", "genome", "agents", "config")),
    "cli": (("cli",), ("records", "gau", "train", "check", "verify", "runners", "evolution", "select",
                       "knowledge", "genome", "agents", "design", "config", "scheduler", "system")),
}

# functions that import modules only so that they are loaded before the sandbox's lockdown
WARMUP_FUNCTIONS = frozenset({"sandbox_warmup"})

# single function-level imports that are the point of their function
INTENDED: dict[tuple[str, str, str], str] = {
    ("model_discovery.check.probe", "torch_workout", "torch.distributions"):
        "the sandbox probe checks that a lazy torch submodule import works after the lockdown",
}

# packages (dotted prefixes) that may be imported inside functions: heavy or optional ones
LAZY_OK = ("ray", "beaker", "lm_eval", "wandb", "datasets", "huggingface_hub", "transformers", "openai",
           "anthropic", "semanticscholar", "arxiv", "pyseccomp", "streamlit", "langgraph",
           "torch._inductor", "torch.fx.experimental")
# ... and ``torch`` itself, in modules that do not import it at module level (they run without it)
LAZY_IF_NOT_TOP = ("torch",)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement imports (``from pkg import sub`` names ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        here = here[: len(here) - (node.level - 1)]
        base = ".".join(here + ([node.module] if node.module else []))
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    return subs + ([base] if len(subs) < len(node.names) else [])


class Imports:
    """Module-level and function-level imports of every module."""

    def __init__(self) -> None:
        self.top: dict[str, set[str]] = defaultdict(set)
        self.in_function: list[tuple[str, str, str, int]] = []  # (module, function, imported, line)
        for module, path in MODULES.items():
            self._visit(module, path, ast.parse(path.read_text()), None)

    def _visit(self, module: str, path: Path, node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._visit(module, path, child, child.name)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, path, child):
                    if function is None:
                        self.top[module].add(target)
                    else:
                        self.in_function.append((module, function, target, child.lineno))
            else:
                self._visit(module, path, child, function)


IMPORTS = Imports()


def layer_of(module: str) -> str:
    rest = module.split(".", 1)[1] if "." in module else ""
    for layer, (prefixes, _) in LAYERS.items():
        if any(rest == p or rest.startswith(p + ".") for p in prefixes):
            return layer
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        if module != "model_discovery":
            layer_of(module)


def test_layer_table_is_a_dag() -> None:
    order = list(LAYERS)
    for layer, (_, allowed) in LAYERS.items():
        later = [a for a in allowed if a not in order or order.index(a) >= order.index(layer)]
        assert not later, f"layer {layer} may import {later}, which are not listed before it"


def test_records_import_nothing_else() -> None:
    bottom = [m for m in MODULES if m != "model_discovery" and layer_of(m) == "records"]
    assert "model_discovery.errors" in bottom and "model_discovery.safe_io" in bottom
    bad = [f"{m} imports {t}" for m in bottom for t in sorted(IMPORTS.top[m])
           if t.startswith("model_discovery") and t != "model_discovery" and layer_of(t) != "records"]
    assert not bad, "\n".join(bad)


def test_dependencies_point_one_way() -> None:
    forbidden = []
    for module, targets in sorted(IMPORTS.top.items()):
        if module == "model_discovery":
            continue
        layer = layer_of(module)
        allowed = {layer, *LAYERS[layer][1]}
        for target in sorted(targets):
            if target.startswith("model_discovery.") and layer_of(target) not in allowed:
                forbidden.append(f"{module} ({layer}) imports {target} ({layer_of(target)})")
    print("\n".join(forbidden))
    assert not forbidden, "forbidden imports:\n" + "\n".join(forbidden)


def test_no_module_level_import_cycle() -> None:
    graph = {m: {t for t in IMPORTS.top[m] if t in MODULES and t != m} for m in MODULES}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [m, t]) if t in stack else f"{m} -> {t}")
            elif t not in state:
                visit(t, stack + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_function_level_project_imports() -> None:
    bad = [f"{m}:{line} {fn}() imports {t}" for m, fn, t, line in IMPORTS.in_function
           if (t == "model_discovery" or t.startswith("model_discovery.")) and fn not in WARMUP_FUNCTIONS]
    assert not bad, "move these imports to module level:\n" + "\n".join(bad)


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_function_level_imports_only_for_heavy_packages() -> None:
    bad = []
    for m, fn, t, line in IMPORTS.in_function:
        if t.startswith("model_discovery") or fn in WARMUP_FUNCTIONS or _under(t, LAZY_OK) or (m, fn, t) in INTENDED:
            continue
        root = t.split(".")[0]
        if _under(t, LAZY_IF_NOT_TOP) and not any(x.split(".")[0] == root for x in IMPORTS.top[m]):
            continue
        bad.append(f"{m}:{line} {fn}() imports {t}")
    assert not bad, "move these imports to module level (or allow the package in LAZY_OK):\n" + "\n".join(bad)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer_names_real_modules(layer: str) -> None:
    assert any(layer_of(m) == layer for m in MODULES if m != "model_discovery"), f"layer {layer} has no module"
