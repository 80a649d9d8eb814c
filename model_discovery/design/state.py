"""State of one design run through the flow (JSON-serialisable for checkpointing)."""

from __future__ import annotations

from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field


class FlowState(TypedDict, total=False):
    """LangGraph state: plain JSON values only, so any checkpointer can store it."""

    goal: str
    parents: list[str]
    references: list[str]
    knowledge: list[str]
    proposal: dict[str, Any] | None
    reviews: list[dict[str, Any]]
    review_round: int
    plan: list[dict[str, Any]]
    plan_index: int
    draft: dict[str, Any]
    debug_tries: int
    check_attempts: int
    last_error: str | None
    check: dict[str, Any] | None
    status: str
    committed: str | None


class FlowConfig(BaseModel):
    """Loop bounds and the scale at which new designs are checked."""

    model_config = ConfigDict(extra="forbid")
    max_review_rounds: int = Field(3, ge=1)
    max_debug_tries: int = Field(3, ge=0)
    check_scale: str = "micro"
    n_parents: int = Field(1, ge=1, le=2)
    n_references: int = Field(2, ge=0)
    knowledge_k: int = Field(3, ge=0)
    knowledge_sources: list[str] = Field(default_factory=lambda: ["library"],
                                         description="library, arxiv, s2 (online sources need network)")


class DesignOutcome(BaseModel):
    """What one design run produced."""

    model_config = ConfigDict(extra="forbid")
    thread_id: str
    status: str = Field(description="committed | failed | rejected")
    design: str | None = None
    operator: str | None = None
    parents: list[str] = Field(default_factory=list)
    review_rounds: int = 0
    check_attempts: int = 0
    error: str | None = None
