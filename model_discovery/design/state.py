"""State of one design run through the flow (JSON-serialisable for checkpointing)."""

from __future__ import annotations

from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from model_discovery.agents.usage import UsageBudget


class FlowState(TypedDict, total=False):
    """LangGraph state: plain JSON values only, so any checkpointer can store it."""

    goal: str
    parents: list[str]
    references: list[str]
    knowledge: list[str]
    proposal: dict[str, Any] | None
    proposals: list[dict[str, Any]]  # every proposal of this run, in order (the last is ``proposal``)
    reviews: list[dict[str, Any]]
    review_round: int
    plan: list[dict[str, Any]]  # units still to write (in a debug round: the culprit)
    full_plan: list[dict[str, Any]]  # every planned unit with its original description
    plan_index: int
    attempts: list[dict[str, Any]]  # UnitAttempt: every unit version the coder wrote
    check_table: str  # readable table of the last failed check
    traceback: str  # frames of the last failed check in the compiled module
    draft: dict[str, Any]
    debug_tries: int
    check_attempts: int
    last_error: str | None
    check: dict[str, Any] | None
    status: str
    committed: str | None


class FlowConfig(BaseModel):
    """Loop bounds, what agents are shown, the agents' budget and the scale at which new designs
    are checked. An agent spec's ``max_rounds`` (reviewer: review rounds, coder: debug tries)
    overrides the bound here for that agent."""

    model_config = ConfigDict(extra="forbid")
    max_review_rounds: int = Field(3, ge=1)
    max_debug_tries: int = Field(3, ge=0)
    check_scale: str = "micro"
    n_parents: int = Field(1, ge=1, le=2)
    n_references: int = Field(2, ge=0)
    n_nearest: int = Field(4, ge=0, description="nearest designs (by shared units) shown to proposer and reviewer")
    knowledge_k: int = Field(3, ge=0)
    knowledge_sources: list[str] = Field(default_factory=lambda: ["library"],
                                         description="library, arxiv, s2 (online sources need network)")
    budget: UsageBudget = Field(default_factory=UsageBudget,
                                description="the run stops cleanly when its LLM agents have spent this")


class DesignOutcome(BaseModel):
    """What one design run produced."""

    model_config = ConfigDict(extra="forbid")
    thread_id: str
    status: str = Field(description="committed | failed | rejected | duplicate (design: the existing one)")
    design: str | None = None
    operator: str | None = None
    parents: list[str] = Field(default_factory=list)
    review_rounds: int = 0
    check_attempts: int = 0
    error: str | None = None
