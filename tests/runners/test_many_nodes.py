"""Many nodes, one tree: verification workers (real processes) share one PostgreSQL tree.

Each worker runs ``modis serve``: select + claim (leases,
bounded by the rung budget), a real tiny verification, ``add_result``. A first worker is
SIGKILLed while holding a lease; the others must take that pick over once the lease expires,
never verify a (design, scale) twice, and stop at the budget.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model_discovery.evolution import EvolutionTree
from model_discovery.gau import load_seed

pytestmark = pytest.mark.slow

SEEDS = ["gpt2", "llama", "gla", "retnet"]  # gpt2 is the baseline, so it is always picked first
BUDGET = 3
LEASE_TTL = 8.0


def _worker(url: str, owner: str, run_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "model_discovery.cli", "serve", "--tree-url", url,
           "--run-dir", str(run_dir), "--scale", "micro", "--budget", f"micro={BUDGET}", "--owner", owner,
           "--lease-ttl", str(LEASE_TTL), "--train-tokens", "4096", "--no-eval", "--no-probes", "--no-wandb",
           "--exit-when-idle", "--poll", "1", "--runner", "local"]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    # own process group: killing it takes the worker's verification subprocesses too, like a lost node
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def _events(log: Path) -> list[dict]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def _wait_for(predicate, timeout_s: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_three_workers_share_one_postgres_tree(fresh_pg_url: str, tmp_path: Path) -> None:
    tree = EvolutionTree(fresh_pg_url)
    for seed in SEEDS:
        tree.add_design(load_seed(seed), status="checked")

    # 1. a victim claims the first pick, then dies without releasing its lease
    victim_log = tmp_path / "victim.log"
    victim = _worker(fresh_pg_url, "victim", tmp_path / "run", victim_log)
    try:
        _wait_for(lambda: any(e["event"] == "claimed" for e in _events(victim_log)), 300, "the victim's claim")
    finally:
        _kill(victim)
    claimed = next(e for e in _events(victim_log) if e["event"] == "claimed")
    orphan = (claimed["design"], claimed["scale"])
    assert orphan == ("gpt2", "micro")
    held = [lease for lease in tree.leases() if (lease.design, lease.scale) == orphan]
    assert [lease.owner for lease in held] == ["victim"]
    _wait_for(lambda: not tree.leases(live_only=True), LEASE_TTL + 30, "the victim's lease to expire")

    # 2. three workers share the rest of the budget
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    procs = [_worker(fresh_pg_url, f"w{i}", tmp_path / "run", logs[i]) for i in range(3)]
    try:
        for p, log in zip(procs, logs):
            rc = p.wait(timeout=900)
            assert rc == 0, f"worker exited with {rc}: {log.read_text()[-2000:]}"
    finally:
        for p in procs:
            if p.poll() is None:
                _kill(p)

    verified = [(e["owner"], e["design"], e["scale"]) for log in logs for e in _events(log) if e["event"] == "verified"]
    pairs = [(d, s) for _, d, s in verified]
    assert len(pairs) == len(set(pairs)), f"verified twice: {verified}"
    assert not any(e["event"] == "verified" for e in _events(victim_log))
    assert not any(e["event"] == "lease-lost" for log in logs for e in _events(log))

    results = tree.results(scale="micro")
    assert sorted((r.design, r.scale) for r in results) == sorted(pairs)
    assert len(results) == BUDGET, "the micro budget bounds the verifications"
    assert all(r.status == "ok" for r in results), [r.record.get("error") for r in results]
    assert orphan in pairs, "the killed worker's pick was taken over"
    assert {o for o, d, _ in verified if (d, "micro") == orphan} <= {"w0", "w1", "w2"}
    assert tree.leases() == [], "every lease was released by add_result"
    assert tree.spent("micro") == BUDGET
    tree.close()
