"""BeakerRunner offline: templates, rendered specs (beaker-py's spec classes + golden files), polling.

No Beaker server is reachable here, and beaker-py 2.x talks to one over TLS gRPC (workload,
job and dataset metadata) plus HTTPS (experiment creation, result files), so these tests stop
at the client object: :class:`BeakerClientDouble` stands in for ``beaker.Beaker`` with the
same attribute paths and method signatures, and answers with beaker-py's real protobuf
messages. Set ``MODIS_UPDATE_SNAPSHOTS=1`` to rewrite the golden files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from model_discovery.config import ConfigError
from model_discovery.gau import load_seed
from model_discovery.records import VerifyOptions
from model_discovery.runners import VerifyJob, make_runner
from model_discovery.runners.worker import RESULT_FILE, decode_job
from model_discovery.verify import VerifyResult

beaker = pytest.importorskip("beaker")
from beaker import beaker_pb2 as pb2  # noqa: E402

from model_discovery.runners.beaker_runner import (  # noqa: E402
    TEMPLATE_DIR,
    BeakerJobConfig,
    BeakerRunner,
    experiment_name,
    render_spec,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"
JOB_PLACEHOLDER = "<job: base64 gzipped VerifyJob JSON>"


def _job(tmp_path: Path, options: VerifyOptions | None = None) -> VerifyJob:
    return VerifyJob(design=load_seed("gpt2"), scale="micro", out_dir=str(tmp_path / "out"),
                     options=options or VerifyOptions(eval=False, probes=False, wandb=False, train_tokens=4096))


# -- templates and specs ------------------------------------------------------------------------
@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATE_DIR.glob("*.yaml")))
def test_shipped_templates_render_golden_specs(template: str, tmp_path: Path) -> None:
    config = BeakerJobConfig.load(TEMPLATE_DIR / template)
    job = _job(tmp_path)
    spec = render_spec(config, job)
    assert isinstance(spec, beaker.BeakerExperimentSpec)
    data = spec.to_json()
    args = data["tasks"][0]["arguments"]
    assert args[0] == "--job-b64" and args[2:] == ["--result-dir", config.result_path]
    assert decode_job(args[1]) == job, "the task carries the job itself"
    args[1] = JOB_PLACEHOLDER
    # the spec file Beaker would receive, re-read by beaker-py, equals the rendered spec
    spec_file = tmp_path / "spec.yaml"
    spec.to_file(spec_file)
    assert beaker.BeakerExperimentSpec.from_file(spec_file).to_json() == spec.to_json()
    text = yaml.safe_dump(data, sort_keys=False)
    golden = SNAPSHOTS / template
    if os.environ.get("MODIS_UPDATE_SNAPSHOTS") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden}; run with MODIS_UPDATE_SNAPSHOTS=1 to create it"
    assert text == golden.read_text(), f"rendered spec differs from {golden}"


def test_secrets_and_resources_reach_the_task(tmp_path: Path) -> None:
    config = BeakerJobConfig.parse({
        "workspace": "org/ws", "clusters": ["org/a", "org/b"], "image": "ghcr.io/org/modis:1",
        "image_source": "docker", "budget": "org/budget", "gpus": 8, "cpus": 32, "memory": "400GiB",
        "priority": "high", "min_runtime": "2h", "auto_resume": True, "retries": 2,
        "secrets": {"WANDB_API_KEY": "my-wandb", "OPENAI_API_KEY": "openai"}, "env": {"A": "1"},
        "datasets": {"/data/cache": "org/modis-cache"}})
    task = render_spec(config, _job(tmp_path)).to_json()["tasks"][0]
    assert task["image"] == {"docker": "ghcr.io/org/modis:1"}
    assert task["constraints"] == {"cluster": ["org/a", "org/b"]}
    assert task["resources"] == {"cpuCount": 32, "gpuCount": 8, "memory": "400GiB"}
    assert task["context"] == {"priority": "high", "minRuntime": 2 * 3600 * 10**9, "autoResume": True}
    assert task["envVars"] == [{"name": "A", "value": "1"}, {"name": "OPENAI_API_KEY", "secret": "openai"},
                               {"name": "WANDB_API_KEY", "secret": "my-wandb"}]
    assert task["datasets"] == [{"source": {"beaker": "org/modis-cache"}, "mountPath": "/data/cache"}]


@pytest.mark.parametrize(("patch", "field"), [
    ({"workspace": "no-org"}, "workspace"),
    ({"clusters": []}, "clusters"),
    ({"priority": "asap"}, "priority"),
    ({"timeout": "soon"}, "timeout"),
    ({"gpus": -1}, "gpus"),
    ({"secrets": {"BAD-NAME": "x"}}, "secrets"),
    ({"preemptible": True, "min_runtime": "1h"}, "<root>"),
    ({"gpu": 1}, "gpu"),
])
def test_template_errors_name_file_and_field(patch: dict, field: str, tmp_path: Path) -> None:
    data = {**yaml.safe_load((TEMPLATE_DIR / "verify.yaml").read_text()), **patch}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        BeakerJobConfig.load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: field {field}:") and "\n" not in msg


def test_experiment_names_are_valid_and_unique(tmp_path: Path) -> None:
    config = BeakerJobConfig.load(TEMPLATE_DIR / "verify.yaml")
    job = _job(tmp_path).model_copy(update={"design": load_seed("gpt2").model_copy(update={"name": "a b/c"})})
    names = {experiment_name(config, job) for _ in range(5)}
    assert len(names) == 5
    from beaker.config import Config

    client = beaker.Beaker(Config(user_token="x"), check_for_upgrades=False)
    for name in names:
        assert client.experiment._validate_beaker_name(name) == name


# -- submission and polling at the client boundary ----------------------------------------------
class _Sub:
    def __init__(self, **methods: Any) -> None:
        self.__dict__.update(methods)


class BeakerClientDouble:
    """Stands in for ``beaker.Beaker``: the calls BeakerRunner makes, answered with pb2 messages.

    ``script`` lists, per experiment, the job states the polls see, e.g.
    ``["queued", "running", ("succeeded", {...record...})]``; a final ``"run"`` executes the
    task's real command (the worker) with the result directory mapped to a temporary folder.
    """

    def __init__(self, tmp_path: Path, scripts: list[list[Any]]) -> None:
        self.tmp = tmp_path
        self.scripts = list(scripts)
        self.created: list[tuple[str, Any]] = []
        self.cancelled: list[str] = []
        self.polls = 0
        self.closed = False
        self._states: dict[str, list[Any]] = {}
        self._results: dict[str, bytes] = {}
        self.workspace = _Sub(get=lambda name: pb2.Workspace(id="ws-1", name=name))
        self.experiment = _Sub(create=self._create)
        self.workload = _Sub(get_latest_job=self._latest_job, cancel=self._cancel)
        self.job = _Sub(get_results=self._results_of)
        self.dataset = _Sub(stream_file=self._stream)

    def _create(self, *, spec: Any, name: str | None = None, workspace: Any = None) -> Any:
        assert isinstance(spec, beaker.BeakerExperimentSpec) and workspace.id == "ws-1"
        exp_id = f"ex{len(self.created)}"
        self.created.append((name, spec))
        self._states[exp_id] = list(self.scripts.pop(0))
        return pb2.Workload(experiment=pb2.Experiment(id=exp_id, name=name or "", tasks=[pb2.Task(id=f"t-{exp_id}")]))

    def _latest_job(self, workload: Any, *, task: Any = None, finalized: bool | None = None) -> Any:
        self.polls += 1
        exp_id = workload.experiment.id
        states = self._states[exp_id]
        state = states.pop(0) if len(states) > 1 else states[0]
        if state == "none":
            return None
        job = pb2.Job(id=f"job-{exp_id}", task_id=f"t-{exp_id}")
        status = job.status
        if state in ("queued", "running"):
            status.status = getattr(pb2.WorkloadStatus, f"STATUS_{state.upper()}")
            return job
        status.finalized.GetCurrentTime()
        if state == "run":
            code = self._run_task(exp_id)
            status.exit_code = code
            status.status = pb2.WorkloadStatus.STATUS_SUCCEEDED if code == 0 else pb2.WorkloadStatus.STATUS_FAILED
        elif isinstance(state, tuple) and state[0] == "succeeded":
            self._results[exp_id] = state[1] if isinstance(state[1], bytes) else json.dumps(state[1]).encode()
            status.status = pb2.WorkloadStatus.STATUS_SUCCEEDED
        elif state == "failed":
            status.status, status.exit_code, status.message = pb2.WorkloadStatus.STATUS_FAILED, 137, "OOMKilled"
        elif state == "preempted":
            status.status = pb2.WorkloadStatus.STATUS_CANCELED
            status.canceled.GetCurrentTime()
            status.canceled_code = pb2.CancelationCode.CANCELATION_CODE_SYSTEM_PREEMPTION
        if exp_id in self._results:
            job.assignment_details.result_dataset_id = f"ds-{exp_id}"
        return job

    def _run_task(self, exp_id: str) -> int:
        spec = self.created[int(exp_id[2:])][1]
        task = spec.tasks[0]
        result_dir = self.tmp / f"results-{exp_id}"
        argv = [sys.executable if a == "python" else a for a in task.command]
        argv += [str(result_dir) if a == task.result.path else a for a in task.arguments]
        env = {**os.environ, **{e.name: e.value for e in task.env_vars or [] if e.value is not None}}
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        if (result_dir / RESULT_FILE).exists():
            self._results[exp_id] = (result_dir / RESULT_FILE).read_bytes()
        return proc.returncode

    def _results_of(self, job: Any) -> Any:
        if not job.assignment_details.HasField("result_dataset_id"):
            return None
        return pb2.Dataset(id=job.assignment_details.result_dataset_id)

    def _stream(self, dataset: Any, file_path: str, **_: Any) -> Any:
        data = self._results[dataset.id[3:]]
        assert file_path == RESULT_FILE
        yield data[: len(data) // 2]
        yield data[len(data) // 2:]

    def _cancel(self, *workloads: Any) -> list[str]:
        self.cancelled += [w.experiment.id for w in workloads]
        return [w.experiment.id for w in workloads]

    def close(self) -> None:
        self.closed = True


def _runner(tmp_path: Path, scripts: list[list[Any]], **fields: Any) -> tuple[BeakerRunner, BeakerClientDouble]:
    client = BeakerClientDouble(tmp_path, scripts)
    sleeps: list[float] = []
    runner = BeakerRunner(TEMPLATE_DIR / "verify-cpu.yaml", client=client, sleep=sleeps.append, **fields)
    return runner, client


OK = {"design": "gpt2", "fingerprint": "f" * 16, "scale": "micro", "status": "ok",
      "created_at": "2026-01-01T00:00:00+00:00"}


def test_polls_until_finalized_then_reads_result(tmp_path: Path) -> None:
    record = {**OK, "final_val_loss": 7.4}
    runner, client = _runner(tmp_path, [["none", "queued", "running", "running", ("succeeded", record)]])
    job_id = runner.submit(_job(tmp_path))
    assert runner.wait(job_id) == VerifyResult.model_validate(record)
    assert client.polls == 5
    name, spec = client.created[0]
    assert name.startswith("modis-verify-gpt2-micro-") and spec.budget == "ai2/oe-training"
    runner.close()
    assert client.closed and client.cancelled == []


def test_failures_come_back_as_records(tmp_path: Path) -> None:
    runner, client = _runner(tmp_path, [["running", "failed"], [("succeeded", b"not json")], ["running"]],
                             resubmits=0)
    ids = [runner.submit(_job(tmp_path)) for _ in range(3)]
    failed = runner.wait(ids[0])
    assert failed.status == "failed" and failed.error_kind == "beaker"
    assert failed.error.startswith("Beaker job job-ex0 of modis-verify-gpt2-micro-")
    assert failed.error.endswith("failed; exit code 137; OOMKilled")
    assert "is not JSON" in runner.wait(ids[1]).error
    timed_out = runner.wait(ids[2], timeout_s=0.05)
    assert timed_out.error_kind == "timeout" and client.cancelled == ["ex2"]
    assert all("\n" not in r for r in (failed.error, timed_out.error))


def test_preempted_job_is_resubmitted_once(tmp_path: Path) -> None:
    runner, client = _runner(tmp_path, [["running", "preempted"], ["queued", ("succeeded", OK)]], resubmits=1)
    assert runner.run([_job(tmp_path)]) == [VerifyResult.model_validate(OK)]
    assert len(client.created) == 2

    runner, client = _runner(tmp_path, [["preempted"], ["preempted"]], resubmits=1)
    failed = runner.run([_job(tmp_path)])[0]
    assert len(client.created) == 2 and "canceled (system_preemption)" in failed.error


def test_auto_resumed_job_is_awaited_not_resubmitted(tmp_path: Path) -> None:
    runner, client = _runner(tmp_path, [["running", "preempted", "queued", ("succeeded", OK)]],
                             auto_resume=True)
    assert runner.run([_job(tmp_path)]) == [VerifyResult.model_validate(OK)]
    assert len(client.created) == 1 and client.polls == 4


def test_creation_errors_are_failed_records(tmp_path: Path) -> None:
    class Refusing(BeakerClientDouble):
        def _create(self, **kwargs: Any) -> Any:
            raise beaker.exceptions.BeakerPermissionsError("no write access to workspace")

    client = Refusing(tmp_path, [])
    runner = BeakerRunner(TEMPLATE_DIR / "verify.yaml", client=client, sleep=lambda s: None)
    record = runner.run([_job(tmp_path)])[0]
    assert record.status == "failed"
    assert record.error == ("cannot create Beaker experiment: BeakerPermissionsError: "
                            "no write access to workspace")


def test_make_runner_reads_the_template_named_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODIS_BEAKER_CONFIG", str(TEMPLATE_DIR / "verify-cpu.yaml"))
    runner = make_runner("beaker")
    assert isinstance(runner, BeakerRunner) and runner.config.gpus == 0 and runner.config.cpus == 4


@pytest.mark.slow
def test_task_command_runs_a_real_verification(tmp_path: Path) -> None:
    """The rendered task's command, run as a process, verifies the job and writes the record."""
    runner, client = _runner(tmp_path, [["queued", "run"]])
    record = runner.run([_job(tmp_path)])[0]
    assert record.status == "ok", record.error
    assert record.design == "gpt2" and record.train.tokens == 4096
    assert record.out_dir == str((tmp_path / "results-ex0" / "out").resolve())
