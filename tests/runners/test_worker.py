"""The verification worker's job transport, failed results and command line (fast paths)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from model_discovery.gau import load_seed
from model_discovery.records import VerifyOptions
from model_discovery.runners import VerifyJob, failed_result
from model_discovery.runners.base import run_job
from model_discovery.runners.worker import decode_job, encode_job, main, one_line, run_to_dir
from model_discovery.verify import VerifyResult


@pytest.fixture
def job(tmp_path: Path) -> VerifyJob:
    return VerifyJob(design=load_seed("llama"), scale="micro", out_dir=str(tmp_path / "out"),
                     options=VerifyOptions(eval=False, train_tokens=2048))


def test_job_survives_the_command_line_encoding(job: VerifyJob) -> None:
    text = encode_job(job)
    assert text.isascii() and " " not in text
    assert decode_job(text) == job
    with pytest.raises(ValueError, match=r"^--job-b64: not a base64 gzipped job"):
        decode_job("not base64!")


def test_failed_result_names_the_job_and_the_cause(job: VerifyJob) -> None:
    parsed = failed_result(job, RuntimeError("node\n  lost"), kind="node-lost")
    assert (parsed.status, parsed.error, parsed.error_kind) == ("failed", "RuntimeError: node lost", "node-lost")
    assert parsed.fingerprint == job.design.fingerprint() and parsed.out_dir == job.out_dir
    assert len(one_line("x" * 1000)) == 500


def test_exceptions_become_results_and_land_in_the_result_dir(job: VerifyJob, tmp_path: Path) -> None:
    def broken(j: VerifyJob) -> VerifyResult:
        raise MemoryError("cannot allocate")

    assert run_job(job, broken).error == "MemoryError: cannot allocate"
    assert run_job(job, lambda j: {"status": "ok"}).error.startswith("malformed result record")
    bad = job.model_copy(update={"scale": "no-such-rung"})
    result = run_to_dir(bad, tmp_path / "results")
    stored = VerifyResult.model_validate_json((tmp_path / "results" / "result.json").read_text())
    assert stored == result and result.status == "failed"
    assert "no-such-rung" in result.error


def test_command_line_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "job.json"
    bad.write_text(json.dumps({"scale": "micro", "out_dir": "x"}))
    assert main(["run", "--job", str(bad), "--result-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {bad}: field design: Field required\n"
    assert main(["run", "--job", str(tmp_path / "missing.json"), "--result-dir", str(tmp_path)]) == 2
    assert "cannot read job" in capsys.readouterr().err
    proc = subprocess.run([sys.executable, "-m", "model_discovery.cli", "serve", "--budget", "micro",
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--budget 'micro': expected SCALE=N" in proc.stderr
