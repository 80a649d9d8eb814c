"""Agents: specs (``etc/agent_spec``), LLM backends (OpenAI, Anthropic, OpenAI-compatible),
role agents (proposer, reviewer, planner, coder, observer) and usage accounting.

What agents exchange are records of :mod:`model_discovery.records.proposal`; the role interfaces
live in :mod:`model_discovery.agents.types`, the symbolic (no-LLM) agents in
:mod:`model_discovery.agents.symbolic`. The SDK clients (``openai``, ``anthropic``) import lazily.
"""

from __future__ import annotations

from model_discovery.agents.factory import build_agent, build_agents
from model_discovery.agents.llm import LLMError
from model_discovery.agents.spec import AgentSpec, AgentSpecError, default_spec_dir, load_agent_spec, load_agent_specs
from model_discovery.agents.structured import StructuredOutputError
from model_discovery.agents.usage import UsageLedger

__all__ = ["AgentSpec", "AgentSpecError", "default_spec_dir", "load_agent_spec", "load_agent_specs", "UsageLedger",
           "LLMError", "StructuredOutputError", "build_agent", "build_agents"]
