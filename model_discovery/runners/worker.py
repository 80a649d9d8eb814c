"""Verification workers: run one job from JSON, or serve a shared tree as a verification node.

Two entry points, both ending in :func:`~model_discovery.runners.base.execute_job`::

    # one job (what a Beaker container runs): job JSON in, result JSON out
    python -m model_discovery.runners.worker run --job job.json --result-dir /results

    # a verification node: claim (design, scale) picks from a shared tree, verify, record, repeat
    python -m model_discovery.runners.worker serve --config shared.yaml --owner gpu-node-3

``serve`` claims one pick at a time through ``Selector.select_verifications(owner=...)``
(a lease in the tree, bounded by the rung's budget) and keeps the lease alive with a heartbeat
while the verification runs, so the lease can be short: when a node dies its lease expires
after ``--lease-ttl`` seconds and another node takes the pick over. Every event is printed as
one JSON line on stdout (``claimed``, ``verified``, ``lease-lost``, ``idle``, ``exit``).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from model_discovery.runners.base import Runner, VerifyJob, execute_job
from model_discovery.errors import field_error, one_line

RESULT_FILE = "result.json"
"""Name of the result record a ``run`` worker writes into its result directory."""


# -- records ------------------------------------------------------------------------------------
def failed_record(job: VerifyJob, error: object, kind: str = "runner") -> dict[str, Any]:
    """A failed verification record for ``job`` (same shape as a verifier's record).

    Runners return this when the job could not run to completion for reasons outside the
    design (a lost node, a cancelled experiment, a timeout), so callers always get a record.
    """
    from model_discovery.verify import VerifyResult

    return VerifyResult(design=job.design.name, fingerprint=job.design.fingerprint(), scale=job.scale,
                        status="failed", error=one_line(error), error_kind=kind,
                        out_dir=job.out_dir).model_dump(mode="json")


def run_job(job: VerifyJob, execute: Callable[[VerifyJob], dict[str, Any]] = execute_job) -> dict[str, Any]:
    """``execute(job)``, with any exception turned into a failed record (kind ``exception``)."""
    try:
        return execute(job)
    except Exception as exc:  # noqa: BLE001 - the caller gets a record, never an exception
        return failed_record(job, exc, kind="exception")


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
    from pydantic import ValidationError

    try:
        return VerifyJob.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(f"{origin}: {field_error(exc)}") from exc


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def run_to_dir(job: VerifyJob, result_dir: str | Path, *, relocate: bool = True) -> dict[str, Any]:
    """Run ``job`` and write its record to ``<result_dir>/result.json``; returns the record.

    With ``relocate`` the job's artefacts go to ``<result_dir>/out`` (the submitting machine's
    ``out_dir`` means nothing inside a container).
    """
    result_dir = Path(result_dir)
    if relocate:
        job = job.model_copy(update={"out_dir": str(result_dir / "out")})
    record = run_job(job)
    write_json(result_dir / RESULT_FILE, record)
    return record


# -- verification node --------------------------------------------------------------------------
def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": round(time.time(), 3), **fields}), flush=True)


class _Heartbeat:
    """Renews a lease every ``period_s`` seconds until stopped; notes when the lease is lost."""

    def __init__(self, tree: Any, name: str, scale: str, owner: str, ttl_s: float, seeds: int = 1,
                 replicate: bool = False) -> None:
        self.args = (name, scale, owner, ttl_s)
        self.lease = {"seeds": seeds, "replicate": replicate}
        self.tree = tree
        self.period_s = max(ttl_s / 4.0, 0.2)
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{name}@{scale}", daemon=True)

    def _loop(self) -> None:
        name, scale, owner, ttl_s = self.args
        while not self._stop.wait(self.period_s):
            try:
                if not self.tree.claim_verification(name, scale, owner, ttl_s, **self.lease):
                    self.lost = True
                    _emit("lease-lost", owner=owner, design=name, scale=scale)
                    return
            except Exception as exc:  # noqa: BLE001 - a flaky database must not kill the job
                _emit("heartbeat-error", owner=owner, design=name, scale=scale, error=one_line(exc))

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def default_owner() -> str:
    """``host:pid``, the lease owner name of this process unless one is given."""
    return f"{socket.gethostname()}:{os.getpid()}"


def serve(config: Any, owner: str | None = None, *, runner: Runner | None = None, lease_ttl_s: float = 600.0,
          max_jobs: int | None = None, exit_when_idle: bool = False, poll_s: float = 10.0) -> list[str]:
    """Verify picks from the tree of ``config`` (a :class:`~model_discovery.config.SystemConfig`).

    Loops: claim one pick (bounded by the budgets of ``config.ladder``), verify it with
    ``runner`` (default: the config's runner) while a heartbeat renews the lease, store the
    record through the selector (fitness, learning), repeat. Stops after ``max_jobs``
    verifications, or, with ``exit_when_idle``, when nothing can be claimed and no live lease is
    left at the node's rungs. Returns the ``design@scale`` pairs this node verified.
    """
    from model_discovery.evolution import EvolutionTree
    from model_discovery.runners import make_runner
    from model_discovery.select import RandomSelector, Selector

    owner = owner or default_owner()
    cfg = config.selector_config(lease_ttl_s=lease_ttl_s)
    selector = RandomSelector(cfg) if config.selector == "random" else Selector(cfg)
    runner = runner or make_runner(config.runner, **config.runner_options)
    budgets = {s: config.budget(s) for s in config.ladder}
    done: list[str] = []
    tree = EvolutionTree(config.resolved_tree_url)
    _emit("start", owner=owner, tree=_redact(config.resolved_tree_url), budgets=budgets)
    try:
        while max_jobs is None or len(done) < max_jobs:
            picks = selector.select_verifications(tree, budgets, owner=owner, limit=1)
            if not picks:
                live = [lease for lease in tree.leases(live_only=True) if lease.scale in budgets]
                if exit_when_idle and not live:
                    _emit("idle", owner=owner)
                    break
                time.sleep(poll_s)
                continue
            pick = picks[0]
            name, scale = pick.design, pick.scale
            _emit("claimed", owner=owner, design=name, scale=scale, seeds=pick.seeds)
            job = VerifyJob.for_pick(tree.get_design(name).design, scale, pick.seeds, pick.first_seed,
                                     config.run_dir, config.verify)
            with _Heartbeat(tree, name, scale, owner, lease_ttl_s, pick.seeds, pick.replicate) as beat:
                try:
                    record = runner.run([job])[0]
                except Exception as exc:  # noqa: BLE001 - recorded as a failed verification
                    record = failed_record(job, exc, kind="exception")
            status = "ok" if record.get("status", "ok") == "ok" else "failed"
            if beat.lost:
                continue  # another node owns the pick now; its record wins
            selector.record_result(tree, name, scale, record, status=status)
            done.append(f"{name}@{scale}")
            _emit("verified", owner=owner, design=name, scale=scale, status=status,
                  error=record.get("error", ""))
    finally:
        _emit("exit", owner=owner, verified=len(done))
        runner.close()
        tree.close()
    return done


def _redact(url: str) -> str:
    """``url`` without a password."""
    head, sep, tail = url.rpartition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{tail}"


# -- command line -------------------------------------------------------------------------------
def _parse_budget(text: str) -> tuple[str, int]:
    scale, sep, value = text.partition("=")
    if not sep or not value.strip().isdigit():
        raise argparse.ArgumentTypeError(f"--budget {text!r}: expected SCALE=N, e.g. micro=8")
    return scale.strip(), int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_discovery.runners.worker",
                                     description="Run one verification job, or serve a shared tree.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one job; write <result-dir>/result.json")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("--job", help="path of a VerifyJob JSON file")
    src.add_argument("--job-b64", help="a VerifyJob as base64 gzipped JSON")
    run.add_argument("--result-dir", required=True, help="where result.json (and out/) are written")
    run.add_argument("--keep-out-dir", action="store_true", help="write artefacts to the job's own out_dir")

    srv = sub.add_parser("serve", help="claim, verify and record picks from a shared tree")
    srv.add_argument("--config", help="system config YAML (tree_url, ladder, budgets, verify, runner)")
    srv.add_argument("--tree-url", help="tree store URL (overrides the config)")
    srv.add_argument("--run-dir", help="where verification artefacts go (overrides the config)")
    srv.add_argument("--scale", action="append", help="rung to verify (repeatable; overrides the ladder)")
    srv.add_argument("--budget", action="append", type=_parse_budget, default=[], help="SCALE=N budget override")
    srv.add_argument("--runner", choices=["local", "ray", "beaker"], help="where jobs run (overrides the config)")
    srv.add_argument("--owner", help="lease owner name (default host:pid)")
    srv.add_argument("--lease-ttl", type=float, default=600.0, help="lease seconds, renewed while working")
    srv.add_argument("--train-tokens", type=int, help="override every rung's token budget")
    srv.add_argument("--no-eval", action="store_true")
    srv.add_argument("--no-probes", action="store_true")
    srv.add_argument("--no-wandb", action="store_true")
    srv.add_argument("--compile", action="store_true", help="torch.compile every model trained")
    srv.add_argument("--replicates", type=int, help="training seeds per verification (overrides the config)")
    srv.add_argument("--max-jobs", type=int, help="stop after this many verifications")
    srv.add_argument("--exit-when-idle", action="store_true", help="stop when nothing is left to claim")
    srv.add_argument("--poll", type=float, default=10.0, help="seconds between selection rounds when idle")
    return parser


def _serve_config(args: argparse.Namespace) -> Any:
    from model_discovery.config import SystemConfig

    cfg = SystemConfig.load(args.config) if args.config else SystemConfig()
    data = cfg.model_dump()
    if args.tree_url:
        data["tree_url"] = args.tree_url
    if args.run_dir:
        data["run_dir"] = args.run_dir
    if args.scale:
        data["ladder"] = args.scale
    if args.runner:
        data["runner"] = args.runner
    data["budgets"] = {**data["budgets"], **dict(args.budget)}
    verify = data["verify"]
    if args.train_tokens is not None:
        verify["train_tokens"] = args.train_tokens
    verify["eval"] = verify["eval"] and not args.no_eval
    verify["compile"] = verify["compile"] or args.compile
    if args.replicates is not None:
        verify["replicates"] = args.replicates
    verify["probes"] = verify["probes"] and not args.no_probes
    verify["wandb"] = verify["wandb"] and not args.no_wandb
    return SystemConfig.parse(data, origin=args.config or "<worker flags>")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            if args.job:
                try:
                    text = Path(args.job).read_text()
                except OSError as exc:
                    raise ValueError(f"{args.job}: cannot read job: {exc.strerror}") from exc
                job = load_job_json(text, args.job)
            else:
                job = decode_job(args.job_b64)
            record = run_to_dir(job, args.result_dir, relocate=not args.keep_out_dir)
            print(json.dumps({"event": "result", "design": record.get("design"), "scale": record.get("scale"),
                              "status": record.get("status"), "error": record.get("error", "")}), flush=True)
            return 0
        config = _serve_config(args)
        serve(config, args.owner, lease_ttl_s=args.lease_ttl, max_jobs=args.max_jobs,
              exit_when_idle=args.exit_when_idle, poll_s=args.poll)
        return 0
    except (ValueError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
