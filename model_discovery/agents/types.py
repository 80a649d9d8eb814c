"""What agents exchange: proposals, reviews, unit implementations, and the role interfaces.

Every backend (symbolic genetic programming, OpenAI, Anthropic, OpenAI-compatible servers)
produces these same pydantic objects, so the design flow runs unchanged with any of them.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from model_discovery.gau.design import Design, HParam, Role
from model_discovery.gau.scales import ScaleConfig


class UnitPlan(BaseModel):
    """A unit the proposal creates or rewrites; implemented one at a time by the coder."""

    model_config = ConfigDict(extra="forbid")
    name: str
    role: Role
    description: str
    children: dict[str, str] = Field(default_factory=dict, description="slot -> unit name")
    replaces: str | None = Field(None, description="existing unit whose slots this unit takes over")


class Proposal(BaseModel):
    """A change to one or two parent designs."""

    model_config = ConfigDict(extra="forbid")
    title: str
    motivation: str
    change: str = Field(description="what changes, unit by unit")
    operator: str = Field(description="e.g. swap, hparam, insert, remove, interleave, crossover, llm")
    parents: list[str] = Field(default_factory=list, description="parent design names")
    references: list[str] = Field(default_factory=list, description="reference design names / papers")
    units: list[UnitPlan] = Field(default_factory=list, description="units to implement, in order")
    design: Design | None = Field(None, description="complete candidate, when the proposer built it")


class Review(BaseModel):
    """The reviewer's verdict on a proposal."""

    model_config = ConfigDict(extra="forbid")
    rating: float = Field(ge=1, le=5, description="1 (reject) .. 5 (excellent)")
    accept: bool
    novelty: float = Field(0.5, ge=0, le=1)
    reasons: list[str] = Field(default_factory=list)
    suggestions: list[str] = Field(default_factory=list)


class UnitImplementation(BaseModel):
    """Source for one unit written by the coder."""

    model_config = ConfigDict(extra="forbid")
    name: str
    role: Role
    source: str
    children: dict[str, str] = Field(default_factory=dict)
    hparams: dict[str, HParam] = Field(default_factory=dict)
    rationale: str = ""


class ReviewContext(BaseModel):
    """What a reviewer may consult besides the proposal."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    parents: list[Design] = Field(default_factory=list)
    known_fingerprints: set[str] = Field(default_factory=set, description="designs already in the tree")
    scale: ScaleConfig | None = None
    knowledge: list[str] = Field(default_factory=list)
    known_designs: list[Design] = Field(
        default_factory=list, description="other designs in the tree (e.g. nearest by lineage), for novelty")


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


class Plan(BaseModel):
    """The planner's ordered list of units to implement for an accepted proposal."""

    model_config = ConfigDict(extra="forbid")
    root: str | None = Field(None, description="block unit of the new design (None: keep the parent's root)")
    units: list[UnitPlan] = Field(default_factory=list, description="units to implement, leaves first")
    notes: str = ""


@runtime_checkable
class Planner(Protocol):
    def plan(self, proposal: Proposal, parents: list[Design]) -> Plan: ...


@runtime_checkable
class Observer(Protocol):
    def observe(self, design: Design, results: dict[str, object]) -> str: ...
