"""Verification engine tests: records, failures, the sandboxed path and the CLI entry."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from model_discovery.errors import one_line
from model_discovery.gau import Design, ScaleConfig, UnitSpec, load_seed
from model_discovery.records import DataConfig, VerifyResult
from model_discovery.records.result import RESULT_NAME
from model_discovery.train.loop import peak_memory_bytes
from model_discovery.verify.engine import (_graph_payload, _judged, _verify, export_entry, sandbox_entry, sandbox_limits,
                                         verify_command, verify_design)

TINY = ScaleConfig(name="tiny", d_model=32, n_block=1, context_len=32, vocab_size=512, train_tokens=4096,
                   batch_size=8, lr=1e-2, device="cpu")
DATA = DataConfig(max_bytes=300_000)
BUDGET = {"train_tokens": 4096, "final_eval_batches": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


def broken_design() -> Design:
    seed = load_seed("gpt2")
    units = dict(seed.units)
    source = units["GeluMLP"].source.replace("super().__init__(d_model, block_loc, ctx)",
                                             "super().__init__(d_model, block_loc, ctx)\n"
                                             "        raise RuntimeError('mlp refuses to build')")
    units["GeluMLP"] = UnitSpec(**{**units["GeluMLP"].model_dump(), "source": source})
    return Design(name="gpt2-broken", root=seed.root, units=units)


def _execute_in_process(payload: dict[str, Any], out_dir: Path
                        ) -> tuple[bool, dict[str, Any] | None, str, str, float, int]:
    """Export and judge in this process (trusted seeds only): the two sandboxed steps, unsandboxed."""
    t0 = time.perf_counter()
    graph_dir = Path(tempfile.mkdtemp(prefix="modis-verify-graph-"))
    try:
        payload = _graph_payload(payload, graph_dir)
        export_entry(payload)
        result = sandbox_entry(payload)
    except Exception as exc:  # noqa: BLE001 - mirror the sandbox's failed outcome
        return False, None, one_line(exc), "exception", time.perf_counter() - t0, 0
    finally:
        shutil.rmtree(graph_dir, ignore_errors=True)
    return _judged(result, time.perf_counter() - t0, peak_memory_bytes(torch.device("cpu")))


def in_process(design: Design, out: Path) -> VerifyResult:
    return _verify(design, TINY, out, DATA, eval=False, probes=False, wandb=False, train_overrides=BUDGET,
                   seed=0, cache_dir=None, execute=_execute_in_process)


def test_verify_writes_a_record(tmp_path: Path) -> None:
    seed = load_seed("gpt2")
    record = in_process(seed, tmp_path)
    assert record.status == "ok" and record.error == ""
    assert record.design == "gpt2" and record.fingerprint == seed.fingerprint() and record.scale == "tiny"
    assert record.train is not None and record.train.completed and record.train.tokens >= 4096
    assert record.final_val_loss == record.train.final_val_loss < 6.3
    assert record.tokens_per_s > 0 and record.peak_memory_bytes > 0 and record.wall_s > 0
    saved = VerifyResult.load(tmp_path)
    assert saved == record
    assert json.loads((tmp_path / RESULT_NAME).read_text())["status"] == "ok"
    assert (tmp_path / "train" / "checkpoint.pt").exists()
    assert "gpt2" in record.summary() and "val loss" in record.summary()


def test_replicated_verification_records_means_and_spread(tmp_path: Path) -> None:
    record = _verify(load_seed("gpt2"), TINY, tmp_path, DATA, eval=False, probes=False, wandb=False,
                     train_overrides=BUDGET, seed=5, cache_dir=None, execute=_execute_in_process, replicates=3)
    assert record.status == "ok", record.error
    assert [r.seed for r in record.replicates] == [5, 6, 7]
    losses = [r.final_val_loss for r in record.replicates]
    assert len(set(losses)) == 3  # the seeds really differ
    assert record.final_val_loss == pytest.approx(sum(losses) / 3)
    assert record.spread["final_val_loss"] > 0
    assert record.train is not None and record.train.final_val_loss == losses[0]
    assert (tmp_path / "train" / "model.safetensors").exists()
    assert (tmp_path / "replicates" / "seed7" / "train" / "model.safetensors").exists()
    assert "3 seeds: val loss" in record.summary()
    assert VerifyResult.load(tmp_path) == record
    # one seed alone is the same run as the first replicate
    single = in_process(load_seed("gpt2"), tmp_path / "single")
    assert single.replicates == [] and single.spread == {}
    first = _verify(load_seed("gpt2"), TINY, tmp_path / "s5", DATA, eval=False, probes=False, wandb=False,
                    train_overrides=BUDGET, seed=5, cache_dir=None, execute=_execute_in_process)
    assert first.final_val_loss == losses[0]


def test_a_design_that_fails_gives_a_failed_record(tmp_path: Path) -> None:
    record = in_process(broken_design(), tmp_path)
    assert record.status == "failed" and record.train is None
    assert "mlp refuses to build" in record.error and "\n" not in record.error
    assert VerifyResult.load(tmp_path / RESULT_NAME).status == "failed"


def test_verify_design_trains_inside_the_sandbox(tmp_path: Path) -> None:
    from model_discovery.check.sandbox import SandboxLimits

    limits = SandboxLimits(wall_time_s=300, threads=1, writable_dirs=[tmp_path],
                           allowed_imports=sandbox_limits({"scale": TINY.model_dump()}, tmp_path).allowed_imports)
    record = verify_design(load_seed("gpt2"), TINY, tmp_path, data_config=DATA, eval=False, probes=False,
                           wandb=False, train_overrides=BUDGET, limits=limits)
    assert record.status == "ok", record.error
    assert record.train is not None and record.train.completed
    assert VerifyResult.load(tmp_path).fingerprint == record.fingerprint

    bad = verify_design(broken_design(), TINY, tmp_path / "bad", data_config=DATA, eval=False, probes=False,
                        wandb=False, train_overrides=BUDGET, limits=limits.model_copy(
                            update={"writable_dirs": [tmp_path / "bad"]}))
    assert bad.status == "failed" and "mlp refuses to build" in bad.error


def graph_break_design() -> Design:
    """gpt2 whose MLP breaks the compiled graph in its forward (runs fine eagerly)."""
    seed = load_seed("gpt2")
    units = dict(seed.units)
    source = units["GeluMLP"].source
    head, sep, tail = source.partition("def _forward(self, X, **Z):\n")
    assert sep, "GeluMLP has no _forward to patch"
    units["GeluMLP"] = UnitSpec(**{**units["GeluMLP"].model_dump(),
                                   "source": head + sep + "        torch._dynamo.graph_break()\n" + tail})
    return Design(name="gpt2-graph-break", root=seed.root, units=units)


@pytest.mark.slow
@pytest.mark.parametrize("design", [load_seed("gpt2"), graph_break_design()], ids=["gpt2", "graph-break"])
def test_compiled_training_inside_the_sandbox(design: Design, tmp_path: Path) -> None:
    """torch.compile runs its compiler toolchain in the sandbox, also across graph breaks in design code."""
    record = verify_design(design, TINY, tmp_path, data_config=DATA, eval=False, probes=False, wandb=False,
                           train_overrides={**BUDGET, "compile": True})
    assert record.status == "ok", record.error
    assert record.train is not None and record.train.completed
    assert record.train.compiled and record.train.compile_fallback is None, record.train.compile_fallback
    assert record.train.first_step_s > 0


def test_wandb_logging_is_offline_and_never_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from model_discovery.verify.tracking import log_verification, wandb_mode

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode() == "offline"
    record = in_process(load_seed("gpt2"), tmp_path / "run")
    run_dir = log_verification(record, tmp_path / "run")
    assert run_dir is not None and Path(run_dir).is_dir() and "offline-run" in run_dir
    with ThreadPoolExecutor(2) as pool:  # two workers finishing at once: both runs are logged
        dirs = list(pool.map(lambda i: log_verification(record, tmp_path / f"w{i}"), range(2)))
    assert all(d is not None and Path(d).is_dir() for d in dirs) and dirs[0] != dirs[1]
    monkeypatch.setenv("WANDB_MODE", "no-such-mode")  # wandb rejects it: logged, not raised
    assert log_verification(record, tmp_path / "run") is None


def test_verify_command_rejects_unknown_designs_and_scales(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_command("no-such-seed", "micro", str(tmp_path)) == 2
    assert "unknown seed 'no-such-seed'" in capsys.readouterr().err
    assert verify_command("gpt2", "huge", str(tmp_path)) == 2
    assert "unknown scale 'huge'" in capsys.readouterr().err


def gated_leak_design() -> Design:
    """gpt2 whose MLP adds the next token's input behind a learnable gate that starts at zero:
    exactly causal when checked, leaking as soon as training moves the gate."""
    seed = load_seed("gpt2")
    units = dict(seed.units)
    source = units["GeluMLP"].source
    source = source.replace("super().__init__(d_model, block_loc, ctx)",
                            "super().__init__(d_model, block_loc, ctx)\n"
                            "        self.gate = nn.Parameter(torch.zeros(1))", 1)
    head, sep, tail = source.partition("def _forward(self, X, **Z):\n")
    body = "        X = X + self.gate * torch.roll(X, -1, 1)\n"
    units["GeluMLP"] = UnitSpec(**{**units["GeluMLP"].model_dump(), "source": head + sep + body + tail})
    return Design(name="gpt2-gated-leak", root=seed.root, units=units)


def test_a_leak_that_grows_in_training_fails_verification(tmp_path: Path) -> None:
    from model_discovery.check import run_checks

    design = gated_leak_design()
    assert run_checks(design, "micro").get("causality").passed  # the gate is exactly zero at the check
    record = verify_design(design, TINY, tmp_path, data_config=DATA, eval=False, probes=False, wandb=False,
                           train_overrides=BUDGET)
    assert record.status == "failed" and record.error_kind == "causality", record.error
    assert record.error.startswith("after training: not causal") and record.train is None


def test_the_record_is_never_written_through_a_planted_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    out = tmp_path / "run"
    out.mkdir()
    (out / RESULT_NAME).symlink_to(outside)
    (out / f".{RESULT_NAME}.tmp").symlink_to(outside)
    record = in_process(load_seed("gpt2"), out)
    assert record.status == "ok" and outside.read_text() == "keep me"
    assert not (out / RESULT_NAME).is_symlink() and VerifyResult.load(out).fingerprint == record.fingerprint
