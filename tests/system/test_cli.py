"""The ``modis`` command line, run through typer's CliRunner on a real tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from model_discovery.cli import app
from model_discovery.evolution import EvolutionTree
from model_discovery.gau import list_seeds, load_seed

runner = CliRunner()


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    tree = EvolutionTree(tmp_path / "tree.sqlite")
    for name, bpb, fit in (("gpt2", 3.30, 0.0), ("llama", 3.20, 0.03), ("gla", 3.40, -0.03)):
        tree.add_design(load_seed(name), operator="seed")
        tree.add_result(name, "micro", {"status": "ok", "eval_metrics": {"local_ppl/bits_per_byte": bpb}}, fit)
    tree.close()
    return tmp_path


def test_seeds_lists_the_library() -> None:
    out = runner.invoke(app, ["seeds"])
    assert out.exit_code == 0 and [line.split()[0] for line in out.stdout.splitlines()] == list_seeds()


def test_leaderboard_by_fitness_and_by_a_metric(run_dir: Path) -> None:
    out = runner.invoke(app, ["leaderboard", "--run-dir", str(run_dir)])
    assert out.exit_code == 0
    ranked = [line.split()[1] for line in out.stdout.splitlines()[2:]]
    assert ranked == ["llama", "gpt2", "gla"]
    out = runner.invoke(app, ["leaderboard", "-r", str(run_dir), "-m", "eval_metrics.local_ppl/bits_per_byte"])
    assert "bits_per_byte" in out.stdout.splitlines()[0] and "3.2000" in out.stdout.splitlines()[2]


def test_tree_show_and_export(run_dir: Path, tmp_path: Path) -> None:
    out = runner.invoke(app, ["tree", "show", "--run-dir", str(run_dir)])
    assert out.exit_code == 0 and "llama  [verified, seed]  fitness +0.0300@micro" in out.stdout
    out = runner.invoke(app, ["tree", "export", str(tmp_path / "tree.jsonl"), "--run-dir", str(run_dir)])
    assert out.exit_code == 0
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "tree.jsonl").read_text().splitlines()]
    assert kinds.count("design") == 3


def test_missing_run_dir_and_bad_config_are_one_line_errors(tmp_path: Path) -> None:
    out = runner.invoke(app, ["leaderboard", "--run-dir", str(tmp_path / "nothing")])
    assert out.exit_code == 2 and "no tree.sqlite here" in out.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: -1\n")
    out = runner.invoke(app, ["discover", "--config", str(bad)])
    assert out.exit_code == 2 and f"{bad}: field steps:" in out.stderr and len(out.stderr.splitlines()) == 1


def test_check_prints_the_report_and_rejects_unknown_designs() -> None:
    out = runner.invoke(app, ["check", "llama"])
    assert out.exit_code == 0 and "all checks passed" in out.stdout and "causality" in out.stdout
    out = runner.invoke(app, ["check", "no-such-seed"])
    assert out.exit_code == 2


def test_export_writes_a_hugging_face_folder(tmp_path: Path) -> None:
    out = runner.invoke(app, ["export", "gpt2", str(tmp_path / "hf")])
    assert out.exit_code == 0 and json.loads(out.stdout)["exported"] == str(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["auto_map"] and (tmp_path / "hf" / "model.safetensors").exists()


def test_verify_takes_training_and_evaluation_options(tmp_path: Path) -> None:
    out = runner.invoke(app, ["verify", "gpt2", "--scale", "micro", "--out", str(tmp_path / "v"),
                              "--train-tokens", "8192", "--no-eval", "--no-probes", "--no-wandb", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    record = json.loads((tmp_path / "v" / "verify_result.json").read_text())
    assert record["status"] == "ok" and record["train"]["tokens"] == 8192 and record["train"]["device"] == "cpu"
    assert record["eval_metrics"] == {} and record["probe_scores"] == {} and not record["train"]["compiled"]
    out = runner.invoke(app, ["verify", "gpt2", "--device", "gpu"])
    assert out.exit_code == 2 and "'gpu' is not cpu, cuda or cuda:N" in out.output


def test_tree_get_dumps_a_design_with_its_attempts(run_dir: Path) -> None:
    from model_discovery.records import UnitAttempt

    tree = EvolutionTree(run_dir / "tree.sqlite")
    tree.set_attempts("llama", [UnitAttempt(unit="SwiGLU", attempt=1, source="class SwiGLU: ...", error="boom",
                                            rationale="first try")])
    tree.close()
    out = runner.invoke(app, ["tree", "get", "llama", "--run-dir", str(run_dir)])
    assert out.exit_code == 0, out.output
    dump = json.loads(out.stdout)
    assert dump["record"]["name"] == "llama" and dump["record"]["design"]["root"] == "PreNormBlock"
    assert dump["results"][0]["fitness"] == 0.03 and dump["attempts"][0]["error"] == "boom"
    out = runner.invoke(app, ["tree", "get", "nope", "--run-dir", str(run_dir)])
    assert out.exit_code == 2 and "no design named" in out.stderr and len(out.stderr.splitlines()) == 1


def test_a_run_dir_keeps_its_config(tmp_path: Path) -> None:
    from model_discovery.cli import _system
    from model_discovery.config import SystemConfig

    (tmp_path / "config.yaml").write_text(SystemConfig(run_dir=tmp_path, steps=7, seed=5).to_yaml())
    system = _system(None, tmp_path, workers=None)
    try:
        assert system.config.steps == 7 and system.config.seed == 5 and system.config.run_dir == tmp_path
    finally:
        system.close()
    assert "steps: 7" in (tmp_path / "config.yaml").read_text()  # not rewritten with the defaults


def _child(run_dir: Path):  # noqa: ANN202
    tree = EvolutionTree(run_dir / "tree.sqlite")
    child = load_seed("gpt2").model_copy(update={"name": "wide-mlp-1a2b3c", "parents": ["gpt2"]})
    child.units["GeluMLP"] = child.units["GeluMLP"].model_copy(update={"hparams": {"mult": 3}})
    tree.add_design(child, operator="hparam", status="checked")
    tree.close()
    return child


def test_export_a_discovered_design_from_its_run(run_dir: Path, tmp_path: Path) -> None:
    """A design of the tree exports by name (fresh weights while it is not verified)."""
    _child(run_dir)
    out = runner.invoke(app, ["export", "wide-mlp-1a2b3c", str(tmp_path / "fresh"), "--run-dir", str(run_dir)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["trained"] is None and (tmp_path / "fresh" / "model.safetensors").exists()
    out = runner.invoke(app, ["export", "no-such", str(tmp_path / "x"), "--run-dir", str(run_dir)])
    assert out.exit_code == 2 and "no design named 'no-such'" in out.stderr


@pytest.mark.slow
def test_export_a_verified_design_with_its_trained_weights(run_dir: Path, tmp_path: Path) -> None:
    child = _child(run_dir)
    child.save(tmp_path / "child.json")
    out = runner.invoke(app, ["verify", str(tmp_path / "child.json"), "--out", str(tmp_path / "v"), "--train-tokens",
                              "4096", "--no-eval", "--no-probes", "--no-wandb", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    tree = EvolutionTree(run_dir / "tree.sqlite")
    tree.add_result("wide-mlp-1a2b3c", "micro", json.loads((tmp_path / "v" / "verify_result.json").read_text()), 0.01)
    tree.close()
    out = runner.invoke(app, ["export", "wide-mlp-1a2b3c", str(tmp_path / "trained"), "--run-dir", str(run_dir)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["trained"] == str(tmp_path / "v") and (tmp_path / "trained" / "tokenizer.json").exists()


def test_llm_failures_are_one_line_errors(tmp_path: Path) -> None:
    from tests.agents.fake_llm_server import FakeLLMServer, Reply

    run = tmp_path / "run"
    EvolutionTree(run / "tree.sqlite").add_design(load_seed("gpt2"), operator="seed")  # bootstrap checks nothing
    (tmp_path / "cfg.yaml").write_text(f"run_dir: {run}\nseeds: [gpt2]\n")
    specs = tmp_path / "agents"
    specs.mkdir()
    with FakeLLMServer([Reply(status=400, error_message="model 'nope' does not exist")]) as server:
        for role in ("proposer", "reviewer", "planner", "coder", "observer"):
            (specs / f"{role}.yaml").write_text(f"role: {role}\nprovider: openai_compatible\nmodel: nope\n"
                                                f"base_url: {server.openai_base_url}\n")
        out = runner.invoke(app, ["design", "--config", str(tmp_path / "cfg.yaml"), "--agents", str(specs)])
    assert out.exit_code == 2 and len(out.stderr.splitlines()) == 1, out.output
    assert out.stderr.startswith("error: proposer [openai_compatible:nope]") and "HTTP 400" in out.stderr
    assert "model 'nope' does not exist" in out.stderr


def test_an_agent_budget_stops_discovery_cleanly_and_holds_on_rerun(tmp_path: Path) -> None:
    """flow.budget.max_tokens ends `modis discover` between LLM calls with exit 0, keeps the ledger,
    and a second run on the same run dir makes no LLM call at all."""
    from tests.agents import scripted_answers as A
    from tests.agents.fake_llm_server import FakeLLMServer, Reply, RoleScript

    run = tmp_path / "run"
    EvolutionTree(run / "tree.sqlite").add_design(load_seed("gpt2"), operator="seed")  # bootstrap checks nothing
    (tmp_path / "cfg.yaml").write_text(f"run_dir: {run}\nseeds: [gpt2]\nbudgets: {{micro: 0}}\n"
                                       "flow: {budget: {max_tokens: 400}, max_review_rounds: 1}\n")
    reject = {**A.REVIEW, "rating": 1, "accept": False, "reasons": ["not novel"]}
    script = RoleScript({"proposer": [Reply.json(A.PROPOSAL)] * 5, "reviewer": [Reply.json(reject)] * 5})
    specs = tmp_path / "agents"
    specs.mkdir()
    with FakeLLMServer(responder=script) as server:
        for role in ("proposer", "reviewer", "planner", "coder", "observer"):
            (specs / f"{role}.yaml").write_text(f"role: {role}\nprovider: openai_compatible\nmodel: m\n"
                                                f"base_url: {server.openai_base_url}\nretries: 0\n")
        args = ["discover", "--steps", "5", "--config", str(tmp_path / "cfg.yaml"), "--agents", str(specs)]
        out = runner.invoke(app, args)
        assert out.exit_code == 0, out.output
        # each call costs 180 tokens: two steps (4 calls, 720 tokens) would pass the 400 limit
        assert script.calls == {"proposer": 2, "reviewer": 1}, script.calls
        assert "stopped: agent budget spent: 540 of 400 tokens" in out.stdout
        ledger = json.loads((run / "usage.json").read_text())
        assert [r["role"] for r in ledger] == ["proposer", "reviewer", "proposer"]
        again = runner.invoke(app, args)
        assert again.exit_code == 0 and "stopped: agent budget spent: 540 of 400 tokens" in again.stdout
        assert script.calls == {"proposer": 2, "reviewer": 1}, "the rerun called the LLM"
