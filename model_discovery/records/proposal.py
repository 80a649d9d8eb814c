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


class DesignDigest(BaseModel):
    """Another design of the tree as agents see it: where it stands and how it scored."""

    model_config = ConfigDict(extra="forbid")
    name: str
    relation: str = Field(description="parent | reference | sibling | nearest")
    status: str
    operator: str = ""
    summary: str = ""
    parents: list[str] = Field(default_factory=list)
    units: list[str] = Field(default_factory=list, description="unit names, root first")
    similarity: float | None = Field(None, description="shared units / all units with the compared design")
    fitness: dict[str, float | None] = Field(default_factory=dict, description="rung -> fitness")


class ResultDigest(BaseModel):
    """One verification of a parent or reference: fitness, losses, task and probe scores, the
    observer's note."""

    model_config = ConfigDict(extra="forbid")
    design: str
    scale: str
    status: str
    fitness: float | None = None
    fitness_se: float | None = None
    final_val_loss: float | None = None
    eval_metrics: dict[str, float] = Field(default_factory=dict)
    probe_scores: dict[str, float] = Field(default_factory=dict)
    error: str = ""
    note: str = Field("", description="the observer's note on this result")


class ProposalContext(BaseModel):
    """What the design flow shows a proposer besides parents, references and knowledge."""

    model_config = ConfigDict(extra="forbid")
    goal: str = Field("", description="the request the run serves")
    neighbours: list[DesignDigest] = Field(default_factory=list, description="siblings and nearest designs")
    results: list[ResultDigest] = Field(default_factory=list, description="results of parents and references")
    previous: list[Proposal] = Field(default_factory=list, description="own earlier proposals this run, in order")
    scale: ScaleConfig | None = None


class UnitAttempt(BaseModel):
    """One version of a unit the coder wrote: its source, the check error that rejected it (empty
    for the version kept) and the coder's rationale."""

    model_config = ConfigDict(extra="forbid")
    unit: str
    attempt: int = Field(ge=1, description="check attempt of the design this version went into")
    source: str
    error: str = ""
    rationale: str = ""
    check_table: str = Field("", description="the readable table of every check of that attempt")
    traceback: str = Field("", description="frames in the compiled design module, with line numbers")


class CoderContext(BaseModel):
    """What the design flow shows a coder besides proposal, draft and unit plan."""

    model_config = ConfigDict(extra="forbid")
    scale: ScaleConfig | None = Field(None, description="the rung the design is checked at")
    goal: str = ""
    check_table: str = Field("", description="in debug rounds: the full check table of the failed attempt")
    traceback: str = Field("", description="in debug rounds: frames in the compiled module, with line numbers")
    attempts: list[UnitAttempt] = Field(default_factory=list, description="earlier rejected versions of this unit")


class ReviewContext(BaseModel):
    """What a reviewer may consult besides the proposal."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    parents: list[Design] = Field(default_factory=list)
    known_fingerprints: set[str] = Field(default_factory=set, description="designs already in the tree")
    scale: ScaleConfig | None = None
    knowledge: list[str] = Field(default_factory=list)
    known_designs: list[Design] = Field(
        default_factory=list, description="other designs in the tree (e.g. nearest by lineage), for novelty")
    goal: str = ""
    neighbours: list[DesignDigest] = Field(default_factory=list, description="siblings and nearest designs")
    results: list[ResultDigest] = Field(default_factory=list, description="results of the parents")


class Plan(BaseModel):
    """The planner's ordered list of units to implement for an accepted proposal."""

    model_config = ConfigDict(extra="forbid")
    root: str | None = Field(None, description="block unit of the new design (None: keep the parent's root)")
    units: list[UnitPlan] = Field(default_factory=list, description="units to implement, leaves first")
    notes: str = ""
