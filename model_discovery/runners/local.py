"""Run verification jobs on this machine, one after another (the default)."""

from __future__ import annotations

import itertools
from typing import Any

from model_discovery.runners.base import Runner, VerifyJob, execute_job


class LocalRunner(Runner):
    """Executes each job when it is waited for, in submission order."""

    name = "local"

    def __init__(self) -> None:
        self._pending: dict[str, VerifyJob] = {}
        self._ids = itertools.count()

    def submit(self, job: VerifyJob) -> str:
        job_id = f"local-{next(self._ids)}"
        self._pending[job_id] = job
        return job_id

    def wait(self, job_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        try:
            job = self._pending.pop(job_id)
        except KeyError:
            raise KeyError(f"unknown or already collected job {job_id!r}") from None
        return execute_job(job)
