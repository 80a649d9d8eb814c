"""Checker results and settings: :class:`CheckConfig`, :class:`CheckResult`, :class:`CheckReport`
(the readable table is :func:`model_discovery.check.report.format_report`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CheckConfig(BaseModel):
    """Knobs of the dynamic checks (defaults suit the ``micro`` rung on a CPU)."""

    model_config = ConfigDict(extra="forbid")

    forward_batch: int = Field(2, gt=0, description="batch of the forward/shape check")
    causality_tol_fp64: float = Field(
        1e-5, gt=0, description="relative leak tolerance in float64 (units may still compute parts in float32)")
    causality_tol_fp32: float = Field(1e-4, gt=0, description="relative leak tolerance when float64 fails")
    speed_batch: int = Field(8, gt=0, description="batch of the speed/memory measurement")
    speed_iters: int = Field(3, gt=0, description="timed forward+backward passes (the minimum is kept)")
    max_slowdown: float = Field(5.0, gt=1, description="fail when forward+backward is this many times slower than gpt2")
    max_memory_ratio: float = Field(5.0, gt=1, description="fail when training memory is this many times gpt2's")
    train_steps: int = Field(30, gt=0, description="AdamW steps of the effectiveness check")
    train_batch: int = Field(8, gt=0)
    min_rel_loss_drop: float = Field(0.05, ge=0, lt=1, description="held-out loss must fall by this fraction")
    seed: int = 0


class CheckResult(BaseModel):
    """One check: its verdict, duration, measured figures, and a one-line message."""

    model_config = ConfigDict(extra="forbid")

    name: str
    passed: bool
    seconds: float = 0.0
    figures: dict[str, Any] = Field(default_factory=dict)
    message: str = ""


class CheckReport(BaseModel):
    """All checks of one design at one scale."""

    model_config = ConfigDict(extra="forbid")

    design: str
    scale: str
    passed: bool
    checks: list[CheckResult] = Field(default_factory=list)
    first_error: str | None = Field(None, description="one actionable line: the first failing check")
    total_seconds: float = 0.0

    def get(self, name: str) -> CheckResult | None:
        """The check called ``name``, if it ran."""
        return next((c for c in self.checks if c.name == name), None)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]
