"""Experiment tracking with wandb: offline unless ``WANDB_API_KEY`` is set; never fails a run.

Logging happens in the trusted parent process after the sandboxed training returns (the
sandbox forbids the subprocess wandb starts), replaying the loss curves step by step.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from model_discovery.records import VerifyResult

log = logging.getLogger(__name__)
DEFAULT_PROJECT = "model_discovery"
_ONE_RUN = threading.Lock()  # wandb keeps one current run per process: workers log one at a time


def wandb_mode() -> str:
    """``$WANDB_MODE`` if set, else ``online`` with ``WANDB_API_KEY`` and ``offline`` without."""
    explicit = os.environ.get("WANDB_MODE")
    if explicit:
        return explicit
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def log_verification(result: "VerifyResult", out_dir: str | Path, project: str | None = None) -> str | None:
    """Log one verification record as a wandb run under ``out_dir``; returns the run dir, or
    ``None`` (with a warning logged) when wandb is missing, disabled or broken."""
    mode = wandb_mode()
    if mode == "disabled":
        return None
    with _ONE_RUN:
        return _log(result, out_dir, project, mode)


def _log(result: "VerifyResult", out_dir: str | Path, project: str | None, mode: str) -> str | None:
    try:
        import wandb

        run = wandb.init(
            project=project or os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
            name=f"{result.design}@{result.scale}", dir=str(out_dir), mode=mode,
            group=result.scale, job_type="verify", reinit="finish_previous",
            config={"design": result.design, "fingerprint": result.fingerprint, "scale": result.scale},
            settings=wandb.Settings(silent=True, console="off"))
        try:
            points: dict[int, dict[str, float]] = {}
            if result.train is not None:
                for step, tokens, loss in result.train.train_loss:
                    points.setdefault(step, {}).update({"train/loss": loss, "tokens": tokens})
                for step, tokens, loss in result.train.val_loss:
                    points.setdefault(step, {}).update({"val/loss": loss, "tokens": tokens})
            for step in sorted(points):
                run.log(points[step], step=step)
            summary: dict[str, float | str] = {"status": result.status, "tokens_per_s": result.tokens_per_s,
                                               "peak_memory_bytes": result.peak_memory_bytes,
                                               "wall_s": result.wall_s}
            if result.final_val_loss is not None:
                summary["final_val_loss"] = result.final_val_loss
            summary.update({f"eval/{k}": v for k, v in result.eval_metrics.items()})
            summary.update({f"probe/{k}": v for k, v in result.probe_scores.items()})
            if result.error:
                summary["error"] = result.error
            run.summary.update(summary)
            run_dir = str(Path(run.dir).parent)
        finally:
            run.finish()
        return run_dir
    except Exception as exc:  # noqa: BLE001 - tracking must never fail a verification
        log.warning("wandb logging skipped: %s: %s", type(exc).__name__, " ".join(str(exc).split())[:200])
        return None
