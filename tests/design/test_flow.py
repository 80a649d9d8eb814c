"""The LangGraph design flow end to end: real tree, real selector, real sandboxed checker.

LLM agents talk to a local server speaking the OpenAI/Anthropic APIs through the official SDKs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model_discovery.agents import build_agent
from model_discovery.agents.symbolic import SymbolicCoder, SymbolicConfig, SymbolicProposer, SymbolicReviewer
from model_discovery.check import run_checks
from model_discovery.design import DesignFlow, FlowConfig
from model_discovery.evolution import EvolutionTree
from model_discovery.gau import load_seed
from model_discovery.gau.library import catalogue
from model_discovery.records import VerifyResult
from model_discovery.select import Selector, SelectorConfig
from tests.agents import scripted_answers as A
from tests.agents.fake_llm_server import FakeLLMServer, Reply, RoleScript, spec_for


@pytest.fixture()
def tree(tmp_path: Path) -> EvolutionTree:
    t = EvolutionTree(tmp_path / "tree.sqlite")
    t.add_design(load_seed("gpt2"), operator="seed")
    return t


def _selector() -> Selector:
    return Selector(SelectorConfig(seed=0, scales=["micro"], n_references=0))


def _unfinished(flow: DesignFlow, thread_id: str) -> bool:
    snapshot = flow.graph.get_state({"configurable": {"thread_id": thread_id}})
    return bool(snapshot.values) and bool(snapshot.next)


def _llm_flow(tree: EvolutionTree, server: FakeLLMServer, tmp_path: Path, check: Any = run_checks,
              **flow: Any) -> DesignFlow:
    agents = {role: build_agent(spec_for(server, role, provider="anthropic" if role == "reviewer" else "openai"))
              for role in ("proposer", "reviewer", "planner", "coder")}
    return DesignFlow(tree, _selector(), agents["proposer"], agents["reviewer"], agents["coder"], check=check,
                      config=FlowConfig(n_references=0, knowledge_k=0, **flow),
                      checkpoint_path=tmp_path / "ckpt.sqlite", planner=agents["planner"])


def test_symbolic_flow_commits_a_checked_design(tree: EvolutionTree, tmp_path: Path) -> None:
    cfg = SymbolicConfig(seed=3)
    flow = DesignFlow(tree, _selector(), SymbolicProposer(cfg), SymbolicReviewer(cfg), SymbolicCoder(),
                      check=run_checks, config=FlowConfig(n_references=0, knowledge_k=0),
                      checkpoint_path=tmp_path / "ckpt.sqlite")
    outcome = flow.run("t0")
    assert outcome.status in ("committed", "failed", "duplicate") and outcome.parents == ["gpt2"]
    if outcome.status == "committed":
        rec = tree.get_design(outcome.design)
        assert rec.status == "checked" and rec.parents == ["gpt2"] and rec.operator == outcome.operator
        assert tree.checks(rec.name)[0].passed and tree.proposals(rec.name) and tree.reviews(rec.name)
    assert not _unfinished(flow, "t0")
    assert flow.run("t0") == outcome  # a finished run is not repeated


def test_llm_flow_debugs_a_broken_unit_then_commits(tree: EvolutionTree, tmp_path: Path) -> None:
    script = RoleScript({"proposer": [Reply.json(A.PROPOSAL)], "reviewer": [Reply.json(A.REVIEW)],
                         "planner": [Reply.json(A.PLAN)],
                         "coder": [Reply.json(A.UNIT_BROKEN), Reply.json(A.UNIT_GOOD)]})
    with FakeLLMServer(responder=script) as server:
        outcome = _llm_flow(tree, server, tmp_path).run("llm-1")
    assert script.calls == {"proposer": 1, "reviewer": 1, "planner": 1, "coder": 2} and not script.pending()
    assert outcome.status == "committed" and outcome.check_attempts == 2 and outcome.error is None
    design = tree.get_design(outcome.design).design
    assert "GatedSiluMLP" in design.units and "GeluMLP" not in design.units
    assert design.units["PreNormBlock"].children["mlp"] == "GatedSiluMLP"
    debug = server.requests[-1].last_user_text
    assert "returned Y of shape" in debug  # the coder saw the check error
    assert "hidden width mult * d_model" in debug and "fix unit" not in debug  # the original description
    assert "forward" in debug and "FAIL" in debug and "first error:" in debug  # the full check table
    assert "# Traceback (lines of the compiled design module)\n\n```\nline " in debug
    assert "in _forward (unit PreNormBlock): h, Z = self.mlp(h, **Z)" in debug
    assert debug.count(A.BROKEN_SOURCE.strip()) == 1  # the failing source once
    attempts = tree.attempts(outcome.design)  # the rejected version and the kept one, with rationales
    assert [(a.unit, a.attempt, bool(a.error)) for a in attempts] == [("GatedSiluMLP", 1, True), ("GatedSiluMLP", 2, False)]
    assert "returned Y of shape" in attempts[0].error and attempts[0].rationale == "first attempt"
    assert attempts[1].rationale == "standard gated MLP" and len(outcome.design) <= 32


def test_rejected_proposals_end_without_a_design(tree: EvolutionTree, tmp_path: Path) -> None:
    reject = {**A.REVIEW, "rating": 1, "accept": False, "reasons": ["not novel"]}
    script = RoleScript({"proposer": [Reply.json(A.PROPOSAL)] * 2, "reviewer": [Reply.json(reject)] * 2})
    with FakeLLMServer(responder=script) as server:
        outcome = _llm_flow(tree, server, tmp_path, max_review_rounds=2).run("llm-2")
    assert outcome.status == "rejected" and outcome.review_rounds == 2 and outcome.design is None
    assert script.calls == {"proposer": 2, "reviewer": 2} and tree.count() == 1
    assert "not novel" in server.requests[2].last_user_text  # round two saw the first review


def test_interrupted_flow_resumes_at_the_check(tree: EvolutionTree, tmp_path: Path) -> None:
    """A crash while checking loses nothing: the resumed run does not ask any agent again."""
    calls = {"n": 0}

    def crash_once(design: Any, scale: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("sandbox host went away")
        return run_checks(design, scale)

    script = RoleScript({"proposer": [Reply.json(A.PROPOSAL)], "reviewer": [Reply.json(A.REVIEW)],
                         "planner": [Reply.json(A.PLAN)], "coder": [Reply.json(A.UNIT_GOOD)]})
    with FakeLLMServer(responder=script) as server:
        flow = _llm_flow(tree, server, tmp_path, check=crash_once)
        with pytest.raises(RuntimeError, match="sandbox host went away"):
            flow.run("llm-3")
        assert _unfinished(flow, "llm-3") and tree.count() == 1
        again = _llm_flow(tree, server, tmp_path, check=crash_once)  # a new process would do the same
        outcome = again.run("llm-3")
    assert outcome.status == "committed" and calls["n"] == 2
    assert script.calls == {"proposer": 1, "reviewer": 1, "planner": 1, "coder": 1}


def test_a_draft_already_in_the_tree_ends_as_duplicate(tree: EvolutionTree, tmp_path: Path) -> None:
    """Rewriting GeluMLP as it is gives gpt2 again: recorded as a duplicate of gpt2, never checked."""
    gelu = catalogue()["GeluMLP"]
    plan = {"name": "GeluMLP", "role": "channel_mixer", "description": "GELU MLP", "children": {}}
    same = {"name": "GeluMLP", "role": "channel_mixer", "source": gelu.source, "hparams": {"mult": 4}}
    script = RoleScript({"proposer": [Reply.json({**A.PROPOSAL, "units": [plan]})], "reviewer": [Reply.json(A.REVIEW)],
                         "planner": [Reply.json({"root": None, "units": [plan]})], "coder": [Reply.json(same)]})

    def never(design: Any, scale: str) -> Any:
        raise AssertionError("a duplicate must not be checked")

    with FakeLLMServer(responder=script) as server:
        outcome = _llm_flow(tree, server, tmp_path, check=never).run("dup")
    assert outcome.status == "duplicate" and outcome.design == "gpt2" and tree.count() == 1
    assert "identical to gpt2" in (outcome.error or "")


def test_agents_see_siblings_results_and_notes_from_the_tree(tree: EvolutionTree, tmp_path: Path) -> None:
    gpt2 = load_seed("gpt2")
    llama = load_seed("llama")
    sibling = llama.model_copy(update={"name": "gpt2-llama-mix", "parents": ["gpt2"], "summary": "llama units"})
    tree.add_design(sibling, operator="swap", status="failed")  # not a parent candidate
    out = tmp_path / "gpt2@micro"
    out.mkdir()
    (out / "observation.md").write_text("gpt2 forgets keys beyond 64 tokens.\n")
    tree.add_result("gpt2", "micro", VerifyResult(design="gpt2", fingerprint=gpt2.fingerprint(), scale="micro",
                                                  status="ok", final_val_loss=5.25, out_dir=str(out),
                                                  probe_scores={"recall": 0.2}), fitness=0.61)
    reject = {**A.REVIEW, "rating": 2, "accept": False, "reasons": ["too close to gpt2-llama-mix"]}
    script = RoleScript({"proposer": [Reply.json(A.PROPOSAL)] * 2, "reviewer": [Reply.json(reject)] * 2})
    with FakeLLMServer(responder=script) as server:
        outcome = _llm_flow(tree, server, tmp_path, max_review_rounds=2).run("ctx", goal="better recall")
    assert outcome.status == "rejected"
    first, review, second = server.requests[0], server.requests[1], server.requests[2]
    prompt = first.last_user_text
    assert prompt.startswith("# Goal\nbetter recall")
    assert "gpt2-llama-mix (sibling" in prompt and "status failed, fitness not verified" in prompt
    assert "gpt2 @ micro: ok, fitness 0.61, val loss 5.25" in prompt and "observer: gpt2 forgets keys" in prompt
    assert "gpt2-llama-mix (sibling" in review.last_user_text and "observer: gpt2 forgets keys" in review.last_user_text
    assert [t["role"] for t in second.conversation] == ["user", "assistant", "user"]  # round two continues the talk
    assert "too close to gpt2-llama-mix" in second.last_user_text


def test_a_screened_step_drafts_across_families_and_keeps_the_best_predicted(tmp_path: Path) -> None:
    tree = EvolutionTree(tmp_path / "tree.sqlite")
    sel = Selector(SelectorConfig(seed=0, scales=["micro"], n_references=0,
                                  policy={"warmup_steps": 0, "candidates": 12, "explore": 1.0}))
    for name, loss in (("gpt2", 3.5), ("llama", 3.6), ("mamba2", 3.0)):
        design = load_seed(name)
        tree.add_design(design, operator="seed", check={"passed": True})
        sel.record_result(tree, name, "micro", VerifyResult(design=name, fingerprint=design.fingerprint(),
                                                            scale="micro", status="ok", final_val_loss=loss))
    flow = DesignFlow(tree, sel, SymbolicProposer(SymbolicConfig(seed=1)), SymbolicReviewer(), SymbolicCoder(),
                      check=run_checks, config=FlowConfig(n_references=0, knowledge_k=0),
                      checkpoint_path=tmp_path / "ckpt.sqlite")
    chosen = [flow._node_propose({"parents": ["llama"], "references": [], "knowledge": [], "reviews": [],
                                  "proposals": [], "goal": ""}) for _ in range(3)]
    # the step's parent is llama (the worst), but the surrogate keeps drafts of mamba2 (the best)
    assert all("mamba2" in c["parents"] for c in chosen)
    assert all(c["parents"] == c["proposal"]["parents"] for c in chosen)  # the draft's own parents go on


def test_an_interleave_records_both_designs_as_parents(tmp_path: Path) -> None:
    tree = EvolutionTree(tmp_path / "tree.sqlite")
    for name in ("gpt2", "mamba2"):
        tree.add_design(load_seed(name), operator="seed", check={"passed": True})
    cfg = SymbolicConfig(seed=2, operator_weights={"interleave": 1.0})
    sel = Selector(SelectorConfig(seed=0, scales=["micro"], n_references=1, policy={"candidates": 1}))
    flow = DesignFlow(tree, sel, SymbolicProposer(cfg), SymbolicReviewer(cfg), SymbolicCoder(), check=run_checks,
                      config=FlowConfig(n_references=1, knowledge_k=0), checkpoint_path=tmp_path / "ckpt.sqlite")
    outcome = flow.run("t0")
    assert outcome.operator == "interleave" and sorted(outcome.parents) == ["gpt2", "mamba2"]
    assert outcome.status == "committed" and sorted(tree.parents(outcome.design)) == ["gpt2", "mamba2"]
