"""Training settings and results: :class:`TrainConfig` (derived from a ladder rung) and
:class:`TrainResult`; the loop itself is :mod:`model_discovery.train.loop`."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model_discovery.records.scale import ScaleConfig

CurvePoint = tuple[int, int, float]  # (step, tokens seen, loss)


class TrainConfig(BaseModel):
    """Everything the loop needs; :meth:`from_scale` derives it from a ladder rung."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int = Field(gt=0, description="optimizer steps of the whole schedule")
    batch_size: int = Field(gt=0, description="sequences per optimizer step")
    micro_batch_size: int | None = Field(None, gt=0, description="sequences per forward; None = batch_size")
    context_len: int = Field(gt=0)
    lr: float = Field(gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor as a fraction of lr")
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = Field(1.0, ge=0, description="0 disables clipping")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="'cpu', 'cuda', 'cuda:N' or 'auto'")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="auto: bf16 autocast on CUDA, fp32 on CPU")
    compile: bool = Field(False, description="torch.compile the model (falls back to eager if compiling fails)")
    seed: int = 0
    eval_interval: int = Field(0, ge=0, description="val loss every N steps; 0 = only at the end")
    eval_batches: int = Field(8, gt=0, description="micro-batches per periodic val estimate")
    final_eval_batches: int = Field(32, gt=0, description="micro-batches for the final val loss")
    log_interval: int = Field(10, gt=0, description="train-loss curve point every N steps")
    checkpoint_interval: int = Field(0, ge=0, description="checkpoint every N steps; 0 = only at the end")
    stop_at: int | None = Field(None, gt=0, description="end this call after this step (checkpointed); "
                                "the schedule still spans max_steps and a later call resumes")
    progress: bool = Field(True, description="tqdm progress bar")

    @model_validator(mode="after")
    def _consistent(self) -> "TrainConfig":
        if self.batch_size % self.micro_size:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch_size "
                             f"{self.micro_batch_size}")
        return self

    @property
    def micro_size(self) -> int:
        return self.micro_batch_size or self.batch_size

    @property
    def grad_accum(self) -> int:
        return self.batch_size // self.micro_size

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.context_len

    @classmethod
    def from_scale(cls, scale: ScaleConfig, n_params: int, train_tokens: int | None = None,
                   **overrides: Any) -> "TrainConfig":
        """The rung's recipe: ``scale.tokens_for(n_params)`` tokens (Chinchilla 20×params when the
        rung sets none) unless ``train_tokens`` is given; any field can be overridden."""
        tokens = train_tokens if train_tokens is not None else scale.tokens_for(n_params)
        steps = max(1, math.ceil(tokens / (scale.batch_size * scale.context_len)))
        micro = scale.batch_size
        while micro > 1 and micro * scale.context_len > 32768 and micro % 2 == 0:
            micro //= 2  # keep one forward under ~32k tokens; accumulate the rest
        fields: dict[str, Any] = dict(
            max_steps=steps, batch_size=scale.batch_size, micro_batch_size=micro,
            context_len=scale.context_len, lr=scale.lr, warmup_steps=max(1, round(0.05 * steps)),
            device=scale.device, eval_interval=max(1, steps // 10),
            log_interval=max(1, min(10, steps // 50)))
        fields.update(overrides)
        return cls(**fields)


class TrainResult(BaseModel):
    """What a training run produced."""

    model_config = ConfigDict(extra="forbid")

    n_params: int = Field(description="non-embedding parameters")
    n_params_total: int
    steps: int = Field(description="optimizer steps completed (including resumed ones)")
    max_steps: int
    tokens: int = Field(description="training tokens seen through the last step")
    completed: bool = Field(description="the whole schedule ran (not stopped early by stop_at)")
    resumed_from: int = Field(0, description="step the run resumed from (0: fresh)")
    train_loss: list[CurvePoint] = Field(default_factory=list)
    val_loss: list[CurvePoint] = Field(default_factory=list)
    final_val_loss: float
    tokens_per_s: float = Field(description="training throughput of this call (eval time excluded)")
    peak_memory_bytes: int = Field(description="CUDA peak allocated, or the process peak RSS on CPU")
    wall_s: float
    device: str
    dtype: str
    compiled: bool = Field(False, description="torch.compile ran every step of this call")
    compile_fallback: str | None = Field(None, description="why the compiled model fell back to eager")
    first_step_s: float = Field(0.0, description="wall time of this call's first step (compilation included)")


class TrainProgress(BaseModel):
    """Where a running training is (``progress.json`` in its folder, rewritten at each logged step)."""

    model_config = ConfigDict(extra="forbid")
    step: int = Field(ge=0)
    end_step: int = Field(ge=0, description="the step this training stops at")
    loss: float | None = Field(None, description="train loss at ``step``")
    elapsed_s: float = Field(0.0, ge=0, description="seconds since this training (or its resume) started")
    resumed_from: int = 0
    updated_at: float = Field(0.0, description="Unix time of this update")

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace of the steps taken so far (None before the first step)."""
        done = self.step - self.resumed_from
        if done <= 0 or self.elapsed_s <= 0:
            return None
        return (self.end_step - self.step) * self.elapsed_s / done
