"""Pure data shaping for the pages: records of the tree and results → pandas frames and text.

Nothing here touches Streamlit, so every function is testable on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from model_discovery.gau.scales import LADDER
from model_discovery.records import Design, LeaderboardRow, ResultRecord, ScaleConfig

#: leading columns of the leaderboard, in order
BASE_COLUMNS = ["rank", "design", "scale", "fitness", "fitness_se", "seeds", "footing", "status", "operator",
                "generation"]
#: what fitness means, for tooltips and captions
FITNESS_HELP = ("Fitness: higher is better. Relative to the baseline (the gpt2 seed verified at the same rung "
                "under the same settings): (loss_b − loss)/loss_b, with loss in bits per byte when lm-eval ran "
                "(else nats per token), plus the mean accuracy gain over tasks above chance and half the mean "
                "probe-score gain; 0 = as good as the baseline. Mean ± standard error over training seeds. "
                "Only results on the rung's footing (training tokens, lm-eval on/off, probes on/off) are "
                "ranked; results verified under other settings have no fitness and show their footing.")
BPB_METRIC = "eval_metrics.local_ppl/bits_per_byte"
#: record keys that are not metrics (text, paths, curves)
_SKIP_KEYS = {"design", "fingerprint", "scale", "status", "error", "error_kind", "warnings", "data_dir",
              "out_dir", "wandb_dir", "created_at", "train_loss", "val_loss", "device", "dtype"}
#: metrics shown first when present
PREFERRED_METRICS = [BPB_METRIC, "final_val_loss", "spread.final_val_loss", "tokens_per_s", "wall_s", "train.n_params",
                     "train.tokens", "peak_memory_bytes"]
MAX_METRICS = 60


def flatten_metrics(record: Mapping[str, Any], prefix: str = "", depth: int = 2) -> dict[str, float]:
    """Numeric leaves of a result record as ``dotted.name -> value`` (lists and text skipped)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in _SKIP_KEYS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, (int, float)):  # booleans too
            out[name] = float(value)
        elif isinstance(value, Mapping) and depth > 1:
            out.update(flatten_metrics(value, f"{name}.", depth - 1))
    return out


def accuracy_metrics(names: Iterable[str]) -> list[str]:
    """The eval accuracy columns among ``names`` (``…/acc_norm`` where a task has it, else ``…/acc``)."""
    names = sorted(set(names))
    norm = {n.removesuffix("_norm") for n in names if n.endswith("/acc_norm")}
    return [n for n in names if n.startswith("eval_metrics.") and
            (n.endswith("/acc_norm") or (n.endswith("/acc") and n not in norm))]


def default_metrics(names: Iterable[str]) -> list[str]:
    """The metric columns shown by default: bits per byte, the accuracies, the validation loss."""
    names = list(names)
    return [m for m in (BPB_METRIC, *accuracy_metrics(names), "final_val_loss") if m in names]


def _metric_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    first = [m for m in PREFERRED_METRICS if m in names]
    return (first + sorted(names - set(first)))[:MAX_METRICS]


def leaderboard_frame(rows: Sequence[LeaderboardRow], results: Sequence[ResultRecord]) -> pd.DataFrame:
    """Leaderboard rows joined with the numeric metrics of their result records.

    One row per (design, scale), ranked within each rung (largest rung first), with the columns
    :data:`BASE_COLUMNS` followed by the metrics found in the records. A result without fitness
    (failed, or verified on another footing than its rung's) has no rank.
    """
    metrics = {(r.design, r.scale): flatten_metrics(r.record) for r in results}
    footings = {(r.design, r.scale): r.result.footing(LADDER.get(r.scale)) for r in results}
    names = _metric_order({k for m in metrics.values() for k in m})
    data = []
    for row in rows:
        m = metrics.get((row.design, row.scale), {})
        data.append({"rank": row.rank if row.fitness is not None else None, "design": row.design,
                     "scale": row.scale, "fitness": row.fitness, "fitness_se": row.fitness_se, "seeds": row.seeds,
                     "footing": footings.get((row.design, row.scale)), "status": row.status,
                     "operator": row.operator, "generation": row.generation, **{n: m.get(n) for n in names}})
    return pd.DataFrame(data, columns=BASE_COLUMNS + names)


