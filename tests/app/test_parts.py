"""The GUI's pure parts: tree layout, tables, background jobs, spec validation."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from modis_app_fixtures import check_report, verify_record

from model_discovery.agents.spec import AgentSpecError, default_spec_dir
from model_discovery.app import jobs, tables
from model_discovery.app.layout import layered_positions, tree_figure
from model_discovery.app.specs import validate_spec_text
from model_discovery.gau import LADDER, load_seed


def _graph() -> tuple[list[dict], list[dict]]:
    nodes = [{"name": n, "generation": g, "status": "verified" if f is not None else "checked",
              "operator": "seed" if g == 0 else "hparam", "seed": g == 0, "fitness": f}
             for n, g, f in [("a", 0, 1.0), ("b", 0, None), ("b1", 1, 2.0), ("a1", 1, None), ("a2", 1, 0.5),
                             ("a1x", 2, 3.0)]]
    edges = [{"child": c, "parent": p, "kind": "parent"} for c, p in
             [("b1", "b"), ("a1", "a"), ("a2", "a"), ("a1x", "a1")]]
    edges.append({"child": "a1x", "parent": "b", "kind": "reference"})
    return nodes, edges


def test_layout_rows_by_generation_children_under_parents() -> None:
    nodes, edges = _graph()
    pos = layered_positions(nodes, edges)
    assert {n: y for n, (_, y) in pos.items()} == {"a": 0, "b": 0, "b1": 1, "a1": 1, "a2": 1, "a1x": 2}
    row1 = sorted(["b1", "a1", "a2"], key=lambda n: pos[n][0])
    assert row1 == ["a1", "a2", "b1"]  # a's children first, under a (barycenter order)
    assert pos["a1x"][0] == 0.0 and sum(pos[n][0] for n in row1) == 0.0  # rows are centred


def test_tree_figure_colours_by_fitness_and_carries_names() -> None:
    nodes, edges = _graph()
    fig = tree_figure(nodes, edges, highlight="a1")
    traces = {t.name: t for t in fig.data}
    assert list(traces["fitness"].marker.color) == [1.0, 2.0, 0.5, 3.0]
    assert [c[0] for c in traces["not verified"].customdata] == ["b", "a1"]
    assert "reference edges" not in traces
    assert "reference edges" in {t.name for t in tree_figure(nodes, edges, show_references=True).data}
    edge_x = [x for x in traces["parent edges"].x if x is not None]
    assert len(edge_x) == 2 * 4


def test_layout_of_1000_nodes_is_fast() -> None:
    nodes = [{"name": f"d{i}", "generation": 0 if i < 8 else 1 + i // 100, "fitness": None} for i in range(1000)]
    edges = [{"child": f"d{i}", "parent": f"d{(i * 7) % max(8, (i // 100) * 100)}", "kind": "parent"}
             for i in range(8, 1000)]
    t0 = time.perf_counter()
    tree_figure(nodes, edges)
    assert time.perf_counter() - t0 < 5


def test_curves_metrics_and_check_tables() -> None:
    record = verify_record(load_seed("gpt2"), "micro", 3.2).model_dump(mode="json")
    curves = tables.curves_frame(record)
    assert set(curves["curve"]) == {"train", "val"}
    assert curves[curves["curve"] == "val"]["loss"].is_monotonic_decreasing
    metrics = tables.flatten_metrics(record)
    assert metrics["final_val_loss"] == pytest.approx(record["final_val_loss"])
    assert "train.n_params" in metrics and "eval_metrics.local/mc_acc" in metrics
    assert not any(k.endswith("train_loss") for k in metrics)
    checks = tables.check_table(check_report("x", passed=False).model_dump(mode="json"))
    assert list(checks["name"]) == ["parse", "forward", "causality"]
    assert list(checks["passed"]) == [True, True, False]
    plain = tables.check_table({"passed": True, "seconds": 1.5})
    assert list(plain["field"]) == ["passed", "seconds"]


def test_unit_tree_ladder_and_outcomes() -> None:
    design = load_seed("gpt2")
    lines = tables.unit_tree_lines(design)
    assert lines[0].startswith(design.root) and any(line.strip().startswith("mixer: ") for line in lines)
    ladder = tables.ladder_frame({"14M": 4})
    assert list(ladder["scale"]) == list(LADDER)
    assert dict(zip(ladder["scale"], ladder["run_budget"])) == {**{s: c.verify_budget for s, c in LADDER.items()},
                                                                "14M": 4}
    assert [tables.human(v, k) for k, v in [("train.tokens", 8_192_000), ("peak_memory_bytes", 300 * 2**20),
                                            ("tokens_per_s", 51_000), ("final_val_loss", 3.25591)]] == \
        ["8.19M", "300 MiB", "51k", "3.256"]
    assert tables.outcome_counts(['{"status": "committed"}', "", '{"status": "failed"}', "oops",
                                  '{"status": "committed"}']) == {"committed": 2, "failed": 1, "unreadable": 1}


def test_job_runs_in_its_own_group_and_stops_with_its_children(tmp_path: Path) -> None:
    script = "sleep 300 & echo child $!; wait"
    status = jobs.start_job(tmp_path, "demo", ["/bin/sh", "-c", script], meta={"steps": 3})
    assert status.running and status.meta == {"steps": 3}
    assert os.getpgid(status.pid) == status.pid != os.getpgid(0)
    with pytest.raises(RuntimeError, match="already running"):
        jobs.start_job(tmp_path, "demo", ["true"])
    deadline = time.monotonic() + 10
    def child_line() -> str:
        return next((ln for ln in jobs.tail(tmp_path / "demo.log").splitlines() if ln.startswith("child ")), "")

    while not child_line() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(child_line().split()[1])
    assert jobs.pid_alive(child) and os.getpgid(child) == status.pid
    stopped = jobs.stop_job(tmp_path, "demo", timeout_s=5)
    assert stopped.state == "stopped"
    assert not jobs.group_alive(status.pid)  # no live process left in the group (zombies aside)
    assert not jobs.pid_alive(child)


def test_job_exit_status_and_log_tail(tmp_path: Path) -> None:
    jobs.start_job(tmp_path, "ok", ["/bin/sh", "-c", "printf 'a\\nstep 1/3\\rstep 3/3\\n'"])
    jobs.start_job(tmp_path, "bad", ["/bin/sh", "-c", "echo boom; exit 3"])
    deadline = time.monotonic() + 10
    while any(jobs.job_status(tmp_path, n).running for n in ("ok", "bad")) and time.monotonic() < deadline:
        time.sleep(0.05)
    ok, bad = jobs.job_status(tmp_path, "ok"), jobs.job_status(tmp_path, "bad")
    assert (ok.state, ok.returncode) == ("finished", 0)
    assert (bad.state, bad.returncode) == ("failed", 3)
    assert jobs.tail(tmp_path / "ok.log").splitlines()[-2:] == ["a", "step 3/3"]
    assert jobs.job_status(tmp_path, "never").state == "idle"
    assert jobs.count_lines(tmp_path / "bad.log") == 2


def test_spec_validation_matches_the_loader() -> None:
    origin = default_spec_dir() / "reviewer.yaml"
    text = origin.read_text()
    assert validate_spec_text(text, origin).role == "reviewer"  # relative prompt path resolves in place
    with pytest.raises(AgentSpecError) as err:
        validate_spec_text(text.replace("role: reviewer", "role: critic"), origin)
    message = str(err.value)
    assert message.startswith(f"{origin}: field role:") and "\n" not in message
    with pytest.raises(AgentSpecError, match=r"invalid YAML at line \d+"):
        validate_spec_text("role: [proposer\n", origin)
    with pytest.raises(AgentSpecError, match="system_prompt_file: no such file"):
        validate_spec_text("role: coder\nprovider: symbolic\nsystem_prompt_file: missing.md\n", origin)
