"""The runner interface: where verification work executes (this machine, a Ray cluster, Beaker)."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from model_discovery.config import VerifyOptions
from model_discovery.gau.design import Design


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


def execute_job(job: VerifyJob) -> dict[str, Any]:
    """Run one job on this machine and return the result record as a JSON dict.

    This is the single entry point every runner ends in (locally, in a Ray task, in a Beaker
    container); the design's code itself runs inside the verifier's sandboxed subprocess.
    """
    from model_discovery.verify import DataConfig, verify_design

    opts = job.options
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {}
    if opts.train_tokens:
        overrides["train_tokens"] = opts.train_tokens
    if opts.compile:
        overrides["compile"] = True
    data = DataConfig.model_validate(opts.data) if opts.data else None
    result = verify_design(job.design, job.scale, job.out_dir, data_config=data, eval=opts.eval,
                           probes=opts.probes, wandb=opts.wandb, train_overrides=overrides or None,
                           replicates=opts.replicates, seed=opts.seed)
    return result.model_dump(mode="json")


class Runner(abc.ABC):
    """Submits verification jobs and collects their result records."""

    name: str = "runner"

    @abc.abstractmethod
    def submit(self, job: VerifyJob) -> str:
        """Start ``job``; return an id for :meth:`wait`."""

    @abc.abstractmethod
    def wait(self, job_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Block until the job ends; return its result record (a failed run is a record too)."""

    def run(self, jobs: list[VerifyJob]) -> list[dict[str, Any]]:
        """Submit every job, then wait for all, in order."""
        ids = [self.submit(job) for job in jobs]
        return [self.wait(i) for i in ids]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, clusters)."""
