"""Run verification jobs as Ray tasks, on a local Ray instance or an existing cluster.

    runner = RayRunner(address="auto", num_gpus=1)      # or RayRunner(RayRunnerConfig(...))
    results = runner.run([job_a, job_b])                 # one VerifyResult per job, failed ones too

Each job is one ``@ray.remote`` task that calls
:func:`~model_discovery.runners.base.execute_job` on whichever node Ray schedules it. A task
whose worker process or node dies is retried by Ray (``max_retries``); when Ray gives up with
``NodeDiedError``/``WorkerCrashedError`` the runner submits the job again, at most
``resubmits`` times. Every failure reaches the caller as a failed result with a one-line
``error``, never as an exception. ``capacity`` (jobs kept in flight) is ``max_in_flight``, else
what the cluster's CPUs (GPUs when tasks reserve GPUs) hold.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from model_discovery.errors import one_line
from model_discovery.records import Placement, VerifyJob, VerifyResult
from model_discovery.records.config_file import ConfigFile
from model_discovery.runners.base import Runner, as_result, execute_job, failed_result, run_job

ENV_PREFIX = "MODIS_RAY_"
"""Environment variables ``MODIS_RAY_<FIELD>`` (e.g. ``MODIS_RAY_NUM_GPUS=1``) set config fields."""


class RayRunnerConfig(ConfigFile):
    """Where and how verification tasks run on Ray."""

    model_config = ConfigDict(extra="forbid")
    config_kind: ClassVar[str] = "ray runner config"
    address: str | None = Field(
        None, description="cluster address ('auto', 'host:6379', 'ray://host:10001'); "
                          "None: $RAY_ADDRESS, else a new local instance; 'local': always a new local instance")
    num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per verification task")
    num_gpus: float = Field(0.0, ge=0, description="GPUs reserved per verification task (0 on CPU machines)")
    memory_gb: float | None = Field(None, gt=0, description="memory reserved per task, GiB")
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. 'H100'")
    max_retries: int = Field(3, ge=0, description="Ray's own retries when a task's worker or node dies")
    resubmits: int = Field(1, ge=0, description="fresh submissions after Ray gives up on a lost worker/node")
    retry_exceptions: bool = Field(False, description="let Ray retry tasks that raise (execute_job records "
                                                      "design failures, so a raise means infrastructure)")
    timeout_s: float | None = Field(None, gt=0, description="default wait limit per job; None: no limit")
    local_num_cpus: int | None = Field(None, ge=1, description="CPUs of a local instance the runner starts")
    local_num_gpus: int | None = Field(None, ge=0, description="GPUs of a local instance the runner starts")
    namespace: str | None = Field("modis", description="Ray namespace")
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime_env for the tasks")
    log_to_driver: bool = Field(False, description="stream task output to this process")
    max_in_flight: int | None = Field(None, ge=1, description="jobs kept running at once; None: as many as the "
                                                               "cluster's CPUs (GPUs) hold at the reservation above")

    def resolved_address(self) -> str:
        """The address to connect to: the field, else ``$RAY_ADDRESS``, else 'local'."""
        return self.address or os.environ.get("RAY_ADDRESS") or "local"

    def task_options(self) -> dict[str, Any]:
        """Keyword arguments for ``remote_function.options(...)``."""
        opts: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                                "max_retries": self.max_retries, "retry_exceptions": self.retry_exceptions}
        if self.memory_gb is not None:
            opts["memory"] = int(self.memory_gb * 2**30)
        if self.accelerator_type is not None:
            opts["accelerator_type"] = self.accelerator_type
        return opts

    @classmethod
    def from_env(cls, **overrides: Any) -> "RayRunnerConfig":
        """Defaults, then ``MODIS_RAY_<FIELD>`` variables (JSON or plain text), then ``overrides``."""
        data: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is None:
                continue
            try:
                data[name] = json.loads(raw)
            except ValueError:
                data[name] = raw
        data.update(overrides)
        return cls.parse(data, origin="RayRunner (MODIS_RAY_* environment / arguments)")


_LOST = ("NodeDiedError", "WorkerCrashedError", "LocalRayletDiedError", "OwnerDiedError")


def _ray_task(payload: dict[str, Any], execute: Callable[[VerifyJob, Placement], Any], threads: int) -> dict[str, Any]:
    """Body of the remote task: rebuild the job, run it with the task's CPUs as its thread budget
    (Ray sets ``CUDA_VISIBLE_DEVICES`` itself), always return a result (as JSON)."""
    placement = Placement(threads=threads)
    return run_job(VerifyJob.model_validate(payload), lambda job: execute(job, placement)).model_dump(mode="json")


@dataclass
class _Pending:
    job: VerifyJob
    ref: Any = None
    submissions: int = 0
    result: VerifyResult | None = None  # set when the job failed before reaching Ray


class RayRunner(Runner):
    """Submits each job as a Ray task; ``wait`` returns its result (failures included).

    ``execute`` is the function every task calls (default
    :func:`~model_discovery.runners.base.execute_job`); a wrapper can add per-node setup.
    """

    name = "ray"

    def __init__(self, config: RayRunnerConfig | Mapping[str, Any] | None = None, *,
                 execute: Callable[[VerifyJob, Placement], Any] = execute_job, **fields: Any) -> None:
        if isinstance(config, RayRunnerConfig):
            self.config = RayRunnerConfig.parse({**config.model_dump(), **fields}) if fields else config
        else:
            self.config = RayRunnerConfig.from_env(**{**dict(config or {}), **fields})
        self._execute = execute
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count()
        self._remote: Any = None
        self._started_ray = False

    # -- connection ---------------------------------------------------------------------------
    def connect(self) -> None:
        """Join the configured cluster (or start a local instance) unless Ray is already up."""
        import ray

        if self._remote is not None and ray.is_initialized():
            return
        if not ray.is_initialized():
            cfg = self.config
            address = cfg.resolved_address()
            kwargs: dict[str, Any] = {"namespace": cfg.namespace, "runtime_env": cfg.runtime_env,
                                      "log_to_driver": cfg.log_to_driver, "ignore_reinit_error": True}
            if address == "local":
                kwargs.update(num_cpus=cfg.local_num_cpus, num_gpus=cfg.local_num_gpus, include_dashboard=False)
            try:
                ray.init(address=address, **kwargs)
            except Exception as exc:  # noqa: BLE001 - re-raised as one line naming the address
                raise ConnectionError(f"cannot start or join Ray at {address!r}: {one_line(exc)}") from exc
            self._started_ray = address == "local"
        self._remote = ray.remote(_ray_task)

    # -- jobs ---------------------------------------------------------------------------------
    def _launch(self, pending: _Pending) -> None:
        opts = self.config.task_options()
        opts["name"] = f"verify:{pending.job.key}"
        threads = max(1, int(self.config.num_cpus))
        pending.ref = self._remote.options(**opts).remote(pending.job.model_dump(mode="json"), self._execute, threads)
        pending.submissions += 1

    def submit(self, job: VerifyJob) -> str:
        """Start ``job`` as a Ray task; a job that cannot start becomes a failed result for ``wait``."""
        job_id = f"ray-{next(self._ids)}"
        pending = _Pending(job)
        try:
            self.connect()
            self._launch(pending)
        except Exception as exc:  # noqa: BLE001 - reported through the record
            pending.result = failed_result(job, exc, kind="ray")
        self._pending[job_id] = pending
        return job_id

    @property
    def capacity(self) -> int:
        """``max_in_flight``, else the cluster's CPUs (GPUs) over the per-task reservation."""
        if self.config.max_in_flight is not None:
            return self.config.max_in_flight
        import ray

        try:
            self.connect()
            total = ray.cluster_resources()
        except Exception:  # noqa: BLE001 - no cluster yet: one at a time, submit reports the cause
            return 1
        cfg = self.config
        fits = [total.get("CPU", 0.0) / cfg.num_cpus if cfg.num_cpus else float("inf"),
                total.get("GPU", 0.0) / cfg.num_gpus if cfg.num_gpus else float("inf")]
        return max(1, int(min(fits))) if min(fits) != float("inf") else 1

    def pending(self) -> list[str]:
        return list(self._pending)

    def ready(self, job_id: str) -> bool:
        import ray

        pending = self._pending[job_id]
        if pending.result is not None or pending.ref is None:
            return True
        done, _ = ray.wait([pending.ref], timeout=0)
        if done and pending.submissions <= self.config.resubmits:
            try:  # a task lost with its node starts again here, so that nobody blocks on it
                ray.get(pending.ref, timeout=0)
            except ray.exceptions.RayError as exc:
                return not self._resubmit(pending, exc)
        return bool(done)

    def _resubmit(self, pending: _Pending, exc: Exception) -> bool:
        """Submit a task lost with its node (``exc``) again while ``resubmits`` are left; True
        when it runs again. A resubmission that cannot start leaves a failed result instead."""
        if type(exc).__name__ not in _LOST or pending.submissions > self.config.resubmits:
            return False
        try:
            self._launch(pending)
        except Exception as again:  # noqa: BLE001 - reported through the result
            pending.result = failed_result(pending.job, again, kind="ray")
            return False
        return True

    def wait(self, job_id: str, timeout_s: float | None = None) -> VerifyResult:
        """The job's result. Past ``timeout_s`` (default: the config's) the task is cancelled and
        a failed result of kind ``timeout`` is returned. A task lost with its node is submitted
        again (``resubmits``) and waited for."""
        import ray
        from ray.exceptions import GetTimeoutError, RayError, RayTaskError

        try:
            pending = self._pending.pop(job_id)
        except KeyError:
            raise KeyError(f"unknown or already collected job {job_id!r}") from None
        if pending.result is not None:
            return pending.result
        timeout_s = timeout_s if timeout_s is not None else self.config.timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        job = pending.job
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                record = ray.get(pending.ref, timeout=left)
            except GetTimeoutError:
                ray.cancel(pending.ref, force=True)
                return failed_result(job, f"no result after {timeout_s:g} s; Ray task cancelled", kind="timeout")
            except RayTaskError as exc:
                return failed_result(job, exc.cause if exc.cause is not None else exc, kind="exception")
            except RayError as exc:
                if self._resubmit(pending, exc):
                    continue
                if pending.result is not None:
                    return pending.result
                if type(exc).__name__ in _LOST:
                    return failed_result(job, f"lost after {pending.submissions} submission(s) "
                                              f"({self.config.max_retries} Ray retries each): {one_line(exc)}",
                                         kind="node-lost")
                kind = "memory" if type(exc).__name__ == "OutOfMemoryError" else "ray"
                return failed_result(job, exc, kind=kind)
            except Exception as exc:  # noqa: BLE001 - e.g. the cluster went away
                return failed_result(job, exc, kind="ray")
            return as_result(job, record)

    def close(self) -> None:
        """Cancel unfinished tasks; shut Ray down if this runner started it."""
        import ray

        if not ray.is_initialized():
            return
        for pending in self._pending.values():
            if pending.ref is not None:
                with suppress(Exception):  # best effort on the way out
                    ray.cancel(pending.ref, force=True)
        self._pending.clear()
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        self._remote = None
