"""The scheduler keeps every worker busy: jobs overlap, each result is stored once, leases end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from model_discovery.config import SystemConfig
from model_discovery.gau import load_seed
from model_discovery.records import VerifyOptions
from model_discovery.system import BuildSystem

TINY = VerifyOptions(eval=False, probes=False, wandb=False, train_tokens=4096)


def test_two_workers_run_at_once_and_store_each_result_once(tmp_path: Path) -> None:
    cfg = SystemConfig(run_dir=tmp_path / "run", seeds=["gpt2"], budgets={"micro": 3}, workers=2,
                       worker_threads=1, verify=TINY)
    events: list[dict[str, Any]] = []
    system = BuildSystem(cfg)
    try:
        for seed in ("gpt2", "llama", "gla"):
            system.tree.add_design(load_seed(seed), status="checked")
        done = system.serve(exit_when_idle=True, poll_s=0.2,
                            emit=lambda event, **f: events.append({"event": event, "t": time.monotonic(), **f}))
        kinds = [e["event"] for e in events]
        assert kinds[0] == "start" and kinds[-1] == "exit"
        # two claims before the first result: both workers were busy at once
        assert kinds.index("verified") > 2 and kinds[1:3] == ["claimed", "claimed"]
        assert sorted(done) == ["gla@micro", "gpt2@micro", "llama@micro"]
        results = system.tree.results(scale="micro")
        assert sorted(r.design for r in results) == ["gla", "gpt2", "llama"]
        assert all(r.status == "ok" and r.fitness is not None for r in results)
        assert system.tree.leases() == [] and system.tree.spent("micro") == 3
    finally:
        system.close()


@pytest.mark.slow
def test_design_steps_do_not_wait_for_verifications(tmp_path: Path) -> None:
    """One worker trains the seed while the design step runs: the step ends first."""
    cfg = SystemConfig(run_dir=tmp_path / "run", seeds=["gpt2"], steps=1, budgets={"micro": 2},
                       verify=TINY.model_copy(update={"train_tokens": 60_000}))
    system = BuildSystem(cfg)
    try:
        report = system("discover a new model", progress=False)
    finally:
        system.close()
    run = tmp_path / "run"
    step_ended = (run / "outcomes.jsonl").stat().st_mtime
    seed_verified = (run / "verify" / "gpt2@micro" / "verify_result.json").stat().st_mtime
    assert step_ended < seed_verified, "the design step waited for the verification"
    assert len(report.outcomes) == 1 and "gpt2@micro" in report.verified
    assert len(report.verified) == 1 + (report.outcomes[0].status == "committed")
