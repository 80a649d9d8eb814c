"""LLM role agents end to end through the real SDKs against the scripted local server."""

from __future__ import annotations

import pytest

from model_discovery.agents.factory import build_agent, build_agents
from model_discovery.agents.llm import make_backend
from model_discovery.agents.roles import (LLMCoder, LLMObserver, LLMPlanner, LLMProposer, LLMReviewer,
                                          static_unit_problems)
from model_discovery.agents.spec import AgentSpecError, load_agent_specs
from model_discovery.agents.types import Coder, Observer, Planner, Proposer, Reviewer
from model_discovery.agents.usage import UsageLedger
from model_discovery.gau import get_scale
from model_discovery.gau.compose import build_lm
from model_discovery.knowledge import KnowledgeConfig, KnowledgeEngine
from model_discovery.records import Design, Proposal, Review, ReviewContext, UnitImplementation, UnitPlan, UnitSpec
from tests.agents import scripted_answers as A
from tests.agents.fake_llm_server import FakeLLMServer, Reply, spec_for


@pytest.fixture
def offline_knowledge(tmp_path) -> KnowledgeEngine:
    return KnowledgeEngine(KnowledgeConfig(offline=True, cache_dir=tmp_path / "kcache"))


def _agent(cls, server, role, provider="openai", ledger=None, knowledge=None, **kw):
    return cls(make_backend(spec_for(server, role, provider=provider, **kw), ledger=ledger), knowledge=knowledge)


def test_proposer_uses_parents_and_knowledge(server, gpt2, offline_knowledge):
    ledger = UsageLedger()
    proposer = _agent(LLMProposer, server, "proposer", ledger=ledger, knowledge=offline_knowledge)
    draft = {k: v for k, v in A.PROPOSAL.items() if k != "parents"}
    server.push(Reply.json(draft, prose="Here is my proposal:"))
    feedback = [Review.model_validate(A.REVIEW)]
    proposal = proposer.propose([gpt2], [], ["GLU variants: gating helps MLPs."], feedback)
    assert isinstance(proposal, Proposal) and proposal.design is None
    assert proposal.parents == ["gpt2"] and proposal.units[0].name == "GatedSiluMLP"
    prompt = server.requests[0].last_user_text
    assert "class CausalSelfAttention(GAUBase)" in prompt  # parent sources
    assert "GLU variants: gating helps MLPs." in prompt  # given knowledge
    assert "[library]" in prompt  # engine snippets from the library notes / units
    assert "keep the parameter count equal" in prompt  # reviewer feedback
    assert '"motivation"' in prompt  # the JSON schema of the draft, without `design`
    assert '"design"' not in prompt.split("JSON schema:")[-1]
    assert ledger.by_role()["proposer"].calls == 1


def test_reviewer_flags_duplicates_and_validates(server, gpt2):
    reviewer = _agent(LLMReviewer, server, "reviewer", provider="anthropic")
    proposal = Proposal.model_validate({**A.PROPOSAL, "design": gpt2.model_dump()})
    server.push(Reply.json({**A.REVIEW, "rating": 7}), Reply.json({**A.REVIEW, "rating": 2, "accept": False}))
    ctx = ReviewContext(parents=[gpt2], known_fingerprints={gpt2.fingerprint()}, scale=get_scale("micro"),
                        knowledge=["GLU paper says gated MLPs help."])
    review = reviewer.review(proposal, ctx)
    assert review.rating == 2 and not review.accept
    first = server.requests[0]
    assert first.api == "anthropic" and "Judge it as an expert referee" in first.system
    assert "identical to a design already in the tree" in first.last_user_text
    assert "GLU paper says" in first.last_user_text and '"micro"' in first.last_user_text
    assert "field rating: Input should be less than or equal to 5" in server.requests[1].last_user_text


def test_planner_rejects_unknown_children(server, gpt2):
    planner = _agent(LLMPlanner, server, "planner")
    bad = {"root": None, "units": [{**A.UNIT_PLAN, "children": {"inner": "NoSuchUnit"}}]}
    server.push(Reply.json(bad), Reply.json(A.PLAN))
    plan = planner.plan(Proposal.model_validate(A.PROPOSAL), [gpt2])
    assert [u.name for u in plan.units] == ["GatedSiluMLP"]
    assert "names children ['NoSuchUnit'] that neither exist nor are planned" in server.requests[1].last_user_text


