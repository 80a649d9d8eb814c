"""What the LLM agents are shown, read from the prompts the local server received."""

from __future__ import annotations

import pytest

from model_discovery.agents.llm import make_backend
from model_discovery.agents.roles import LLMCoder, LLMProposer, LLMReviewer
from model_discovery.agents.usage import BudgetExceeded, UsageBudget, UsageLedger
from model_discovery.gau import get_scale, load_seed
from model_discovery.records import (CoderContext, Design, DesignDigest, Proposal, ProposalContext, ResultDigest,
                                     Review, ReviewContext, UnitAttempt, UnitPlan, UnitSpec)
from tests.agents import scripted_answers as A
from tests.agents.fake_llm_server import Reply, spec_for

SIBLING = DesignDigest(name="gpt2-swiglu-1a2b3c", relation="sibling", status="verified", operator="swap",
                       summary="gpt2 with a SwiGLU MLP", parents=["gpt2"], fitness={"micro": 0.4321})
NEAREST = DesignDigest(name="llama", relation="nearest", status="checked", similarity=0.25)
RESULT = ResultDigest(design="gpt2", scale="micro", status="ok", fitness=0.5, fitness_se=0.01, final_val_loss=5.1,
                      eval_metrics={"local_ppl/bits_per_byte": 2.25}, probe_scores={"recall": 0.31},
                      note="gpt2 recalls poorly beyond 64 tokens.")


def _agent(cls, server, role, ledger=None):
    return cls(make_backend(spec_for(server, role), ledger=ledger))


def test_proposer_first_turn_shows_goal_catalogue_references_neighbours_results(server, gpt2):
    server.push(Reply.json(A.PROPOSAL))
    ctx = ProposalContext(goal="find a model that recalls better", neighbours=[SIBLING, NEAREST], results=[RESULT],
                          scale=get_scale("micro"))
    _agent(LLMProposer, server, "proposer").propose([gpt2], [load_seed("llama")], [], [], context=ctx)
    prompt = server.requests[0].last_user_text
    assert prompt.startswith("# Goal\nfind a model that recalls better")
    assert "Goal:" not in prompt.split("# Literature")[-1]  # the request is the goal, not a literature item
    assert "- SwiGLU [channel_mixer] slots: -; hparams:" in prompt and "- DeltaNet [mixer] slots: conv" in prompt
    assert "class RoPEAttention(GAUBase)" in prompt  # a reference's unit source, not its name only
    assert prompt.count("class PreNormBlock(GAUBase)") == 1  # a unit the parent has is shown once
    assert "gpt2-swiglu-1a2b3c (sibling): status verified, fitness micro: 0.4321" in prompt
    assert "llama (nearest, 25% shared units): status checked, fitness not verified" in prompt
    assert "gpt2 @ micro: ok, fitness 0.5 ± 0.01, val loss 5.1" in prompt and "recall=0.31" in prompt
    assert "observer: gpt2 recalls poorly beyond 64 tokens." in prompt
    assert "d_model 64" in prompt and "context 128 tokens" in prompt


def test_proposer_refinement_round_is_a_conversation(server, gpt2):
    first = Proposal.model_validate({**A.PROPOSAL, "title": "Swap in SwiGLU",
                                     "change": "Replace GeluMLP by the catalogue's SwiGLU.", "units": []})
    review = Review.model_validate({**A.REVIEW, "accept": False, "rating": 2,
                                    "reasons": ["the SwiGLU sibling exists already"]})
    server.push(Reply.json(A.PROPOSAL))
    ctx = ProposalContext(goal="recall", previous=[first])
    _agent(LLMProposer, server, "proposer").propose([gpt2], [], [], [review], context=ctx)
    turns = server.requests[0].conversation
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[0]["content"].startswith("# Goal\nrecall")
    assert '"title": "Swap in SwiGLU"' in turns[1]["content"]  # its own previous proposal
    last = turns[2]["content"]
    assert "the SwiGLU sibling exists already" in last and "Revise the proposal" in last
    assert "class SwiGLU(GAUBase)" in last  # the catalogue unit it named for reuse, in full


def test_reviewer_sees_goal_neighbours_results_and_reuse_source(server, gpt2):
    server.push(Reply.json(A.REVIEW))
    proposal = Proposal.model_validate({**A.PROPOSAL, "change": "Wrap GeluMLP in a GatedChannelMixer."})
    ctx = ReviewContext(parents=[gpt2], goal="recall", neighbours=[SIBLING], results=[RESULT])
    _agent(LLMReviewer, server, "reviewer").review(proposal, ctx)
    prompt = server.requests[0].last_user_text
    assert prompt.startswith("# Goal of the run\nrecall")
    assert "gpt2-swiglu-1a2b3c (sibling): status verified" in prompt and "observer: gpt2 recalls" in prompt
    assert "class GatedChannelMixer(GAUBase)" in prompt  # named for reuse, not in the parent


