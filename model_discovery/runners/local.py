"""Run verification jobs on this machine, on ``workers`` local worker slots at once (default 1).

Each slot has its own CPU thread budget (``threads``, default: the machine's cores shared out
evenly) and, on a machine with GPUs, its own GPU (``CUDA_VISIBLE_DEVICES`` = the slot's index
among ``gpus``). A job runs in a thread of this process that waits on the verifier's sandboxed
subprocesses, so slots do not compete for the interpreter.
"""

from __future__ import annotations

import itertools
import os
import queue
import time
from concurrent.futures import Future, ThreadPoolExecutor

from model_discovery.records import Placement, VerifyJob, VerifyResult
from model_discovery.runners.base import Runner, as_result, execute_job, failed_result
from model_discovery.verify import kill_sandboxes


def machine_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def slot_placements(workers: int, threads: int | None = None, gpus: list[str] | None = None) -> list[Placement]:
    """One placement per worker slot: ``threads`` each (default: cores // workers, at least 1) and,
    with ``gpus``, one GPU each (``workers`` may not exceed their number)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if gpus and workers > len(gpus):
        raise ValueError(f"{workers} workers but only {len(gpus)} GPUs ({','.join(gpus)})")
    per = threads or max(1, machine_cores() // workers)
    return [Placement(threads=per, cuda_visible_devices=gpus[i] if gpus else None) for i in range(workers)]


class LocalRunner(Runner):
    """Runs jobs on ``workers`` slots of this machine; ``gpus`` (device indices, e.g. ``["0", "1"]``)
    gives each slot one GPU; ``execute`` is what each job calls (default :func:`execute_job`)."""

    name = "local"
    poll_s = 0.1

    def __init__(self, workers: int = 1, threads: int | None = None, gpus: list[str] | None = None,
                 execute=execute_job) -> None:  # noqa: ANN001 - a callable (job, placement) -> result
        self._slots: queue.SimpleQueue[Placement] = queue.SimpleQueue()
        for placement in slot_placements(workers, threads, gpus):
            self._slots.put(placement)
        self._workers = workers
        self._execute = execute
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify")
        self._futures: dict[str, tuple[VerifyJob, Future[VerifyResult]]] = {}
        self._ids = itertools.count()

    @property
    def capacity(self) -> int:
        return self._workers

    def _run(self, job: VerifyJob) -> VerifyResult:
        placement = self._slots.get()
        try:
            return as_result(job, self._execute(job, placement))
        except Exception as exc:  # noqa: BLE001 - the caller gets a result, never an exception
            return failed_result(job, exc, kind="exception")
        finally:
            self._slots.put(placement)

    def submit(self, job: VerifyJob) -> str:
        job_id = f"local-{next(self._ids)}"
        self._futures[job_id] = (job, self._pool.submit(self._run, job))
        return job_id

    def pending(self) -> list[str]:
        return list(self._futures)

    def ready(self, job_id: str) -> bool:
        return self._futures[job_id][1].done()

    def wait(self, job_id: str, timeout_s: float | None = None) -> VerifyResult:
        try:
            job, future = self._futures[job_id]
        except KeyError:
            raise KeyError(f"unknown or already collected job {job_id!r}") from None
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:  # the job runs on to its sandbox's wall-clock limit; its result is dropped
            return failed_result(job, f"no result after {timeout_s:g} s", kind="timeout")
        finally:
            del self._futures[job_id]

    def close(self) -> None:
        """Drop jobs that have not started and stop the running ones: their sandboxed processes
        are killed (and their temporary folders removed) until every job thread has returned."""
        futures = [future for _, future in self._futures.values()]
        for future in futures:
            future.cancel()
        self._futures.clear()
        while any(f.running() for f in futures):
            kill_sandboxes()
            time.sleep(self.poll_s)
        self._pool.shutdown(wait=True, cancel_futures=True)
