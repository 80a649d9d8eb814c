"""The role interfaces of agents (proposer, reviewer, coder, planner, observer).

What they exchange (proposals, reviews, plans, unit implementations) are records of
:mod:`model_discovery.records.proposal`; every backend (symbolic, OpenAI, Anthropic,
OpenAI-compatible servers) produces those same objects, so the design flow runs unchanged with any.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from model_discovery.records import Design, Plan, Proposal, Review, ReviewContext, UnitImplementation, UnitPlan

AgentRole = Literal["proposer", "reviewer", "planner", "coder", "observer"]


@runtime_checkable
class Proposer(Protocol):
    def propose(self, parents: list[Design], references: list[Design], knowledge: list[str],
                feedback: list[Review]) -> Proposal: ...


@runtime_checkable
class Reviewer(Protocol):
    def review(self, proposal: Proposal, context: ReviewContext) -> Review: ...


@runtime_checkable
class Coder(Protocol):
    def implement(self, proposal: Proposal, draft: Design, unit: UnitPlan,
                  error: str | None) -> UnitImplementation: ...


@runtime_checkable
class Planner(Protocol):
    def plan(self, proposal: Proposal, parents: list[Design]) -> Plan: ...


@runtime_checkable
class Observer(Protocol):
    def observe(self, design: Design, results: dict[str, object]) -> str: ...
