"""Agents: specs (``etc/agent_spec``), LLM backends (OpenAI, Anthropic, OpenAI-compatible),
role agents (proposer, reviewer, planner, coder, observer) and usage accounting.

The exchange types live in :mod:`model_discovery.agents.types`; the symbolic (no-LLM) agents in
:mod:`model_discovery.agents.symbolic`. Heavy parts (SDK clients, roles) import lazily.
"""

from __future__ import annotations

from typing import Any

from model_discovery.agents.spec import (AgentSpec, AgentSpecError, default_spec_dir, load_agent_spec,
                                         load_agent_specs, resolve_provider)
from model_discovery.agents.usage import PriceTable, UsageLedger, UsageRecord, UsageTotals

_LAZY = {
    "ChatBackend": "llm", "ChatResponse": "llm", "OpenAIChat": "llm", "AnthropicChat": "llm",
    "LLMError": "llm", "make_backend": "llm",
    "ask_structured": "structured", "extract_json": "structured", "StructuredOutputError": "structured",
    "ProposalDraft": "structured",
    "LLMProposer": "roles", "LLMReviewer": "roles", "LLMPlanner": "roles", "LLMCoder": "roles",
    "LLMObserver": "roles", "static_unit_problems": "roles",
    "ProposalPlanner": "basic", "TemplateObserver": "basic",
    "build_agent": "factory", "build_agents": "factory",
}

__all__ = ["AgentSpec", "AgentSpecError", "default_spec_dir", "load_agent_spec", "load_agent_specs",
           "resolve_provider", "PriceTable", "UsageLedger", "UsageRecord", "UsageTotals", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"model_discovery.agents.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'model_discovery.agents' has no attribute {name!r}")
