"""Build role agents from specs.

    specs = load_agent_specs()                         # etc/agent_spec/*.yaml
    ledger = UsageLedger()
    agents = build_agents(specs, ledger=ledger, knowledge=KnowledgeEngine())
    proposal = agents["proposer"].propose(parents, refs, [], [])

LLM specs become ``LLMProposer`` / ``LLMReviewer`` / ``LLMPlanner`` / ``LLMCoder`` /
``LLMObserver`` over an OpenAI or Anthropic backend; symbolic specs (and LLM specs without an API
key or base URL, see :func:`~model_discovery.agents.spec.resolve_provider`) become the symbolic
agents of :mod:`model_discovery.agents.symbolic`; a reviewer that fell back that way is wrapped
in :class:`~model_discovery.agents.basic.FallbackReviewer`.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from model_discovery.agents.basic import FallbackReviewer, ProposalPlanner, TemplateObserver
from model_discovery.agents.llm import make_backend
from model_discovery.agents.roles import LLMCoder, LLMObserver, LLMPlanner, LLMProposer, LLMReviewer
from model_discovery.agents.spec import AgentSpec, AgentSpecError, resolve_provider
from model_discovery.agents.symbolic import SymbolicConfig
from model_discovery.agents.usage import UsageLedger
from model_discovery.errors import field_error
from model_discovery.knowledge import KnowledgeEngine

LLM_ROLE_CLASSES: dict[str, type] = {"proposer": LLMProposer, "reviewer": LLMReviewer,
                                     "planner": LLMPlanner, "coder": LLMCoder, "observer": LLMObserver}


def _symbolic_config(spec: AgentSpec) -> Any:
    """``SymbolicConfig`` from the spec's ``options``; errors name the file and the option."""
    try:
        return SymbolicConfig.model_validate(spec.options)
    except ValidationError as exc:
        raise AgentSpecError(f"{spec.source_path or spec.role}: {field_error(exc, prefix='options.')}") from exc


def _symbolic_agent(spec: AgentSpec, **kwargs: Any) -> Any:
    """The LLM-free agent for ``spec.role``: ``Symbolic<Role>`` from
    :mod:`model_discovery.agents.symbolic` (configured by ``spec.options``), or the deterministic
    :class:`ProposalPlanner` / :class:`TemplateObserver` for roles it does not cover."""
    mod = importlib.import_module("model_discovery.agents.symbolic")
    cls = getattr(mod, f"Symbolic{spec.role.capitalize()}", None)
    if cls is None:
        fallback = {"planner": ProposalPlanner, "observer": TemplateObserver}.get(spec.role)
        if fallback is None:
            raise AgentSpecError(f"{spec.source_path or spec.role}: field provider: no symbolic "
                                 f"{spec.role} is available (model_discovery.agents.symbolic)")
        return fallback()
    params = inspect.signature(cls).parameters
    offered: dict[str, Any] = dict(kwargs)
    if "config" in params:
        offered["config"] = _symbolic_config(spec)
    return cls(**{k: v for k, v in offered.items() if k in params})


def build_agent(spec: AgentSpec, *, ledger: UsageLedger | None = None,
                knowledge: KnowledgeEngine | None = None, env: Mapping[str, str] | None = None,
                sleep: Callable[[float], None] = time.sleep, **symbolic_kwargs: Any) -> Any:
    """The agent for one spec, after :func:`resolve_provider` (offline fallback to symbolic)."""
    spec = resolve_provider(spec, env)
    if spec.provider == "symbolic":
        agent = _symbolic_agent(spec, **symbolic_kwargs)
        if spec.role == "reviewer" and spec.fallback_from:  # never a silent stand-in for an LLM referee
            return FallbackReviewer(agent, spec.fallback_from)
        return agent
    backend = make_backend(spec, ledger=ledger, sleep=sleep, env=env)
    cls = LLM_ROLE_CLASSES[spec.role]
    return cls(backend, knowledge=knowledge)


def build_agents(specs: Mapping[str, AgentSpec], *, ledger: UsageLedger | None = None,
                 knowledge: KnowledgeEngine | None = None, env: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, **symbolic_kwargs: Any) -> dict[str, Any]:
    """One agent per role; all LLM agents share ``ledger`` (a new one when not given)."""
    ledger = ledger if ledger is not None else UsageLedger()
    return {role: build_agent(spec, ledger=ledger, knowledge=knowledge, env=env, sleep=sleep,
                              **symbolic_kwargs)
            for role, spec in specs.items()}
