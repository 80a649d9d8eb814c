"""RayRunner on a local Ray instance: real verifications, retries when a worker dies, failed records.

Functions handed to the runner as ``execute`` are defined inside the tests so that Ray ships
them by value to its worker processes; they wrap the real ``execute_job``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from model_discovery.config import ConfigError
from model_discovery.gau import load_seed
from model_discovery.records import Placement, VerifyOptions
from model_discovery.runners import VerifyJob, execute_job, make_runner
from model_discovery.verify import VerifyResult

pytest.importorskip("ray")

from model_discovery.runners.ray_runner import RayRunner, RayRunnerConfig  # noqa: E402


def _job(tmp_path: Path, seed: str, options: VerifyOptions) -> VerifyJob:
    return VerifyJob(design=load_seed(seed), scale="micro", out_dir=str(tmp_path / seed), options=options)


def test_config_from_env_and_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODIS_RAY_NUM_GPUS", "1")
    monkeypatch.setenv("MODIS_RAY_MAX_RETRIES", "5")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.7:6379")
    cfg = RayRunnerConfig.from_env(num_cpus=4)
    assert (cfg.num_gpus, cfg.max_retries, cfg.num_cpus) == (1, 5, 4)
    assert cfg.resolved_address() == "10.0.0.7:6379"
    assert RayRunnerConfig(address="local").resolved_address() == "local"
    opts = RayRunnerConfig(num_gpus=1, memory_gb=2, retry_exceptions=True).task_options()
    assert opts == {"num_cpus": 1.0, "num_gpus": 1.0, "max_retries": 3, "retry_exceptions": True,
                    "memory": 2 * 2**30}


def test_config_errors_are_one_line_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODIS_RAY_NUM_GPUS", "-1")
    with pytest.raises(ConfigError) as err:
        RayRunner()
    assert "field num_gpus" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="field resubmit"):
        RayRunnerConfig.parse({"resubmit": 2}, origin="ray.yaml")


@pytest.mark.slow
def test_two_real_verifications(ray_local: None, tmp_path: Path, tiny: VerifyOptions) -> None:
    runner = make_runner("ray", num_cpus=1, num_gpus=0)
    jobs = [_job(tmp_path, "gpt2", tiny), _job(tmp_path, "llama", tiny)]
    records = runner.run(jobs)
    runner.close()
    assert [r.design for r in records] == ["gpt2", "llama"]
    for job, record in zip(jobs, records):
        assert record.status == "ok", record.error
        assert record.train.tokens == 4096
        assert (Path(job.out_dir) / "verify_result.json").is_file()


@pytest.mark.slow
def test_worker_killed_once_is_retried_by_ray(ray_local: None, tmp_path: Path, tiny: VerifyOptions) -> None:
    marker = tmp_path / "first-attempt"

    def dies_once(job: VerifyJob, placement: Placement) -> VerifyResult:
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(17)  # the worker process dies mid-task, as on a lost node
        return execute_job(job, placement)

    runner = RayRunner(execute=dies_once, max_retries=1, resubmits=0)
    record = runner.run([_job(tmp_path, "gpt2", tiny)])[0]
    assert marker.exists()
    assert record.status == "ok", record.error
    assert record.final_val_loss is not None


def test_lost_worker_is_resubmitted_then_reported(ray_local: None, tmp_path: Path, tiny: VerifyOptions) -> None:
    attempts = tmp_path / "attempts"
    attempts.mkdir()

    def dies_once(job: VerifyJob, placement: Placement) -> VerifyResult:
        n = len(list(attempts.iterdir()))
        (attempts / str(n)).touch()
        if n == 0:
            os._exit(3)
        return VerifyResult(design=job.design.name, fingerprint=job.design.fingerprint(), scale=job.scale,
                            status="ok", warnings=[f"attempt {n}"])

    def always_dies(job: VerifyJob, placement: Placement) -> VerifyResult:
        (attempts / f"x{time.time_ns()}").touch()
        os._exit(4)

    # Ray does not retry (max_retries=0): the runner's own resubmission brings the job through
    record = RayRunner(execute=dies_once, max_retries=0, resubmits=1).run([_job(tmp_path, "gpt2", tiny)])[0]
    assert (record.design, record.status, record.warnings) == ("gpt2", "ok", ["attempt 1"])

    for f in attempts.iterdir():
        f.unlink()
    record = RayRunner(execute=always_dies, max_retries=0, resubmits=1).run([_job(tmp_path, "gpt2", tiny)])[0]
    assert record.status == "failed" and record.error_kind == "node-lost"
    assert record.error.startswith("lost after 2 submission(s)") and "\n" not in record.error
    assert len(list(attempts.iterdir())) == 2


def test_exceptions_and_timeouts_are_failed_records(ray_local: None, tmp_path: Path, tiny: VerifyOptions) -> None:
    def raises(job: VerifyJob, placement: Placement) -> VerifyResult:
        raise OSError("disk\nfull")

    def sleeps(job: VerifyJob, placement: Placement) -> VerifyResult:
        time.sleep(60)
        raise AssertionError("cancelled before this")

    record = RayRunner(execute=raises).run([_job(tmp_path, "gpt2", tiny)])[0]
    assert (record.status, record.error_kind, record.error) == ("failed", "exception", "OSError: disk full")
    assert record.design == "gpt2" and record.scale == "micro"

    runner = RayRunner(execute=sleeps)
    job_id = runner.submit(_job(tmp_path, "gpt2", tiny))
    t0 = time.monotonic()
    record = runner.wait(job_id, timeout_s=1.0)
    assert time.monotonic() - t0 < 30
    assert record.error_kind == "timeout" and "cancelled" in record.error
    with pytest.raises(KeyError, match="unknown or already collected"):
        runner.wait(job_id)
