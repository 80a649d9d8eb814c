"""Records of the evolution tree, returned by :class:`~model_discovery.evolution.tree.EvolutionTree`.

Every query returns these plain, JSON-serialisable objects; ORM rows stay inside the store.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model_discovery.records.design import Design
from model_discovery.records.proposal import Proposal, Review
from model_discovery.records.result import VerifyResult

STATUSES: tuple[str, ...] = ("proposed", "checked", "failed", "verified")
EdgeKind = Literal["parent", "reference"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DesignRecord(_Record):
    """A design as stored: the design itself plus its place in the tree."""

    name: str
    fingerprint: str
    design: Design
    status: str
    created_at: datetime
    summary: str = ""
    operator: str = ""
    generation: int = 0
    parents: list[str] = Field(default_factory=list)
    references: list[str] = Field(default_factory=list)

    @property
    def is_seed(self) -> bool:
        """Seeds are the roots of the tree: designs with no parent."""
        return not self.parents


class EdgeRecord(_Record):
    child: str
    parent: str
    kind: EdgeKind


class ProposalRecord(_Record):
    design: str
    proposal: Proposal
    created_at: datetime


class ReviewRecord(_Record):
    design: str
    review: Review
    rating: float
    accept: bool
    created_at: datetime


class CheckRecord(_Record):
    """A checker report (stored as JSON) with its verdict and duration."""

    design: str
    report: dict[str, Any]
    passed: bool
    seconds: float
    created_at: datetime


class ResultRecord(_Record):
    """One verification of one design at one rung of the ladder."""

    design: str
    scale: str
    record: dict[str, Any]
    fitness: float | None
    status: str
    created_at: datetime
    fitness_se: float | None = Field(None, description="standard error of the fitness (seeds and noise model)")
    seeds: int = Field(1, description="training seeds behind the fitness")

    @cached_property
    def result(self) -> VerifyResult:
        """The verification result this row holds (parsed from ``record`` once per row)."""
        return VerifyResult.model_validate(self.record)


class LeaseRecord(_Record):
    design: str
    scale: str
    owner: str
    expires_at: datetime
    expired: bool


class LeaderboardRow(_Record):
    rank: int
    design: str
    scale: str
    value: float | None
    fitness: float | None
    status: str
    operator: str
    generation: int
    fitness_se: float | None = None
    seeds: int = 1


class Lineage(_Record):
    """A design with all its ancestors and descendants (through parent edges)."""

    design: str
    ancestors: list[str]
    descendants: list[str]
    edges: list[EdgeRecord]


class GraphNode(_Record):
    name: str
    status: str
    operator: str
    generation: int
    seed: bool
    best_scale: str | None = None
    fitness: float | None = None


class Graph(_Record):
    """Plain nodes and edges for plotting (no graph library needed)."""

    nodes: list[GraphNode]
    edges: list[EdgeRecord]


class TreeStats(_Record):
    designs: int
    by_status: dict[str, int]
    by_operator: dict[str, int]
    seeds: int
    units: int
    distinct_units: int
    edges: int
    results_by_scale: dict[str, int]
    leases_by_scale: dict[str, int]
    max_generation: int
