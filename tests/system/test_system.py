"""BuildSystem end to end: seeds in, symbolic design steps, real verification, leaderboard, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_discovery.config import SystemConfig
from model_discovery.gau import load_seed
from model_discovery.records import VerifyOptions
from model_discovery.system import BuildSystem
from tests.evolution.integrity import integrity_problems


def _config(run_dir: Path, steps: int = 2) -> SystemConfig:
    return SystemConfig(run_dir=run_dir, seeds=["gpt2", "llama"], steps=steps, budgets={"micro": 4},
                        verify=VerifyOptions(eval=False, probes=False, wandb=False, train_tokens=20_000))


@pytest.mark.slow
def test_discover_designs_verifies_and_ranks(tmp_path: Path) -> None:
    system = BuildSystem(_config(tmp_path / "run"))
    try:
        report = system("discover a new model")
    finally:
        system.close()
    assert len(report.outcomes) == 2 and all(o.status in ("committed", "failed", "rejected") for o in report.outcomes)
    stats = report.stats
    assert stats["seeds"] == 2 and stats["designs"] >= 2
    # budget of 4 training runs at micro: the two seeds first, then replicates or new designs
    designs = {v.split(" ")[0] for v in report.verified}
    runs = sum(3 - 1 if "(+2 seeds)" in v else 1 for v in report.verified)
    assert 2 <= runs <= 4 and stats["results_by_scale"]["micro"] == len(designs)
    assert any(line.startswith("micro: ") and "training runs" in line for line in report.findings)
    assert "gpt2@micro" in report.verified and report.best and report.best[0].fitness is not None
    record = json.loads((tmp_path / "run" / "verify" / "gpt2@micro" / "verify_result.json").read_text())
    assert record["status"] == "ok" and record["train"]["val_loss"]
    note = (tmp_path / "run" / "verify" / "gpt2@micro" / "observation.md").read_text()
    assert note.startswith("gpt2 (4 units, root PreNormBlock)") and "final_val_loss=" in note
    assert (tmp_path / "run" / "config.yaml").exists()
    assert len((tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()) == 2
    assert "fitness" in report.summary()


@pytest.mark.slow
def test_reopened_run_continues_without_duplicates(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "run", steps=1).model_copy(update={"verify": VerifyOptions(
        eval=False, probes=False, wandb=False, train_tokens=20_000)})
    first = BuildSystem(cfg)
    try:
        first.discover(progress=False)
        before = first.tree.stats()
    finally:
        first.close()
    second = BuildSystem(cfg)  # same run dir: seeds are not re-added, results not redone
    try:
        assert sorted(second.bootstrap()) == ["gpt2", "llama"]
        assert second.tree.stats().designs == before.designs
        second.discover(steps=1, progress=False)
        after = second.tree.stats()
    finally:
        second.close()
    assert after.designs >= before.designs and not integrity_problems(second.tree)
    lines = (tmp_path / "run" / "outcomes.jsonl").read_text().splitlines()
    assert [json.loads(line)["thread_id"] for line in lines] == ["design-00000", "design-00001"]


def test_a_run_keeps_a_seed_whose_library_source_has_changed_since(tmp_path: Path) -> None:
    """Reopening a run after the library changed a seed's code: the stored seed stays, nothing is re-added."""
    from model_discovery.evolution import EvolutionTree

    seed = load_seed("gpt2")
    unit = seed.units["GeluMLP"]
    older = seed.model_copy(update={"units": {**seed.units, "GeluMLP": unit.model_copy(
        update={"source": unit.source.replace("F.gelu(self.fc(X))", "F.gelu(self.fc(X), approximate='tanh')")})}})
    assert older.fingerprint() != seed.fingerprint()
    run = tmp_path / "run"
    EvolutionTree(run / "tree.sqlite").add_design(older, operator="seed")
    system = BuildSystem(_config(run).model_copy(update={"seeds": ["gpt2"]}))
    try:
        assert system.bootstrap() == ["gpt2"]
        assert system.tree.count() == 1 and system.tree.get_design("gpt2").fingerprint == older.fingerprint()
    finally:
        system.close()


def test_leases_of_a_killed_local_run_are_released(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    system = BuildSystem(_config(tmp_path / "run"))
    try:
        system.tree.add_design(load_seed("gpt2"), operator="seed")
        host = socket.gethostname()
        assert system.tree.claim_verification("gpt2", "micro", f"{host}:{dead}", ttl_s=3600)
        assert system.tree.claim_verification("gpt2", "14M", f"other-host:{dead}", ttl_s=3600)
        assert system.release_orphaned_leases() == ["gpt2@micro"]
        assert [(x.design, x.scale) for x in system.tree.leases(live_only=True)] == [("gpt2", "14M")]
    finally:
        system.close()


@pytest.mark.slow
def test_sigkilled_discover_resumes_without_lost_or_duplicated_work(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from model_discovery.evolution import EvolutionTree

    run = tmp_path / "run"
    cfg = _config(run, steps=3).model_copy(update={"seeds": ["gpt2"]})
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    cmd = [sys.executable, "-m", "model_discovery.cli", "discover", "--config", str(tmp_path / "c.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "outcomes.jsonl").exists():  # killed after a first step
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run / "outcomes.jsonl").exists(), "the first design step did not finish in time"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    tree = EvolutionTree(run / "tree.sqlite")
    assert not integrity_problems(tree)
    designs = tree.list_designs()
    assert len({d.fingerprint for d in designs}) == len(designs)
    pairs = [(r.design, r.scale) for r in tree.results()]
    assert len(pairs) == len(set(pairs)) and ("gpt2", "micro") in pairs
    assert not tree.leases(live_only=True)
    threads = [json.loads(line)["thread_id"] for line in (run / "outcomes.jsonl").read_text().splitlines()]
    assert threads[:2] == ["design-00000", "design-00001"] and len(threads) == len(set(threads))
