"""The runner interface: where verification work executes (this machine, a Ray cluster, Beaker).

A runner takes :class:`VerifyJob`\\ s and gives back :class:`~model_discovery.verify.VerifyResult`\\ s
(a job that could not run is a failed result, never an exception). It is asynchronous:
``submit`` returns at once, ``ready`` says whether a job has ended, ``collect`` returns the jobs
that ended (waiting up to a timeout for the first), and ``capacity`` is how many jobs the runner
works on at once — the scheduler keeps that many in flight.
"""

from __future__ import annotations

import abc
import time
from pathlib import Path
from typing import Any

from model_discovery.errors import one_line
from model_discovery.records import DataConfig, Placement, VerifyJob, VerifyResult
from model_discovery.verify import verify_design


def execute_job(job: VerifyJob, placement: Placement | None = None) -> VerifyResult:
    """Run one job on this machine and return its result.

    This is the single entry point every runner ends in (locally, in a Ray task, in a Beaker
    container); the design's code itself runs inside the verifier's sandboxed subprocesses.
    """
    opts, where = job.options, placement or Placement()
    Path(job.out_dir).mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {}
    if opts.train_tokens:
        overrides["train_tokens"] = opts.train_tokens
    if opts.compile:
        overrides["compile"] = True
    data = DataConfig.model_validate(opts.data) if opts.data else None
    env = {} if where.cuda_visible_devices is None else {"CUDA_VISIBLE_DEVICES": where.cuda_visible_devices}
    return verify_design(job.design, job.scale, job.out_dir, data_config=data, eval=opts.eval,
                         probes=opts.probes, wandb=opts.wandb, train_overrides=overrides or None,
                         replicates=opts.replicates, seed=opts.seed, threads=where.threads, env=env,
                         cache_dir=opts.cache_dir)


def failed_result(job: VerifyJob, error: object, kind: str = "runner") -> VerifyResult:
    """A failed result for ``job``: it could not run to completion for reasons outside the
    design (a lost node, a cancelled experiment, a timeout), so callers always get a result."""
    return VerifyResult(design=job.design.name, fingerprint=job.design.fingerprint(), scale=job.scale,
                        status="failed", error=one_line(error), error_kind=kind, out_dir=job.out_dir)


def run_job(job: VerifyJob, execute: Any = execute_job) -> VerifyResult:
    """``execute(job)``, with any exception turned into a failed result (kind ``exception``)."""
    try:
        result = execute(job)
    except Exception as exc:  # noqa: BLE001 - the caller gets a result, never an exception
        return failed_result(job, exc, kind="exception")
    return as_result(job, result)


def as_result(job: VerifyJob, value: object) -> VerifyResult:
    """``value`` (a result, or its JSON dict from another process) as a :class:`VerifyResult`."""
    if isinstance(value, VerifyResult):
        return value
    if isinstance(value, dict):
        try:
            return VerifyResult.model_validate(value)
        except ValueError as exc:
            return failed_result(job, f"malformed result record: {one_line(exc)}")
    return failed_result(job, f"the job returned {type(value).__name__}, not a result")


class Runner(abc.ABC):
    """Submits verification jobs and collects their results."""

    name: str = "runner"
    poll_s: float = 0.2
    """Pause between two looks at unfinished jobs in :meth:`collect`."""

    @property
    def capacity(self) -> int:
        """How many jobs this runner works on at once (the scheduler keeps that many in flight)."""
        return 1

    @abc.abstractmethod
    def submit(self, job: VerifyJob) -> str:
        """Start ``job``; return an id for :meth:`wait`."""

    @abc.abstractmethod
    def pending(self) -> list[str]:
        """Ids of submitted jobs whose results were not collected yet."""

    @abc.abstractmethod
    def ready(self, job_id: str) -> bool:
        """Whether the job has ended (its result can be taken without waiting)."""

    @abc.abstractmethod
    def wait(self, job_id: str, timeout_s: float | None = None) -> VerifyResult:
        """Block until the job ends; return its result (a failed run is a result too)."""

    def collect(self, timeout_s: float | None = 0.0) -> list[tuple[str, VerifyResult]]:
        """The jobs that have ended, as ``(id, result)``; waits up to ``timeout_s`` (None: no
        limit) for the first when none has and some are pending."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            ids = self.pending()
            done = [i for i in ids if self.ready(i)]
            if done or not ids or (deadline is not None and time.monotonic() >= deadline):
                return [(i, self.wait(i)) for i in done]
            self._pause(self.poll_s if deadline is None else max(0.0, min(self.poll_s, deadline - time.monotonic())))

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def run(self, jobs: list[VerifyJob]) -> list[VerifyResult]:
        """Submit every job, then wait for all; results in the order of ``jobs``."""
        ids = [self.submit(job) for job in jobs]
        return [self.wait(i) for i in ids]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, clusters, worker threads)."""
