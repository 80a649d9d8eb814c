"""What agents exchange: proposals, reviews, plans and unit implementations.

Every backend (symbolic genetic programming, OpenAI, Anthropic, OpenAI-compatible servers)
produces these same pydantic objects; the role interfaces are in :mod:`model_discovery.agents.types`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from model_discovery.records.design import Design, HParam, Role, UnitOrigin
from model_discovery.records.scale import ScaleConfig


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
    origin: SkipJsonSchema[UnitOrigin | None] = Field(
        None, description="genome and lineage of an invented unit (set by the symbolic coder; not in the LLM's schema)")


class ReviewContext(BaseModel):
    """What a reviewer may consult besides the proposal."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    parents: list[Design] = Field(default_factory=list)
    known_fingerprints: set[str] = Field(default_factory=set, description="designs already in the tree")
    scale: ScaleConfig | None = None
    knowledge: list[str] = Field(default_factory=list)
    known_designs: list[Design] = Field(
        default_factory=list, description="other designs in the tree (e.g. nearest by lineage), for novelty")


class Plan(BaseModel):
    """The planner's ordered list of units to implement for an accepted proposal."""

    model_config = ConfigDict(extra="forbid")
    root: str | None = Field(None, description="block unit of the new design (None: keep the parent's root)")
    units: list[UnitPlan] = Field(default_factory=list, description="units to implement, leaves first")
    notes: str = ""
