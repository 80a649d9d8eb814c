"""Every page of the GUI, on an empty run directory and on a populated one (AppTest, no browser)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from model_discovery.app import jobs
from model_discovery.app.common import DESIGN_KEY
from model_discovery.evolution import EvolutionTree
from model_discovery.gau import LADDER, list_seeds, load_seed

from modis_app_fixtures import MAIN, load, verify_record

PAGES = ["evolve", "tree", "leaderboard", "design", "compare", "charts", "verify", "knowledge", "config"]


def texts(elements: object) -> list[str]:
    return [str(e.value) for e in elements]  # type: ignore[attr-defined]


def by_label(elements: object, label: str):  # noqa: ANN201 - an AppTest element
    found = [e for e in elements if e.label == label]  # type: ignore[attr-defined]
    assert found, f"no element labelled {label!r}"
    return found[0]


# -- empty run directory ---------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["tree", "leaderboard", "design"])
def test_empty_run_pages_say_no_designs_yet(empty_run: Path, page: str) -> None:
    at = load(empty_run, page)
    assert any("No designs yet — start a run on the evolve page" in t for t in texts(at.info))
    assert not (empty_run / "tree.sqlite").exists(), "viewing an empty run must not create a tree"


def test_empty_run_evolve_offers_to_start(empty_run: Path) -> None:
    at = load(empty_run, "evolve")
    assert texts(at.title) == ["Evolve"]
    assert "Start run" in [b.label for b in at.button]
    assert any("no run started from here yet" in t for t in texts(at.markdown))
    assert any("No tree in this run directory yet" in t for t in texts(at.caption))
    assert by_label(at.multiselect, "Rungs").options == list(LADDER)
    assert any("a new run with the default settings" in t for t in texts(at.caption))


def test_evolve_continues_the_run_and_shows_differences(populated_run: tuple[Path, dict]) -> None:
    run_dir, _ = populated_run
    at = load(run_dir, "evolve")
    assert by_label(at.multiselect, "Rungs").value == ["micro", "14M"]  # the run's ladder, not the default
    assert any("continues as it was" in t for t in texts(at.success))
    by_label(at.checkbox, "Run lm-eval after training").uncheck()
    by_label(at.number_input, "Training tokens (0: the rung's)").set_value(300_000)
    at.run()
    diffs = at.dataframe[0].value
    assert sorted(diffs["setting"]) == ["verify.eval", "verify.train_tokens"]
    assert by_label(at.button, "Start run").disabled  # until the differences are confirmed
    assert any("2 setting(s) differ" in t for t in texts(at.warning))


def test_empty_run_verify_offers_library_seeds(empty_run: Path) -> None:
    at = load(empty_run, "verify")
    assert by_label(at.selectbox, "Design").options == list_seeds()
    assert any("No verification started" in t for t in texts(at.info))


def test_empty_run_knowledge_and_config(empty_run: Path) -> None:
    at = load(empty_run, "knowledge")
    assert any("Type a query" in t for t in texts(at.info))
    at = load(empty_run, "config")
    ladder = at.dataframe[1].value
    assert list(ladder["scale"]) == list(LADDER)
    assert any("No `config.yaml`" in t for t in texts(at.info))


def test_run_dir_defaults_to_env(monkeypatch: pytest.MonkeyPatch, populated_run: tuple[Path, dict]) -> None:
    run_dir, facts = populated_run
    monkeypatch.setenv("MODIS_RUN_DIR", str(run_dir))
    at = AppTest.from_file(str(MAIN), default_timeout=120).run()
    assert not at.exception
    assert at.sidebar.text_input[0].value == str(run_dir)
    assert any(f"{len(facts['names'])} designs" in t for t in texts(at.sidebar.caption))


# -- populated run directory -----------------------------------------------------------------------
def test_evolve_shows_progress_budgets_and_log(populated_run: tuple[Path, dict]) -> None:
    run_dir, facts = populated_run
    at = load(run_dir, "evolve")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Design steps (all runs)"] == "7"
    assert metrics["Committed"] == "5" and metrics["Failed checks"] == "1" and metrics["Rejected"] == "1"
    assert any(f"**Tree:** {len(facts['names'])} designs" in t for t in texts(at.markdown))
    bars = [str(p.proto.text) for p in at.get("progress")]
    assert f"micro: {len(facts['verified'])} / {LADDER['micro'].verify_budget} used (0 in progress)" in bars
    assert "14M: 3 / 4 used (0 in progress)" in bars  # the run's config.yaml overrides the 14M budget
    log = at.code[-1].value
    assert "6/6" in log and "3/6" not in log  # progress-bar redraws collapse to their last state


def test_tree_page_draws_graph_and_opens_design(populated_run: tuple[Path, dict]) -> None:
    run_dir, facts = populated_run
    at = load(run_dir, "tree")
    assert texts(at.title) == ["Evolution tree"]
    assert len(at.get("plotly_chart")) == 1
    n = len(facts["names"])
    assert any(t.startswith(f"{n} designs") for t in texts(at.caption))
    pick = by_label(at.selectbox, "Open a design")
    assert pick.options == facts["names"]
    pick.set_value(facts["swapped"])
    at.run()  # choosing a design enables the button
    by_label(at.button, "Open in design viewer").click()
    at.run()
    assert not at.exception
    assert texts(at.title) == ["Design viewer"]
    assert texts(at.header) == [facts["swapped"]]


def test_leaderboard_rows_views_and_csv(populated_run: tuple[Path, dict]) -> None:
    run_dir, facts = populated_run
    at = load(run_dir, "leaderboard")
    table = at.dataframe[0].value
    n_verified = len(facts["verified"])
    assert len(table) == n_verified + 3  # every micro result plus three at 14M
    assert list(table.columns[:4]) == ["rank", "design", "scale", "fitness"]
    assert "final_val_loss" in table.columns
    assert list(table["scale"][:3]) == ["14M"] * 3  # larger rungs first
    micro = table[table["scale"] == "micro"]
    assert list(micro["fitness"]) == sorted(micro["fitness"], reverse=True)
    assert len(at.get("download_button")) == 1
    by_label(at.selectbox, "Rung").set_value("14M")
    at.run()
    assert len(at.dataframe[0].value) == 3
    by_label(at.selectbox, "Rung").set_value("all rungs")
    at.radio[0].set_value("designs × rungs")
    at.run()
    wide = at.dataframe[0].value
    assert len(wide) == n_verified and "14M · fitness" in wide.columns and "micro · fitness" in wide.columns


def test_design_viewer_shows_everything(populated_run: tuple[Path, dict]) -> None:
    run_dir, facts = populated_run
    name = facts["swapped"]
    at = load(run_dir, "design", **{DESIGN_KEY: name})
    assert texts(at.header) == [name]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Operator"] == "swap" and metrics["Generation"] == "1"
    assert any(t.startswith("Variant 0 of gpt2") for t in texts(at.subheader))
    md = "\n".join(texts(at.markdown))
    assert "Round 1: rejected" in md and "Round 2: accepted" in md and "too close to its parent" in md
    record = EvolutionTree(run_dir / "tree.sqlite").get_design(name)
    codes = [c.strip() for c in texts(at.code)]
    for unit in record.design.units.values():
        assert unit.source.strip() in codes
    assert any(line.startswith(record.design.root) for line in codes[0].splitlines())
    checks = [d.value for d in at.dataframe if "name" in d.value.columns]
    assert list(checks[0]["name"]) == ["parse", "forward", "causality"]
    curves = len(EvolutionTree(run_dir / "tree.sqlite").results(name))
    assert len(at.get("plotly_chart")) == curves >= 1
    # the parent link opens the parent
    by_label(at.button, "gpt2").click()
    at.run()
    assert texts(at.header) == ["gpt2"]
    assert any("children" in t.lower() for t in texts(at.markdown))


def test_verify_page_starts_and_stops_a_real_verification(populated_run: tuple[Path, dict]) -> None:
    run_dir, facts = populated_run
    at = load(run_dir, "verify")
    design = by_label(at.selectbox, "Design")
    assert design.options[: len(facts["names"])] == facts["names"]
    design.set_value(facts["names"][0])
    by_label(at.selectbox, "Rung").set_value("micro")
    by_label(at.button, "Start verification").click()
    at.run()
    assert not at.exception
    job_dir = run_dir / "gui_verify" / f"{facts['names'][0]}@micro"
    status = jobs.job_status(job_dir, "verify")
    try:
        assert status.running and "verify" in status.command and "--out" in status.command
        assert (job_dir / "design.json").is_file()
        assert any(e.label.endswith("running") or "running" in e.label for e in at.expander)
    finally:
        stopped = jobs.stop_job(job_dir, "verify")
    assert stopped.state == "stopped"
    at.run()
    assert any("stopped" in e.label for e in at.expander)


def test_verify_page_shows_a_finished_result(populated_run: tuple[Path, dict]) -> None:
    run_dir, _ = populated_run
    design = load_seed("llama")
    job_dir = run_dir / "gui_verify" / "llama@micro"
    verify_record(design, "micro", 3.4).save(job_dir / "out")
    jobs.start_job(job_dir, "verify", ["/bin/sh", "-c", "echo trained; exit 0"])
    deadline = time.monotonic() + 20
    while jobs.job_status(job_dir, "verify").running and time.monotonic() < deadline:
        time.sleep(0.1)
    at = load(run_dir, "verify")
    assert any(t.startswith("Result: ok") for t in texts(at.success))
    assert len(at.get("plotly_chart")) >= 1
    assert any(e.label.startswith("llama@micro — finished") for e in at.expander)


def test_knowledge_search_finds_library_notes(populated_run: tuple[Path, dict]) -> None:
    run_dir, _ = populated_run
    at = load(run_dir, "knowledge")
    at.text_input(key="knowledge_query").set_value("gated linear attention")
    at.run()
    assert not at.exception
    md = "\n".join(texts(at.markdown))
    assert "GLA" in md or "GatedLinearAttention" in md
    assert any("results for “gated linear attention”" in t for t in texts(at.caption))


def test_config_page_specs_ladder_run_config_and_validation(populated_run: tuple[Path, dict]) -> None:
    run_dir, _ = populated_run
    at = load(run_dir, "config")
    specs = at.dataframe[0].value
    assert sorted(specs["role"]) == ["coder", "observer", "planner", "proposer", "reviewer"]
    ladder = at.dataframe[1].value
    assert dict(zip(ladder["scale"], ladder["run_budget"]))["14M"] == 4
    assert any("Valid run configuration" in t for t in texts(at.success))
    area = at.text_area(key="spec_text")
    assert "role:" in area.value
    assert "temperature:" in area.value
    area.set_value(re.sub(r"(?m)^temperature:.*$", "temperature: 5", area.value))
    by_label(at.button, "Validate").click()
    at.run()
    errors = texts(at.error)
    assert len(errors) == 1 and "field temperature" in errors[0] and "\n" not in errors[0]
    assert "modis-spec-" not in errors[0]  # names the edited spec, not the scratch file
    at.text_area(key="spec_text").set_value("role: proposer\nprovider: symbolic\n")
    by_label(at.button, "Validate").click()
    at.run()
    assert any(t.startswith("Valid: proposer [symbolic]") for t in texts(at.success))


def test_evolve_starts_and_stops_a_real_discovery_run(empty_run: Path) -> None:
    at = load(empty_run, "evolve")
    by_label(at.number_input, "Design steps to take now").set_value(2)
    by_label(at.button, "Start run").click()
    at.run()
    assert not at.exception
    status = jobs.job_status(empty_run, "discover")
    try:
        assert status.running
        args = status.command
        start = empty_run.resolve() / "gui_start.yaml"
        assert args[args.index("discover"):] == ["discover", "discover a new model", "--config", str(start),
                                                 "--run-dir", str(empty_run.resolve())]
        assert "steps: 2" in start.read_text()
        assert (empty_run / "discover.pid").read_text() == str(status.pid)
        assert "Stop run" in [b.label for b in at.button] and "Start run" not in [b.label for b in at.button]
        assert any("**Status:** running" in t for t in texts(at.markdown))
        by_label(at.button, "Stop run").click()
        at.run()
    finally:
        jobs.stop_job(empty_run, "discover")
    assert jobs.job_status(empty_run, "discover").state == "stopped"
    assert "Start run" in [b.label for b in at.button]
    assert any("**Status:** stopped" in t for t in texts(at.markdown))
    assert "discover" in (empty_run / "discover.log").read_text().splitlines()[0]


def test_leaderboard_shows_bpb_and_accuracy_by_default(populated_run: tuple[Path, dict]) -> None:
    run_dir, _ = populated_run
    at = load(run_dir, "leaderboard")
    assert by_label(at.multiselect, "Metrics").value == ["eval_metrics.local_ppl/bits_per_byte",
                                                         "eval_metrics.local_nextline/acc", "final_val_loss"]
    assert any("ranked on one footing" in t for t in texts(at.markdown))


def test_compare_view_diffs_units_and_charts_curves(populated_run: tuple[Path, dict]) -> None:
    run_dir, facts = populated_run
    at = load(run_dir, "compare", **{DESIGN_KEY: facts["swapped"]})
    diff = at.dataframe[0].value
    assert set(diff["change"]) >= {"added", "removed"}  # one mixer swapped for another
    assert any("units changed from `gpt2` to" in t for t in texts(at.caption))
    assert at.get("plotly_chart")  # validation curves of the pair and the baseline
    side = at.dataframe[-1].value
    assert "gpt2" in side.columns and "fitness" in side.index


def test_run_charts_show_fitness_budget_and_usage(populated_run: tuple[Path, dict]) -> None:
    run_dir, _ = populated_run
    at = load(run_dir, "charts")
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(specs) == 3 and all("per generation" in s or "per design step" in s or "budget" in s for s in specs)  # fitness per step, per generation, budget over time
    assert any("No LLM calls recorded" in t for t in texts(at.info))