def _draft(gpt2: Design, source: str) -> Design:
    units = dict(gpt2.units)
    units.pop("GeluMLP")
    units["GatedSiluMLP"] = UnitSpec(role="channel_mixer", source=source, hparams={"mult": 2.5})
    block = units["PreNormBlock"]
    units["PreNormBlock"] = block.model_copy(update={"children": {**block.children, "mlp": "GatedSiluMLP"}})
    return Design(name="gated", root=gpt2.root, units=units, parents=["gpt2"])


def test_coder_first_round_shows_rung_gaubase_and_rules(server, gpt2):
    server.push(Reply.json(A.UNIT_GOOD))
    ctx = CoderContext(scale=get_scale("micro"), goal="recall")
    _agent(LLMCoder, server, "coder").implement(Proposal.model_validate(A.PROPOSAL), gpt2,
                                                UnitPlan.model_validate(A.UNIT_PLAN), None, context=ctx)
    prompt = server.requests[0].last_user_text
    lo, hi = get_scale("micro").param_limits()
    assert f"[{lo:,}, {hi:,}]" in prompt and "d_model 64" in prompt and "context 128 tokens" in prompt
    assert "class GAUBase(nn.Module)" in prompt and "def build_child(self, slot" in prompt
    assert "Helpers are methods" in prompt and "No buffers" in prompt  # library/README.md unit rules
    assert "- SwiGLU [channel_mixer] slots: -; hparams:" in prompt  # the catalogue
    assert "Debug mode" not in prompt


def test_coder_debug_round_shows_table_traceback_history_once(server, gpt2):
    server.push(Reply.json(A.UNIT_GOOD))
    error = "forward: unit GatedSiluMLP: `return F.silu(...)`: ValueError: GatedSiluMLP returned Y of shape (2, 16, 160)"
    older = A.BROKEN_SOURCE.replace("mult: float = 2.5", "mult: float = 3.0")
    ctx = CoderContext(scale=get_scale("micro"), check_table="forward        FAIL       0.01  shape=[2,16,64]",
                       traceback="line 120 in _forward: return F.silu(self.w1(X)) * self.w3(X), {}",
                       attempts=[UnitAttempt(unit="GatedSiluMLP", attempt=1, source=older, error="old error",
                                             rationale="first try"),
                                 UnitAttempt(unit="GatedSiluMLP", attempt=2, source=A.BROKEN_SOURCE, error=error)])
    unit = UnitPlan.model_validate(A.UNIT_PLAN)
    _agent(LLMCoder, server, "coder").implement(Proposal.model_validate(A.PROPOSAL), _draft(gpt2, A.BROKEN_SOURCE),
                                                unit, error, context=ctx)
    prompt = server.requests[0].last_user_text
    assert unit.description in prompt and "fix unit" not in prompt  # the original description is kept
    assert prompt.count(A.BROKEN_SOURCE.strip()) == 1  # the current source once (draft and attempts skip it)
    assert "forward        FAIL" in prompt and "line 120 in _forward" in prompt
    assert "## Attempt 1 (rejected)\nrationale: first try\nerror: old error" in prompt and "mult: float = 3.0" in prompt
    assert "Debug mode" in prompt and error in prompt


def test_budget_stops_calls_before_the_request(server):
    ledger = UsageLedger(budget=UsageBudget(max_tokens=150))
    backend = make_backend(spec_for(server, "observer"), ledger=ledger)
    server.push(Reply(text="one", prompt_tokens=120, completion_tokens=60))
    backend.chat("system", [{"role": "user", "content": "hi"}])
    with pytest.raises(BudgetExceeded, match="^agent budget spent: 180 of 150 tokens$"):
        backend.chat("system", [{"role": "user", "content": "again"}])
    assert len(server.requests) == 1


def test_ledger_round_trips_and_summarises(tmp_path):
    ledger = UsageLedger()
    ledger.record(role="coder", provider="openai", model="gpt-4o", prompt_tokens=1000, completion_tokens=500,
                  design="d1")
    ledger.record(role="proposer", provider="openai", model="my-local", prompt_tokens=10, completion_tokens=5)
    with ledger.design_scope("design-00001"):
        ledger.record(role="coder", provider="openai", model="gpt-4o", prompt_tokens=1, completion_tokens=1)
    assert ledger.retag("design-00001", "d1") == 1 and ledger.by_design()["d1"].calls == 2
    path = ledger.save(tmp_path / "usage.json")
    again = UsageLedger()
    assert again.load(path) == 3 and again.by_design()["d1"].prompt_tokens == 1001
    line = again.summary()
    assert line.startswith("agents: 3 calls, 1,011 prompt + 506 completion tokens, $") and "unpriced: my-local" in line
    assert "coder 2 calls 1,502 tok" in line
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad.json: not a usage ledger"):
        UsageLedger().load(tmp_path / "bad.json")