def _draft_with(gpt2: Design, impl: UnitImplementation) -> Design:
    units = dict(gpt2.units)
    units.pop("GeluMLP")
    units[impl.name] = UnitSpec(role=impl.role, source=impl.source, children=impl.children, hparams=impl.hparams)
    block = units["PreNormBlock"]
    units["PreNormBlock"] = block.model_copy(update={"children": {**block.children, "mlp": impl.name}})
    return Design(name="gpt2-gated", root=gpt2.root, units=units, parents=["gpt2"])


def test_coder_writes_a_unit_that_builds_and_runs(server, gpt2):
    import torch

    coder = _agent(LLMCoder, server, "coder")
    unit = UnitPlan.model_validate(A.UNIT_PLAN)
    proposal = Proposal.model_validate(A.PROPOSAL)
    wrong_name = {**A.UNIT_GOOD, "source": A.GATED_SOURCE.replace("class GatedSiluMLP", "class GatedMLP")}
    server.push(Reply.json(wrong_name, fenced=True), Reply.json(A.UNIT_GOOD))
    impl = coder.implement(proposal, gpt2, unit, None)
    assert isinstance(impl, UnitImplementation) and impl.hparams == {"mult": 2.5}
    system, first = server.requests[0].system, server.requests[0].last_user_text
    assert 'build_child("' in system and "GAUBase" in system and "class GeluMLP(GAUBase)" in system
    assert "# Library example of role channel_mixer" in first and "class PreNormBlock" in first
    assert "must define class GatedSiluMLP(GAUBase)" in server.requests[1].last_user_text
    lm = build_lm(_draft_with(gpt2, impl), get_scale("micro"), vocab_size=97)
    logits = lm(torch.randint(0, 97, (2, 16)))
    assert logits.shape == (2, 16, 97)


def test_coder_debug_mode_sees_error_and_current_source(server, gpt2):
    coder = _agent(LLMCoder, server, "coder")
    unit = UnitPlan.model_validate(A.UNIT_PLAN)
    broken = _draft_with(gpt2, UnitImplementation.model_validate(A.UNIT_BROKEN))
    error = "forward: GatedSiluMLP returned Y of shape (2, 16, 160), expected (2, 16, 64)"
    server.push(Reply.json(A.UNIT_GOOD))
    impl = coder.implement(Proposal.model_validate(A.PROPOSAL), broken, unit, error)
    assert "self.w2(" in impl.source
    prompt = server.requests[0].last_user_text
    assert "Debug mode" in prompt and error in prompt
    assert "return F.silu(self.w1(X)) * self.w3(X), {}" in prompt


def test_static_unit_problems():
    unit = UnitPlan.model_validate(A.UNIT_PLAN)
    good = UnitImplementation.model_validate(A.UNIT_GOOD)
    assert static_unit_problems(good, unit) is None
    bad_import = good.model_copy(update={"source": "import numpy\n" + good.source})
    assert "import of 'numpy' is not allowed" in static_unit_problems(bad_import, unit)
    slot = good.model_copy(update={"source": good.source.replace(
        "self.w2 = nn.Linear(hidden, d_model, bias=False)",
        "self.w2 = nn.Linear(hidden, d_model, bias=False)\n        self.n = self.build_child('norm')")})
    assert "slots ['norm'] are not declared" in static_unit_problems(slot, unit)
    assert "syntax error" in static_unit_problems(good.model_copy(update={"source": "def ("}), unit)


def test_observer_writes_a_short_note(server, gpt2):
    observer = _agent(LLMObserver, server, "observer", json_mode=False)
    server.push(Reply(text="  " + A.NOTE + "\n"))
    note = observer.observe(gpt2, {"val_loss": 4.95, "parent_val_loss": 5.10, "params": 123456})
    assert note == A.NOTE
    assert '"val_loss": 4.95' in server.requests[0].last_user_text
    assert "response_format" not in server.requests[0].body


def test_build_agents_from_spec_files(server, tmp_path, offline_knowledge):
    for role in ("proposer", "reviewer", "planner", "coder", "observer"):
        provider = "anthropic" if role == "reviewer" else "openai_compatible"
        base = server.anthropic_base_url if provider == "anthropic" else server.openai_base_url
        # no system_prompt_file: the role's prompt in etc/prompts is used
        (tmp_path / f"{role}.yaml").write_text(f"role: {role}\nprovider: {provider}\nmodel: local\n"
                                               f"base_url: {base}\nbackoff_s: 0.01\n")
    ledger = UsageLedger()
    agents = build_agents(load_agent_specs(tmp_path), ledger=ledger, knowledge=offline_knowledge, env={})
    assert isinstance(agents["proposer"], Proposer) and isinstance(agents["reviewer"], Reviewer)
    assert isinstance(agents["planner"], Planner) and isinstance(agents["coder"], Coder)
    assert isinstance(agents["observer"], Observer)
    assert type(agents["reviewer"]) is LLMReviewer and agents["reviewer"].backend.ledger is ledger
    server.push(Reply.json(A.REVIEW))
    agents["reviewer"].review(Proposal.model_validate(A.PROPOSAL), ReviewContext())
    assert server.requests[0].api == "anthropic" and ledger.total().calls == 1


