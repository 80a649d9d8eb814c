"""Verification work to do: what the selector picks (:class:`VerifyPick`), what a run does besides
training (:class:`VerifyOptions`), the job a runner executes (:class:`VerifyJob`) and where on a
machine it runs (:class:`Placement`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model_discovery.records.data import DataConfig
from model_discovery.records.design import Design


class VerifyPick(NamedTuple):
    """One verification to run: ``seeds`` training seeds of ``design`` at ``scale`` from ``first_seed``."""

    design: str
    scale: str
    seeds: int = 1
    first_seed: int = 0

    @property
    def replicate(self) -> bool:
        """True when this adds seeds to a design already verified at the rung."""
        return self.first_seed > 0


class VerifyOptions(BaseModel):
    """What a verification run does besides training."""

    model_config = ConfigDict(extra="forbid")
    eval: bool = True
    probes: bool = True
    wandb: bool = True
    train_tokens: int | None = Field(None, gt=0, description="override the rung's token budget")
    compile: bool = Field(False, description="torch.compile the model (falls back to eager if it fails)")
    seed: int = Field(0, ge=0, description="first training seed (replicates use seed, seed + 1, ...)")
    replicates: int = Field(1, ge=1, le=16, description="training seeds per verification; the record holds "
                            "their means (less noisy fitness, proportionally more compute)")
    data: dict[str, Any] = Field(default_factory=dict, description="corpus settings (records.data.DataConfig); "
                                 "{} = the local standard-library corpus")
    cache_dir: str | None = Field(None, description="where the node that runs the job keeps corpora and "
                                  "tokenizers; None: its $MODIS_CACHE, else ~/.cache/model_discovery")

    @field_validator("data")
    @classmethod
    def _data_config(cls, v: dict[str, Any]) -> dict[str, Any]:
        return DataConfig.model_validate(v).model_dump(mode="json", exclude_defaults=True) if v else v


class VerifyJob(BaseModel):
    """One verification: train + evaluate ``design`` at rung ``scale``, results in ``out_dir``."""

    model_config = ConfigDict(extra="forbid")
    design: Design
    scale: str
    out_dir: str
    options: VerifyOptions = Field(default_factory=VerifyOptions)

    @property
    def key(self) -> str:
        return f"{self.design.name}@{self.scale}"

    @classmethod
    def for_pick(cls, design: Design, scale: str, seeds: int, first_seed: int, run_dir: str | Path,
                 options: VerifyOptions) -> "VerifyJob":
        """The job of one selector pick: a first verification in ``verify/<design>@<scale>``, or
        replicate seeds (``first_seed`` > 0) in a ``seeds<a>-<b>`` folder inside it."""
        out = Path(run_dir) / "verify" / f"{design.name}@{scale}"
        if first_seed > 0:
            out = out / f"seeds{first_seed}-{first_seed + seeds - 1}"
            options = options.model_copy(update={"seed": first_seed, "replicates": seeds})
        return cls(design=design, scale=scale, out_dir=str(out), options=options)


class Placement(BaseModel):
    """Where on this machine a job runs: its CPU thread budget and the GPUs it may see."""

    model_config = ConfigDict(extra="forbid")
    threads: int | None = Field(None, ge=1, description="torch/OMP threads of the training process; None: all")
    cuda_visible_devices: str | None = Field(None, description="CUDA_VISIBLE_DEVICES of the training process")
