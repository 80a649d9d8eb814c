"""Agent spec loading: shipped specs load; bad specs fail with one line naming file and field."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from model_discovery.agents.spec import (AgentSpec, AgentSpecError, default_spec_dir, load_agent_spec,
                                         load_agent_specs, resolve_provider)
from model_discovery.agents.usage import PriceTable

ROLES = {"proposer", "reviewer", "planner", "coder", "observer"}


def test_shipped_specs_load_with_prompts():
    specs = load_agent_specs(default_spec_dir())
    assert set(specs) == ROLES
    for role, spec in specs.items():
        assert spec.role == role and spec.is_llm
        assert spec.prompt_path() is not None and spec.prompt_path().is_file()
    assert specs["reviewer"].max_rounds and specs["coder"].max_rounds
    symbolic = load_agent_specs(default_spec_dir() / "symbolic")
    assert set(symbolic) == ROLES and all(s.provider == "symbolic" for s in symbolic.values())


def test_price_table_ships_and_prices_by_prefix():
    prices = PriceTable.load()
    assert prices.cost("gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.5)
    assert prices.cost("gpt-4o-mini", 0, 1_000_000) == pytest.approx(0.6)
    assert prices.cost("my-local-llama", 10, 10) is None


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, field, message", [
    ("role: reviewer\nprovider: openai\nmodel: gpt-4o\ntemperature: 5\n", "temperature",
     "Input should be less than or equal to 2"),
    ("role: reviewer\nprovider: mistral\nmodel: x\n", "provider", "Input should be"),
    ("role: coder\nprovider: openai_compatible\nmodel: qwen\n", "base_url", "required for provider"),
    ("role: coder\nprovider: openai\n", "model", "required for provider"),
    ("role: judge\nprovider: symbolic\n", "role", "Input should be"),
    ("role: coder\nprovider: openai\nmodel: m\nretries: -1\n", "retries", "greater than or equal to 0"),
    ("role: coder\nprovider: openai\nmodel: m\ntempurature: 0.1\n", "tempurature", "Extra inputs"),
])
def test_bad_spec_fails_with_file_and_field(tmp_path, text, field, message):
    path = _write(tmp_path, "reviewer.yaml", text)
    with pytest.raises(AgentSpecError) as err:
        load_agent_spec(path)
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith(f"{path}: field {field}: ")
    assert message in line


def test_bad_yaml_and_missing_prompt(tmp_path):
    path = _write(tmp_path, "coder.yaml", "role: coder\nprovider: [openai\n")
    with pytest.raises(AgentSpecError, match=rf"^{path}: invalid YAML at line \d+: ") as err:
        load_agent_spec(path)
    assert "\n" not in str(err.value)
    path = _write(tmp_path, "p.yaml", "role: coder\nprovider: openai\nmodel: m\nsystem_prompt_file: nope.md\n")
    with pytest.raises(AgentSpecError, match=rf"^{path}: field system_prompt_file: no such file"):
        load_agent_spec(path)
    with pytest.raises(AgentSpecError, match="cannot read agent spec"):
        load_agent_spec(tmp_path / "absent.yaml")


def test_duplicate_role_and_empty_dir(tmp_path):
    _write(tmp_path, "a.yaml", "role: coder\nprovider: symbolic\n")
    _write(tmp_path, "b.yaml", "role: coder\nprovider: symbolic\n")
    with pytest.raises(AgentSpecError, match=r"b.yaml: field role: 'coder' is also defined in"):
        load_agent_specs(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AgentSpecError, match="no agent specs"):
        load_agent_specs(empty)


def test_prompt_path_is_relative_to_spec(tmp_path):
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "r.md").write_text("You review.")
    (tmp_path / "specs").mkdir()
    spec = load_agent_spec(_write(tmp_path / "specs", "r.yaml",
                                  "role: reviewer\nprovider: symbolic\nsystem_prompt_file: ../prompts/r.md\n"))
    assert spec.prompt_path().read_text() == "You review."


def test_resolve_provider_offline_fallback(caplog):
    spec = AgentSpec(role="proposer", provider="openai", model="gpt-4o", api_key_env="MODIS_TEST_KEY")
    with caplog.at_level(logging.WARNING, logger="model_discovery.agents"):
        resolved = resolve_provider(spec, env={})
    assert resolved.provider == "symbolic" and resolved.fallback_from == "openai"
    assert resolved.role == "proposer"
    assert len(caplog.records) == 1 and "MODIS_TEST_KEY" in caplog.records[0].getMessage()
    assert resolve_provider(spec, env={"MODIS_TEST_KEY": "k"}).provider == "openai"
    local = AgentSpec(role="coder", provider="openai_compatible", model="qwen", base_url="http://127.0.0.1:1/v1")
    assert resolve_provider(local, env={}).provider == "openai_compatible"
    claude = AgentSpec(role="reviewer", provider="anthropic", model="claude-sonnet-4")
    assert claude.key_env() == "ANTHROPIC_API_KEY"
    assert resolve_provider(claude, env={}).provider == "symbolic"


def test_a_fallback_reviewer_says_so_and_screens_llm_plans(caplog):
    from model_discovery.agents.basic import FallbackReviewer
    from model_discovery.agents.factory import build_agent
    from model_discovery.gau import load_seed
    from model_discovery.records import DesignDigest, Proposal, ReviewContext
    from tests.agents import scripted_answers as A

    spec = AgentSpec(role="reviewer", provider="anthropic", model="claude-sonnet-4")
    with caplog.at_level(logging.WARNING, logger="model_discovery.agents"):
        reviewer = build_agent(spec, env={})
    assert isinstance(reviewer, FallbackReviewer)
    assert any("FALLING BACK" in r.getMessage() for r in caplog.records)
    assert any("no LLM judged" in r.getMessage() for r in caplog.records)
    ctx = ReviewContext(parents=[load_seed("gpt2")])
    good = reviewer.review(Proposal.model_validate(A.PROPOSAL), ctx)
    assert good.accept and good.reasons[0].startswith("[symbolic fallback for the anthropic reviewer")
    vague = {**A.PROPOSAL, "units": [{**A.UNIT_PLAN, "description": "better MLP", "children": {"x": "Nope"}}]}
    bad = reviewer.review(Proposal.model_validate(vague), ctx)
    assert not bad.accept and any("too short" in r for r in bad.reasons) and any("'Nope'" in r for r in bad.reasons)
    seen = ctx.model_copy(update={"neighbours": [DesignDigest(name="g2", relation="sibling", status="checked",
                                                              units=["PreNormBlock", "GatedSiluMLP"])]})
    again = reviewer.review(Proposal.model_validate(A.PROPOSAL), seen)
    assert not again.accept and "g2 (sibling, status checked) already has units ['GatedSiluMLP']" in again.reasons


def test_spec_max_rounds_bound_the_flow(tmp_path):
    from model_discovery.design import FlowConfig
    from model_discovery.system import flow_config

    specs = {"reviewer": AgentSpec(role="reviewer", provider="symbolic", max_rounds=5),
             "coder": AgentSpec(role="coder", provider="symbolic", max_rounds=1),
             "proposer": AgentSpec(role="proposer", provider="symbolic")}
    cfg = flow_config(FlowConfig(max_review_rounds=3, max_debug_tries=3), specs)
    assert (cfg.max_review_rounds, cfg.max_debug_tries) == (5, 1)
    specs["coder"] = AgentSpec(role="coder", provider="symbolic")  # unset: the flow config's bound stays
    assert flow_config(FlowConfig(max_debug_tries=2), specs).max_debug_tries == 2
