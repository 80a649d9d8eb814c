"""Agents: specs (``etc/agent_spec``), LLM backends (OpenAI, Anthropic, OpenAI-compatible),
role agents (proposer, reviewer, planner, coder, observer) and usage accounting.

What agents exchange are records of :mod:`model_discovery.records.proposal`; the role interfaces
live in :mod:`model_discovery.agents.types`, the symbolic (no-LLM) agents in
:mod:`model_discovery.agents.symbolic`. The SDK clients (``openai``, ``anthropic``) import lazily.
"""

from __future__ import annotations

from model_discovery.agents.basic import ProposalPlanner, TemplateObserver
from model_discovery.agents.factory import build_agent, build_agents
from model_discovery.agents.llm import AnthropicChat, ChatBackend, ChatResponse, LLMError, OpenAIChat, make_backend
from model_discovery.agents.roles import (LLMCoder, LLMObserver, LLMPlanner, LLMProposer, LLMReviewer,
                                          static_unit_problems)
from model_discovery.agents.spec import (AgentSpec, AgentSpecError, default_spec_dir, load_agent_spec,
                                         load_agent_specs, resolve_provider)
from model_discovery.agents.structured import ProposalDraft, StructuredOutputError, ask_structured, extract_json
from model_discovery.agents.usage import PriceTable, UsageLedger, UsageRecord, UsageTotals

__all__ = ["AgentSpec", "AgentSpecError", "default_spec_dir", "load_agent_spec", "load_agent_specs",
           "resolve_provider", "PriceTable", "UsageLedger", "UsageRecord", "UsageTotals",
           "ChatBackend", "ChatResponse", "OpenAIChat", "AnthropicChat", "LLMError", "make_backend",
           "ask_structured", "extract_json", "StructuredOutputError", "ProposalDraft",
           "LLMProposer", "LLMReviewer", "LLMPlanner", "LLMCoder", "LLMObserver", "static_unit_problems",
           "ProposalPlanner", "TemplateObserver", "build_agent", "build_agents"]