def test_offline_specs_fall_back_to_llm_free_agents(gpt2, tmp_path):
    agents = build_agents(load_agent_specs(), env={})
    assert all(not isinstance(a, (LLMProposer, LLMReviewer, LLMPlanner, LLMCoder, LLMObserver))
               for a in agents.values())
    assert isinstance(agents["proposer"], Proposer) and isinstance(agents["reviewer"], Reviewer)
    assert isinstance(agents["coder"], Coder)
    plan = agents["planner"].plan(Proposal.model_validate(A.PROPOSAL), [gpt2])
    assert isinstance(agents["planner"], Planner) and [u.name for u in plan.units] == ["GatedSiluMLP"]
    note = agents["observer"].observe(gpt2, {"val_loss": 4.95, "parent_val_loss": 5.1, "ok": True})
    assert isinstance(agents["observer"], Observer)
    assert "val_loss 4.95 vs parent 5.1 (-0.15)" in note
    bad = tmp_path / "proposer.yaml"
    bad.write_text("role: proposer\nprovider: symbolic\noptions: {max_attempts: 0}\n")
    with pytest.raises(AgentSpecError, match=rf"^{bad.resolve()}: field options.max_attempts: Input should be greater"):
        build_agent(load_agent_specs(tmp_path)["proposer"])


def test_proposal_planner_orders_leaves_first():
    block = {"name": "GatedBlock", "role": "block", "description": "pre-norm block",
             "children": {"norm1": "LayerNormUnit", "mixer": "CausalSelfAttention", "norm2": "LayerNormUnit",
                          "mlp": "GatedSiluMLP"}}
    proposal = Proposal.model_validate({**A.PROPOSAL, "units": [block, A.UNIT_PLAN]})
    from model_discovery.agents.basic import ProposalPlanner

    plan = ProposalPlanner().plan(proposal, [])
    assert [u.name for u in plan.units] == ["GatedSiluMLP", "GatedBlock"] and plan.root == "GatedBlock"


def test_llm_step_with_debug_round_through_role_script(gpt2):
    """proposer -> reviewer -> planner -> coder (broken) -> real build error -> coder debug -> runs."""
    import torch

    from tests.agents.fake_llm_server import RoleScript

    script = RoleScript({"proposer": [Reply.json(A.PROPOSAL)], "reviewer": [Reply.json(A.REVIEW)],
                         "planner": [Reply.json(A.PLAN)],
                         "coder": [Reply.json(A.UNIT_BROKEN), Reply.json(A.UNIT_GOOD)]})
    with FakeLLMServer(responder=script) as server:
        ledger = UsageLedger()
        mk = lambda cls, role, provider="openai": _agent(cls, server, role, provider=provider, ledger=ledger)  # noqa: E731
        proposal = mk(LLMProposer, "proposer").propose([gpt2], [], [], [])
        assert mk(LLMReviewer, "reviewer", "anthropic").review(proposal, ReviewContext(parents=[gpt2])).accept
        plan = mk(LLMPlanner, "planner").plan(proposal, [gpt2])
        coder = mk(LLMCoder, "coder")
        unit = plan.units[0]
        with ledger.design_scope("gpt2-gated"):
            draft = _draft_with(gpt2, coder.implement(proposal, gpt2, unit, None))
            with pytest.raises(ValueError) as err:
                build_lm(draft, get_scale("micro"), vocab_size=97)(torch.randint(0, 97, (1, 8)))
            fixed = coder.implement(proposal, draft, unit, str(err.value))
        lm = build_lm(_draft_with(gpt2, fixed), get_scale("micro"), vocab_size=97)
        assert lm(torch.randint(0, 97, (1, 8))).shape == (1, 8, 97)
    assert script.calls == {"proposer": 1, "reviewer": 1, "planner": 1, "coder": 2} and not script.pending()
    assert "GatedSiluMLP returned Y of shape" in server.requests[-1].last_user_text
    assert ledger.by_design()["gpt2-gated"].calls == 2 and ledger.total().calls == 5
    assert set(ledger.by_role()) == {"proposer", "reviewer", "planner", "coder"}
