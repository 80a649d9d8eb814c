"""The Evolve page's parts without a browser: continuing a run's config, what a running run is
doing (phase, training progress, ETA), stopping a job with a sandbox-like child in a session of
its own, the run-level chart data and the compare view's unit diff."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil

from model_discovery.agents.usage import UsageRecord
from model_discovery.app import charts, jobs, progress, runform
from model_discovery.app.layout import robust_range
from model_discovery.config import SystemConfig
from model_discovery.evolution import EvolutionTree
from model_discovery.gau import load_seed
from model_discovery.records import ResultRecord, TrainProgress


def test_continue_uses_the_runs_config_and_lists_differences(tmp_path: Path) -> None:
    cfg = SystemConfig(run_dir=tmp_path, seeds=["gpt2", "gla"], steps=3, ladder=["micro"],
                       verify={"eval": False, "train_tokens": 200_000})
    (tmp_path / "config.yaml").write_text(cfg.to_yaml())
    base, existing = runform.run_base(tmp_path)
    form = runform.form_defaults(base)
    assert existing and form.train_tokens == 200_000 and form.eval is False and form.ladder == ["micro"]
    same = runform.apply(base, form.model_copy(update={"steps": 1}))
    assert runform.differences(base, same) == []  # more steps is no change of the run's settings
    assert same.seeds == ["gpt2", "gla"]  # settings the form does not show are kept
    other = runform.apply(base, form.model_copy(update={"train_tokens": 300_000, "eval": True}))
    assert runform.differences(base, other) == [("verify.eval", False, True),
                                               ("verify.train_tokens", 200_000, 300_000)]
    path, args = runform.start_args(other, "")
    assert args == ["discover", "discover a new model", "--config", str(path), "--run-dir", str(tmp_path)]
    assert SystemConfig.load(path).verify.train_tokens == 300_000


def test_a_new_run_and_a_broken_config(tmp_path: Path) -> None:
    base, existing = runform.run_base(tmp_path)
    assert not existing and base.ladder == ["micro"]
    (tmp_path / "config.yaml").write_text("steps: -1\n")
    try:
        runform.run_base(tmp_path)
    except runform.ConfigError as exc:
        assert "config.yaml" in str(exc) and "steps" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("a broken config.yaml must be refused")


def test_phase_training_progress_and_eta(tmp_path: Path) -> None:
    assert progress.design_phase(tmp_path) == (None, None)
    (tmp_path / "state.json").write_text(json.dumps({"step": 2, "thread": "design-00002"}))
    assert progress.design_phase(tmp_path) == ("design-00002", "select parents")
    with sqlite3.connect(tmp_path / "flow_checkpoints.sqlite") as conn:  # the flow store's table, as written
        conn.execute("CREATE TABLE writes (thread_id TEXT, checkpoint_ns TEXT, checkpoint_id TEXT, task_id TEXT, "
                     "task_path TEXT, idx INTEGER, channel TEXT, type TEXT, value BLOB)")
        conn.executemany("INSERT INTO writes VALUES (?, '', ?, 't', '', 0, ?, NULL, NULL)",
                         [("design-00002", "1", "branch:to:review"), ("design-00002", "2", "branch:to:check"),
                          ("design-00001", "3", "branch:to:commit")])
    assert progress.design_phase(tmp_path) == ("design-00002", "check")

    tree = EvolutionTree(tmp_path / "tree.sqlite")
    gpt2 = load_seed("gpt2")
    tree.add_design(gpt2, check={"passed": True}, operator="seed")
    assert tree.claim_verification("gpt2", "micro", "host:1", 60.0)
    folder = tmp_path / "verify" / "gpt2@micro" / "train"
    folder.mkdir(parents=True)
    (folder / "progress.json").write_text(TrainProgress(step=30, end_step=120, loss=4.5, elapsed_s=60.0,
                                                        updated_at=time.time()).model_dump_json())
    [run] = progress.trainings(tmp_path, tree)
    assert (run.design, run.scale, run.progress.step, run.progress.eta_s) == ("gpt2", "micro", 30, 180.0)
    tree.close()
    assert progress.run_eta_s(1000.0, 2, 6, now=1100.0) == 200.0
    assert progress.run_eta_s(1000.0, 0, 6) is None
    assert progress.fmt_duration(3725) == "1 h 02 min" and progress.fmt_duration(65) == "1 min 05 s"


CHILD = """
import subprocess, sys, time
ctl = sys.argv[1]
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", ctl + "/job.json"],
                 start_new_session=True)
