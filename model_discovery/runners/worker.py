"""The job worker: run one verification job from JSON (what a Beaker container runs)::

    python -m model_discovery.runners.worker run --job job.json --result-dir /results

It writes ``<result-dir>/result.json`` (a :class:`~model_discovery.verify.VerifyResult`) and
prints one JSON line. Serving a shared tree as a verification node is ``modis serve``.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from model_discovery.errors import field_error, one_line
from model_discovery.records import VerifyJob, VerifyResult
from model_discovery.runners.base import run_job
from model_discovery.safe_io import write_text

RESULT_FILE = "result.json"
"""Name of the result record a ``run`` worker writes into its result directory."""


# -- job transport ------------------------------------------------------------------------------
def encode_job(job: VerifyJob) -> str:
    """``job`` as compact text for a command line: base64 of gzipped JSON."""
    raw = job.model_dump_json().encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")


def decode_job(text: str, origin: str = "--job-b64") -> VerifyJob:
    """The job encoded by :func:`encode_job`; ``ValueError`` naming ``origin`` when invalid."""
    try:
        raw = gzip.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{origin}: not a base64 gzipped job: {one_line(exc)}") from exc
    return load_job_json(raw.decode(), origin)


def load_job_json(text: str, origin: str) -> VerifyJob:
    """A :class:`VerifyJob` from JSON text; ``ValueError`` naming ``origin`` and the field."""
    try:
        return VerifyJob.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"{origin}: {field_error(exc)}") from exc


def run_to_dir(job: VerifyJob, result_dir: str | Path, *, relocate: bool = True) -> VerifyResult:
    """Run ``job`` and write its result to ``<result_dir>/result.json``; returns the result.

    With ``relocate`` the job's artefacts go to ``<result_dir>/out`` (the submitting machine's
    ``out_dir`` means nothing inside a container).
    """
    result_dir = Path(result_dir)
    if relocate:
        job = job.model_copy(update={"out_dir": str(result_dir / "out")})
    result = run_job(job)
    write_text(result_dir / RESULT_FILE, json.dumps(result.model_dump(mode="json"), indent=2, sort_keys=True))
    return result


# -- command line -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_discovery.runners.worker",
                                     description="Run one verification job.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one job; write <result-dir>/result.json")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--job", help="path of a VerifyJob JSON file")
    src.add_argument("--job-b64", help="a VerifyJob as base64 gzipped JSON")
    run.add_argument("--result-dir", required=True, help="where result.json (and out/) are written")
    run.add_argument("--keep-out-dir", action="store_true", help="write artefacts to the job's own out_dir")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.job:
            try:
                text = Path(args.job).read_text()
            except OSError as exc:
                raise ValueError(f"{args.job}: cannot read job: {exc.strerror}") from exc
            job = load_job_json(text, args.job)
        else:
            job = decode_job(args.job_b64)
        result = run_to_dir(job, args.result_dir, relocate=not args.keep_out_dir)
    except (ValueError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(json.dumps({"event": "result", "design": result.design, "scale": result.scale,
                      "status": result.status, "error": result.error}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