def wide_frame(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Designs × (scale, metric): one row per design, one column per ``scale · metric``."""
    if frame.empty:
        return pd.DataFrame(columns=["design"])
    scales = list(dict.fromkeys(frame["scale"]))
    wide = frame.pivot_table(index="design", columns="scale", values=list(metrics), aggfunc="first")
    cols = [(m, s) for s in scales for m in metrics if (m, s) in wide.columns]
    wide = wide[cols]
    wide.columns = [f"{s} · {m}" for m, s in cols]
    order = [c for c in wide.columns if c.endswith("· fitness")][:1]
    if order:
        wide = wide.sort_values(order[0], ascending=False, na_position="last")
    return wide.reset_index()


def curves_frame(record: Mapping[str, Any]) -> pd.DataFrame:
    """Training curves of a result record: columns ``curve`` (train/val), step, tokens, loss.

    Points are ``(step, tokens, loss)`` as written by the trainer, under ``record['train']``
    (or at the top level of the record).
    """
    train = record.get("train") if isinstance(record.get("train"), Mapping) else record
    data = []
    for curve in ("train_loss", "val_loss"):
        for point in (train or {}).get(curve) or []:
            if isinstance(point, (list, tuple)) and len(point) >= 3:
                step, tokens, loss = point[0], point[1], point[2]
            elif isinstance(point, Mapping):
                step, tokens, loss = point.get("step"), point.get("tokens"), point.get("loss")
            else:
                continue
            data.append({"curve": curve.removesuffix("_loss"), "step": step, "tokens": tokens, "loss": loss})
    return pd.DataFrame(data, columns=["curve", "step", "tokens", "loss"])


def check_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """The checks of a check report as rows (name, passed, message, seconds, ...).

    A report holds its individual checks as a list of mappings (under ``checks``, ``results`` or
    ``steps``) or as a mapping of name → result; anything else is shown as field/value rows.
    """
    for key in ("checks", "results", "steps"):
        items = report.get(key)
        if isinstance(items, list) and items and all(isinstance(i, Mapping) for i in items):
            rows = [{k: _cell(v) for k, v in item.items()} for item in items]
            return _check_columns(pd.DataFrame(rows))
        if isinstance(items, Mapping) and items and all(isinstance(v, Mapping) for v in items.values()):
            rows = [{"check": name, **{k: _cell(v) for k, v in item.items()}} for name, item in items.items()]
            return _check_columns(pd.DataFrame(rows))
    rows = [{"field": k, "value": _cell(v)} for k, v in report.items()]
    return pd.DataFrame(rows, columns=["field", "value"])


#: leading columns of a check table; nested data (figures) comes last
CHECK_COLUMNS = ["check", "name", "passed", "seconds", "message"]


def _check_columns(frame: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in CHECK_COLUMNS if c in frame.columns]
    return frame[first + [c for c in frame.columns if c not in first]]


def _cell(value: Any) -> Any:
    """A value a table cell can show (nested data as compact text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    text = str(value)
    return text if len(text) <= 200 else text[:200] + " …"


def unit_tree_lines(design: Design) -> list[str]:
    """The design's unit tree as indented text lines: ``slot: Unit (role)``."""
    lines: list[str] = []

    def visit(name: str, slot: str | None, depth: int, stack: tuple[str, ...]) -> None:
        unit = design.units[name]
        label = f"{slot}: {name}" if slot else name
        hp = ", ".join(f"{k}={v}" for k, v in unit.hparams.items())
        lines.append(f"{'    ' * depth}{label}  ({unit.role}{'; ' + hp if hp else ''})")
        if name in stack:
            return
        for child_slot, child in unit.children.items():
            visit(child, child_slot, depth + 1, stack + (name,))

    visit(design.root, None, 0, ())
    return lines


def ladder_frame(budgets: Mapping[str, int] | None = None,
                 ladder: Mapping[str, ScaleConfig] = LADDER) -> pd.DataFrame:
    """The ladder of scales as a table, with this run's budget overrides when given."""
    rows = []
    for s in ladder.values():
        lo, hi = s.param_limits()
        rows.append({"scale": s.name, "d_model": s.d_model, "n_block": s.n_block, "context_len": s.context_len,
                     "vocab_size": s.vocab_size, "reference_params": s.reference_params,
                     "param_limits": f"{lo:,} – {hi:,}",
                     "train_tokens": "20 × params" if s.train_tokens is None else f"{s.train_tokens:,}",
                     "batch_size": s.batch_size, "lr": s.lr, "verify_budget": s.verify_budget,
                     "run_budget": (budgets or {}).get(s.name, s.verify_budget), "device": s.device})
    return pd.DataFrame(rows)


def human(value: float, key: str = "") -> str:
    """A metric as a short readable string: bytes in MiB/GiB, large counts with k/M/B."""
    if key.endswith("_bytes"):
        return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.4g}"


def outcome_counts(lines: Iterable[str]) -> dict[str, int]:
    """Counts of design-step outcomes (committed/failed/rejected) from ``outcomes.jsonl`` lines."""
    counts: dict[str, int] = {}
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            status = str(json.loads(line).get("status", "unknown"))
        except (ValueError, AttributeError):
            status = "unreadable"
        counts[status] = counts.get(status, 0) + 1
    return counts
