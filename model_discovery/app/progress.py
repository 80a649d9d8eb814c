"""What a running discovery is doing now, read from its run directory (never from its process).

- the design phase: the design step in progress (``state.json``'s thread) and the node of the
  design flow it runs now, read from the flow's checkpoint store (``flow_checkpoints.sqlite``,
  opened read-only): select, propose, review, plan, implement, check, commit;
- the trainings in progress: one per live verification lease, with the step, loss and ETA its
  trainer writes to ``verify/<design>@<rung>/train/progress.json``
  (:class:`~model_discovery.records.TrainProgress`);
- the run's ETA: the seconds per design step of this run so far times the steps left.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from model_discovery.evolution import EvolutionTree
from model_discovery.records import TrainProgress

#: the design flow's nodes, as the phases they stand for
PHASES = {"select": "select parents", "propose": "propose", "review": "review", "plan": "plan",
          "implement": "implement", "check": "check", "commit": "commit"}
PROGRESS_FILE = "progress.json"


class Training(BaseModel):
    """A verification in progress."""

    model_config = ConfigDict(extra="forbid")
    design: str
    scale: str
    progress: TrainProgress | None = None


def design_phase(run_dir: Path) -> tuple[str | None, str | None]:
    """(design step in progress, e.g. ``design-00003``; its phase) — None for what is not known."""
    try:
        thread = json.loads((run_dir / "state.json").read_text()).get("thread")
    except (OSError, ValueError, AttributeError):
        return None, None
    if not thread:
        return None, None
    db = run_dir / "flow_checkpoints.sqlite"
    if not db.is_file():
        return thread, PHASES["select"]
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as conn:
            row = conn.execute("SELECT channel FROM writes WHERE thread_id = ? AND channel LIKE 'branch:to:%' "
                               "ORDER BY checkpoint_id DESC, idx DESC LIMIT 1", (thread,)).fetchone()
    except sqlite3.Error:
        return thread, None
    node = row[0].removeprefix("branch:to:") if row else "select"
    return thread, PHASES.get(node, node)


def read_progress(folder: Path) -> TrainProgress | None:
    """The newest ``progress.json`` under a verification folder (replicates train in subfolders)."""
    files = sorted(folder.glob(f"**/{PROGRESS_FILE}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in files:
        try:
            return TrainProgress.model_validate_json(path.read_text())
        except (OSError, ValidationError):
            continue
    return None


def trainings(run_dir: Path, tree: EvolutionTree) -> list[Training]:
    """The verifications holding a live lease, with their trainer's progress when it has written one."""
    return [Training(design=lease.design, scale=lease.scale,
                     progress=read_progress(run_dir / "verify" / f"{lease.design}@{lease.scale}"))
            for lease in tree.leases(live_only=True)]


def run_eta_s(started_at: float | None, steps_done: int, steps_planned: int, now: float | None = None) -> float | None:
    """Seconds left for the design steps, at this run's pace so far (None before the first step)."""
    if started_at is None or steps_done <= 0 or steps_planned <= steps_done:
        return None if steps_planned > steps_done else 0.0
    per_step = ((now or time.time()) - started_at) / steps_done
    return per_step * (steps_planned - steps_done)


def fmt_duration(seconds: float | None) -> str:
    """``1 h 02 min``, ``3 min 05 s``, ``42 s`` (``—`` when unknown)."""
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
