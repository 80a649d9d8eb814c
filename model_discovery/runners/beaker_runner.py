"""Run verification jobs as Beaker experiments (beaker-py 2.x).

A job becomes one single-task experiment built from a YAML template in ``etc/beaker/``
(a :class:`BeakerJobConfig`): the task runs ::

    python -m model_discovery.runners.worker run --job-b64 <job> --result-dir /results

which writes ``/results/result.json``; Beaker keeps ``/results`` as the job's result dataset.
:meth:`BeakerRunner.wait` polls the latest job of the experiment until it is finalized, then
reads ``result.json`` from that dataset. A preempted job is resumed by Beaker when the template
sets ``auto_resume`` (the runner keeps polling), else submitted again (at most ``resubmits``
times); anything else that goes wrong comes back as a failed result. ``capacity`` (experiments
kept running at once) is ``max_in_flight``.

    runner = BeakerRunner("etc/beaker/verify.yaml")            # BEAKER_TOKEN from the environment
    results = runner.run([job])
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import time
import uuid
import warnings
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import ConfigDict, Field, field_validator, model_validator

from model_discovery.errors import one_line
from model_discovery.records import VerifyJob, VerifyResult
from model_discovery.records.config_file import ConfigFile
from model_discovery.runners.base import Runner, as_result, failed_result
from model_discovery.runners.worker import RESULT_FILE, encode_job

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "etc" / "beaker"
"""Where the shipped templates live (``verify.yaml`` on GPUs, ``verify-cpu.yaml``)."""

DEFAULT_TEMPLATE = TEMPLATE_DIR / "verify.yaml"
CONFIG_ENV = "MODIS_BEAKER_CONFIG"
"""Environment variable naming the template a ``BeakerRunner()`` without arguments loads."""

_DURATION = re.compile(r"^\s*\d+(\.\d+)?\s*(ns|us|ms|s|m|h|d)?\s*$")
_BEAKER_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")


class BeakerJobConfig(ConfigFile):
    """What a verification experiment on Beaker looks like (one YAML template in ``etc/beaker``)."""

    model_config = ConfigDict(extra="forbid")
    config_kind: ClassVar[str] = "Beaker template"
    workspace: str = Field(description="'org/workspace' the experiments are created in")
    clusters: list[str] = Field(min_length=1, description="clusters the task may run on, e.g. 'ai2/jupiter'")
    image: str = Field(description="Beaker image name (image_source 'beaker') or Docker image reference")
    image_source: Literal["beaker", "docker"] = "beaker"
    budget: str = Field(description="Beaker budget account, e.g. 'ai2/oe-training'")
    gpus: int = Field(0, ge=0, description="GPUs per task")
    cpus: float | None = Field(None, gt=0, description="CPUs per task; None: the cluster default")
    memory: str | None = Field(None, description="memory per task, e.g. '64GiB'")
    shared_memory: str | None = Field(None, description="/dev/shm size, e.g. '10GiB'")
    priority: Literal["low", "normal", "high", "urgent", "immediate"] = "normal"
    preemptible: bool | None = Field(None, description="may Beaker preempt the task (legacy field)")
    min_runtime: str | None = Field(None, description="run at least this long before preemption, e.g. '1h'")
    auto_resume: bool | None = Field(None, description="let Beaker resume a preempted task")
    timeout: str | None = Field(None, description="Beaker kills the task after this long, e.g. '8h'")
    retries: int | None = Field(None, ge=0, description="Beaker's own task retries (spec.retry)")
    env: dict[str, str] = Field(default_factory=dict, description="plain environment variables")
    secrets: dict[str, str] = Field(default_factory=dict,
                                    description="environment variable -> Beaker secret name (WANDB, HF, API keys)")
    datasets: dict[str, str] = Field(default_factory=dict, description="mount path -> Beaker dataset")
    result_path: str = Field("/results", description="directory Beaker keeps as the result dataset")
    command: list[str] = Field(default_factory=lambda: ["python", "-m", "model_discovery.runners.worker", "run"],
                               min_length=1, description="worker command; --job-b64 and --result-dir are appended")
    name_prefix: str = Field("modis-verify", description="experiment names start with this")
    poll_s: float = Field(30.0, gt=0, description="seconds between status polls")
    timeout_s: float | None = Field(None, gt=0, description="default wait limit per job; None: no limit")
    resubmits: int = Field(1, ge=0, description="new experiments after a preemption")
    max_in_flight: int = Field(8, ge=1, description="experiments kept running at once")

    @field_validator("workspace", "budget")
    @classmethod
    def _org_slash_name(cls, v: str) -> str:
        if v.count("/") != 1 or not all(v.split("/")):
            raise ValueError(f"expected 'org/name', got {v!r}")
        return v

    @field_validator("min_runtime", "timeout")
    @classmethod
    def _duration(cls, v: str | None) -> str | None:
        if v is not None and not _DURATION.match(v):
            raise ValueError(f"expected a duration like '90m' or '6h', got {v!r}")
        return v

    @field_validator("name_prefix")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _BEAKER_NAME.match(v):
            raise ValueError(f"Beaker names allow letters, digits, '.', '-', '_' and no leading '-'; got {v!r}")
        return v

    @field_validator("secrets", "env")
    @classmethod
    def _env_names(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k)]
        if bad:
            raise ValueError(f"invalid environment variable name(s): {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _one_preemption_style(self) -> "BeakerJobConfig":
        if self.preemptible is not None and (self.min_runtime is not None or self.auto_resume is not None):
            raise ValueError("set either preemptible or min_runtime/auto_resume, not both (Beaker rejects both)")
        clash = sorted(set(self.env) & set(self.secrets))
        if clash:
            raise ValueError(f"variable(s) set both in env and secrets: {', '.join(clash)}")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=True), sort_keys=False)


def render_spec(config: BeakerJobConfig, job: VerifyJob) -> Any:
    """The ``beaker.BeakerExperimentSpec`` that runs ``job`` as configured.

    Built with beaker-py's own spec classes and checked to survive its JSON round trip, so a
    spec that renders is one beaker-py can submit.
    """
    from beaker import (BeakerConstraints, BeakerDataMount, BeakerDataSource, BeakerEnvVar, BeakerExperimentSpec,
                        BeakerImageSource, BeakerJobPriority, BeakerResultSpec, BeakerRetrySpec, BeakerTaskContext,
                        BeakerTaskResources, BeakerTaskSpec)

    env = [BeakerEnvVar(name=k, value=v) for k, v in sorted(config.env.items())]
    env += [BeakerEnvVar(name=k, secret=v) for k, v in sorted(config.secrets.items())]
    resources = None
    if config.gpus or config.cpus or config.memory or config.shared_memory:
        resources = BeakerTaskResources(gpu_count=config.gpus or None, cpu_count=config.cpus,
                                        memory=config.memory, shared_memory=config.shared_memory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 'preemptible' is legacy but still accepted
        context = BeakerTaskContext(priority=BeakerJobPriority[config.priority], preemptible=config.preemptible,
                                    min_runtime=config.min_runtime, auto_resume=config.auto_resume)
    task = BeakerTaskSpec(
        name="verify",
        image=BeakerImageSource(**{config.image_source: config.image}),
        context=context,
        constraints=BeakerConstraints(cluster=list(config.clusters)),
        result=BeakerResultSpec(path=config.result_path),
        command=list(config.command),
        arguments=["--job-b64", encode_job(job), "--result-dir", config.result_path],
        env_vars=env or None,
        datasets=[BeakerDataMount(source=BeakerDataSource(beaker=ds), mount_path=mp)
                  for mp, ds in sorted(config.datasets.items())] or None,
        resources=resources,
        timeout=config.timeout,
    )
    spec = BeakerExperimentSpec(
        description=f"modis verify {job.key}",
        budget=config.budget,
        tasks=[task],
        retry=BeakerRetrySpec(allowed_task_retries=config.retries) if config.retries is not None else None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        again = BeakerExperimentSpec.from_json(spec.to_json())
    if again.to_json() != spec.to_json():
        raise ValueError(f"Beaker spec for {job.key} does not survive beaker-py's JSON round trip")
    return spec


def experiment_name(config: BeakerJobConfig, job: VerifyJob) -> str:
    """A unique, valid experiment name: ``<prefix>-<design>-<scale>-<random>``."""
    raw = f"{config.name_prefix}-{job.design.name}-{job.scale}"
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw)[:100]
    return f"{safe}-{uuid.uuid4().hex[:8]}"


@dataclasses.dataclass
class _Submitted:
    job: VerifyJob
    workload: Any = None
    name: str = ""
    submissions: int = 0
    result: VerifyResult | None = None  # set when submission itself failed
    final: Any = None  # the finalized Beaker job, once ready() has seen it


class BeakerRunner(Runner):
    """Submits each job as a Beaker experiment and collects ``result.json`` from its results.

    ``client`` is a ``beaker.Beaker`` (default: ``Beaker.from_env()``, i.e. ``BEAKER_TOKEN`` or
    ``~/.beaker/config.yml``). ``sleep`` is the pause between polls.
    """

    name = "beaker"

    def __init__(self, config: BeakerJobConfig | Mapping[str, Any] | str | Path | None = None, *,
                 client: Any = None, sleep: Any = time.sleep, **fields: Any) -> None:
        if config is None:
            config = os.environ.get(CONFIG_ENV) or DEFAULT_TEMPLATE
        if isinstance(config, (str, Path)):
            config = BeakerJobConfig.load(config)
        elif not isinstance(config, BeakerJobConfig):
            config = BeakerJobConfig.parse(dict(config))
        if fields:
            config = BeakerJobConfig.parse({**config.model_dump(), **fields}, origin="BeakerRunner arguments")
        self.config = config
        self._client = client
        self._sleep = sleep
        self._submitted: dict[str, _Submitted] = {}
        self._ids = itertools.count()
        self._workspace: Any = None

    @property
    def client(self) -> Any:
        """The beaker-py client (created on first use)."""
        if self._client is None:
            from beaker import Beaker

            self._client = Beaker.from_env(check_for_upgrades=False, default_workspace=self.config.workspace)
        return self._client

    def _create(self, sub: _Submitted) -> None:
        if self._workspace is None:
            self._workspace = self.client.workspace.get(self.config.workspace)
        spec = render_spec(self.config, sub.job)
        sub.name = experiment_name(self.config, sub.job)
        sub.workload = self.client.experiment.create(spec=spec, name=sub.name, workspace=self._workspace)
        sub.submissions += 1

    def submit(self, job: VerifyJob) -> str:
        """Create the experiment; a job that cannot be created becomes a failed result for ``wait``."""
        job_id = f"beaker-{next(self._ids)}"
        sub = _Submitted(job)
        try:
            self._create(sub)
        except Exception as exc:  # noqa: BLE001 - reported through the record
            sub.result = failed_result(job, f"cannot create Beaker experiment: {one_line(exc)}", kind="beaker")
        self._submitted[job_id] = sub
        return job_id

    @property
    def capacity(self) -> int:
        return self.config.max_in_flight

    @property
    def poll_s(self) -> float:  # type: ignore[override]
        return self.config.poll_s

    def _pause(self, seconds: float) -> None:
        self._sleep(seconds)

    def pending(self) -> list[str]:
        return list(self._submitted)

    def ready(self, job_id: str) -> bool:
        """Whether the experiment's latest job is finalized and will not be resumed; a preempted
        one is submitted again here (``resubmits``), so nobody blocks on it."""
        sub = self._submitted[job_id]
        if sub.result is not None:
            return True
        try:
            bjob = self.client.workload.get_latest_job(sub.workload)
            if bjob is None or not bjob.status.HasField("finalized"):
                return False
            if self._preempted(bjob):
                if self.config.auto_resume:
                    return False
                if sub.submissions <= self.config.resubmits:
                    self._create(sub)
                    return False
            sub.final = bjob
        except Exception as exc:  # noqa: BLE001 - the caller gets a result
            sub.result = failed_result(sub.job, f"Beaker experiment {sub.name}: {one_line(exc)}", kind="beaker")
        return True

    def wait(self, job_id: str, timeout_s: float | None = None) -> VerifyResult:
        """Poll until the experiment's job is finalized; its ``result.json`` is the result.

        Past ``timeout_s`` (default: the config's) the experiment is cancelled and a failed
        result of kind ``timeout`` is returned.
        """
        if job_id not in self._submitted:
            raise KeyError(f"unknown or already collected job {job_id!r}")
        timeout_s = timeout_s if timeout_s is not None else self.config.timeout_s
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.ready(job_id):
            if deadline is not None and time.monotonic() >= deadline:
                sub = self._submitted.pop(job_id)
                self._cancel(sub)
                return failed_result(sub.job, f"no result after {timeout_s:g} s; Beaker experiment "
                                              f"{sub.name} cancelled", kind="timeout")
            self._sleep(self.config.poll_s)
        sub = self._submitted.pop(job_id)
        if sub.result is not None:
            return sub.result
        try:
            return self._collect(sub, sub.final)
        except Exception as exc:  # noqa: BLE001 - the caller gets a result
            return failed_result(sub.job, f"Beaker experiment {sub.name}: {one_line(exc)}", kind="beaker")

    @staticmethod
    def _preempted(bjob: Any) -> bool:
        from beaker import BeakerCancelationCode

        codes = {BeakerCancelationCode.system_preemption.value, BeakerCancelationCode.user_preemption.value,
                 BeakerCancelationCode.node_unavailable.value}
        return bjob.status.HasField("canceled") and bjob.status.canceled_code in codes

    def _collect(self, sub: _Submitted, bjob: Any) -> VerifyResult:
        from beaker import BeakerCancelationCode, BeakerWorkloadStatus

        status = bjob.status
        if status.HasField("canceled") or status.exit_code != 0:
            state = BeakerWorkloadStatus(status.status).name if status.status else "finished"
            why = [f"Beaker job {bjob.id} of {sub.name} {state}"]
            if status.HasField("canceled"):
                try:
                    why.append(f"canceled ({BeakerCancelationCode(status.canceled_code).name})")
                except ValueError:
                    why.append("canceled")
            else:
                why.append(f"exit code {status.exit_code}")
            if status.message:
                why.append(status.message)
            return failed_result(sub.job, "; ".join(why), kind="beaker")
        dataset = self.client.job.get_results(bjob)
        if dataset is None:
            return failed_result(sub.job, f"Beaker job {bjob.id} of {sub.name} has no result dataset", kind="beaker")
        raw = b"".join(self.client.dataset.stream_file(dataset, RESULT_FILE))
        try:
            record = json.loads(raw)
        except ValueError as exc:
            return failed_result(sub.job, f"{RESULT_FILE} of Beaker job {bjob.id} is not JSON: {one_line(exc)}",
                                 kind="beaker")
        if not isinstance(record, dict):
            return failed_result(sub.job, f"{RESULT_FILE} of Beaker job {bjob.id} is not a record", kind="beaker")
        return as_result(sub.job, record)

    def _cancel(self, sub: _Submitted) -> None:
        with suppress(Exception):  # best effort; the record says what happened
            self.client.workload.cancel(sub.workload)

    def close(self) -> None:
        """Cancel experiments still pending; close the client connection."""
        for sub in self._submitted.values():
            if sub.workload is not None:
                self._cancel(sub)
        self._submitted.clear()
        if self._client is not None and hasattr(self._client, "close"):
            self._client.close()