time.sleep(120)
"""


def test_stop_ends_children_in_sessions_of_their_own_and_removes_their_folders(tmp_path: Path) -> None:
    ctl = tmp_path / f"{jobs.SANDBOX_CONTROL_PREFIX}x"
    ctl.mkdir()
    (ctl / "job.json").write_text("{}")
    status = jobs.start_job(tmp_path, "job", [sys.executable, "-c", CHILD, str(ctl)])
    deadline = time.monotonic() + 10
    while len(jobs.job_processes(status.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    procs = jobs.job_processes(status.pid)
    assert len(procs) == 3  # sh, the job, and its child in a session of its own
    stopped = jobs.stop_job(tmp_path, "job", timeout_s=2.0)
    assert stopped.state == "stopped"
    assert not [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not ctl.exists()
    assert jobs.stopped_owner_pids(tmp_path, "job") == {p.pid for p in procs}


def _result(design: str, scale: str, fitness: float | None, minutes: int, seeds: int = 1) -> ResultRecord:
    return ResultRecord(design=design, scale=scale, record={}, fitness=fitness, status="ok", seeds=seeds,
                        created_at=datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes))


def test_run_chart_frames() -> None:
    results = [_result("a", "micro", 0.0, 1), _result("b", "micro", 0.2, 2, seeds=3), _result("c", "micro", None, 3),
               _result("b", "14M", 0.1, 4)]
    steps = charts.fitness_by_step(results, ["a", "b", "c"])
    micro = steps[steps["rung"] == "micro"]
    assert list(micro["step"]) == [0, 1] and list(micro["best"]) == [0.0, 0.2] and list(micro["mean"]) == [0.0, 0.1]
    gens = charts.fitness_by_generation(results, {"a": 0, "b": 1, "c": 1})
    assert gens[(gens["rung"] == "micro") & (gens["generation"] == 1)]["designs"].item() == 1
    spent = charts.budget_over_time(results, {"micro": 10})
    assert list(spent[spent["rung"] == "micro"]["used"]) == [1, 4, 5]
    usage = charts.usage_by_role([UsageRecord(role="proposer", provider="openai", model="m", prompt_tokens=10,
                                              completion_tokens=5, usd=0.5)] * 2)
    assert usage.to_dict("records") == [{"role": "proposer", "calls": 2, "prompt_tokens": 20,
                                         "completion_tokens": 10, "usd": 1.0}]


def test_unit_diff_and_robust_colour_range() -> None:
    parent = load_seed("gpt2")
    child = parent.model_copy(deep=True)
    child.name = "gpt2-wide"
    unit = next(n for n, u in child.units.items() if u.hparams)
    key = next(iter(child.units[unit].hparams))
    child.units[unit].hparams[key] = 999
    diff = charts.unit_diff(parent, child)
    assert diff.set_index("unit").loc[unit, "change"] == "hparams"
    assert set(diff["change"]) == {"hparams", "unchanged"}
    assert "999" in charts.source_diff(parent, child, unit)
    assert robust_range([0.0] * 19 + [-50.0] + [0.1] * 20) == (0.0, 0.1)  # one outlier does not stretch it
    assert robust_range([1.0]) is None


def test_gui_listens_on_localhost_unless_told_otherwise() -> None:
    from typer.testing import CliRunner

    from model_discovery.cli import app

    out = CliRunner().invoke(app, ["gui", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    assert "--address" in out.output and "127.0.0.1" in out.output
