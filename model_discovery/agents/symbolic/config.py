"""Configuration of the symbolic (LLM-free) agents."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model_discovery.agents.symbolic.registry import OPERATORS


def _default_weights() -> dict[str, float]:
    return {"swap": 3.0, "hparam": 2.0, "insert": 2.0, "remove": 1.0, "interleave": 1.0, "crossover": 2.0,
            "invent": 4.0, "mutate_unit": 3.0, "cross_unit": 2.0, "code_edit": 4.0}


def _default_priors() -> dict[str, float]:
    return {"swap": 0.6, "hparam": 0.4, "insert": 0.6, "remove": 0.5, "interleave": 0.7, "crossover": 0.7,
            "invent": 0.7, "mutate_unit": 0.6, "cross_unit": 0.6, "code_edit": 0.6, "llm": 0.5}


class SymbolicConfig(BaseModel):
    """Genetic-programming settings shared by the symbolic proposer, reviewer and coder."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="seed of the proposer's random.Random (fixed seed: same proposals)")
    operator_weights: dict[str, float] = Field(default_factory=_default_weights,
                                               description="relative chance of each operator")
    max_attempts: int = Field(24, gt=0, description="operator draws per proposal before giving up")
    # reviewer
    accept_threshold: float = Field(2.5, ge=1, le=5, description="accept when rating >= this")
    operator_priors: dict[str, float] = Field(default_factory=_default_priors,
                                              description="prior value of each operator's proposals, in [0, 1]")
    novelty_weight: float = Field(0.5, ge=0)
    size_weight: float = Field(0.3, ge=0)
    prior_weight: float = Field(0.2, ge=0)
    meta_build: bool = Field(True, description="count parameters by building on the meta device "
                                               "(in-process for catalogue code, sandboxed otherwise)")

    @field_validator("operator_weights")
    @classmethod
    def _known_ops(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(OPERATORS))
        if unknown:
            raise ValueError(f"unknown operators {unknown}; known: {', '.join(OPERATORS)}")
        if any(w < 0 for w in v.values()) or not any(w > 0 for w in v.values()):
            raise ValueError("operator weights must be >= 0 with at least one > 0")
        return v
