"""Fitness: one number per verification from loss / bits-per-byte, eval accuracies and probes.

Result records are mappings (as stored in the tree). Recognised fields, at the top level or
under ``metrics``:

- loss: ``bpb`` / ``bits_per_byte`` / ``val_bpb`` (preferred: tokenizer independent), else
  ``val_loss`` / ``eval_loss`` / ``loss`` (nats per token);
- evals: ``evals`` / ``eval`` / ``tasks``: ``{task: accuracy}`` or ``{task: {"acc_norm"|"acc": x}}``;
- probes: ``probes``: ``{probe: score}`` (same shapes).

Verification records (:class:`~model_discovery.verify.VerifyResult`) are read too:
``eval_metrics`` is flat ``<task>/<metric>`` (``local_ppl/bits_per_byte`` gives the loss,
``<task>/acc_norm`` or ``<task>/acc`` the task accuracy), ``probe_scores`` is
``probe/<name>`` (the ``probe/mean`` summary is skipped), ``final_val_loss`` is nats per token.

Without a baseline, fitness = ``w_loss·(−loss) + w_eval·mean(acc) + w_probe·mean(probe)``. With
the baseline (the gpt2 seed at the same rung) the terms become relative improvements:
``(loss_b − loss)/loss_b``, ``mean(acc) − mean(acc_b)`` over shared tasks, likewise probes — so 0
means "as good as the baseline" and values compare across rungs. Higher is better; fitness is
strictly decreasing in the loss.

A task accuracy that no design lifts clearly above chance is noise, not signal: with
``counted`` (see :func:`informative_tasks`) only the tasks named there enter the eval term.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import fmean
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

LOSS_KEYS_BPB = ("bpb", "bits_per_byte", "val_bpb")
LOSS_KEYS_NATS = ("val_loss", "final_val_loss", "eval_loss", "loss")
EVAL_KEYS = ("evals", "eval", "tasks")
PROBE_KEYS = ("probes",)
SCORE_KEYS = ("acc_norm", "acc", "accuracy", "score", "exact_match")


class FitnessError(ValueError):
    """A result record from which no fitness can be computed."""


def _default_chance() -> dict[str, float]:
    return {"local_nextline": 0.25, "piqa": 0.5, "hellaswag": 0.25, "arc_easy": 0.25, "arc_challenge": 0.25,
            "winogrande": 0.5, "blimp": 0.5, "boolq": 0.5, "sciq": 0.25, "openbookqa": 0.25, "copa": 0.5}


class FitnessConfig(BaseModel):
    """Weights of the three fitness terms, and which task accuracies are informative."""

    model_config = ConfigDict(extra="forbid")
    loss_weight: float = Field(1.0, ge=0)
    eval_weight: float = Field(1.0, ge=0)
    probe_weight: float = Field(0.5, ge=0)
    chance: dict[str, float] = Field(default_factory=_default_chance,
                                     description="accuracy of guessing, per task (tasks not named always count)")
    chance_margin: float = Field(0.02, ge=0, description="a task counts once some design beats chance by this")


class Metrics(BaseModel):
    """The metrics fitness uses, read from one or more result records (averaged)."""

    model_config = ConfigDict(extra="forbid")
    loss: float | None = None
    loss_unit: str | None = Field(None, description="'bpb' or 'nats'")
    evals: dict[str, float] = Field(default_factory=dict)
    probes: dict[str, float] = Field(default_factory=dict)


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


def _scores(block: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    if not isinstance(block, Mapping):
        return out
    for name, value in block.items():
        v = _number(value)
        if v is None and isinstance(value, Mapping):
            v = next((_number(value[k]) for k in SCORE_KEYS if _number(value.get(k)) is not None), None)
        if v is not None:
            out[str(name)] = v
    return out


def _flat_metrics(record: Mapping[str, Any]) -> dict[str, Any]:
    """The verification record's flat ``eval_metrics`` / ``probe_scores`` in the nested shapes above."""
    out: dict[str, Any] = {}
    flat = record.get("eval_metrics")
    if isinstance(flat, Mapping):
        tasks: dict[str, dict[str, float]] = {}
        for key, value in flat.items():
            task, _, metric = str(key).rpartition("/")
            if metric == "bits_per_byte" and _number(value) is not None:
                out.setdefault("bpb", value)
            elif task and metric in SCORE_KEYS and _number(value) is not None:
                tasks.setdefault(task, {})[metric] = value
        out["evals"] = tasks
    probes = record.get("probe_scores")
    if isinstance(probes, Mapping):
        out["probes"] = {str(k).removeprefix("probe/"): v for k, v in probes.items() if k != "probe/mean"}
    return out


def _one(record: Mapping[str, Any]) -> tuple[float | None, str | None, dict[str, float], dict[str, float]]:
    sources = [record] + ([record["metrics"]] if isinstance(record.get("metrics"), Mapping) else [])
    sources.append(_flat_metrics(record))
    loss, unit = None, None
    for keys, u in ((LOSS_KEYS_BPB, "bpb"), (LOSS_KEYS_NATS, "nats")):
        for src in sources:
            for k in keys:
                if loss is None and _number(src.get(k)) is not None:
                    loss, unit = _number(src.get(k)), u
        if loss is not None:
            break
    evals: dict[str, float] = {}
    probes: dict[str, float] = {}
    for src in sources:
        for k in EVAL_KEYS:
            evals.update(_scores(src.get(k)))
        for k in PROBE_KEYS:
            probes.update(_scores(src.get(k)))
    return loss, unit, evals, probes


def read_metrics(records: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Metrics:
    """Average the recognised metrics of one record or several (e.g. training seeds)."""
    recs = [records] if isinstance(records, Mapping) else list(records)
    losses: dict[str, list[float]] = {"bpb": [], "nats": []}
    evals: dict[str, list[float]] = {}
    probes: dict[str, list[float]] = {}
    for rec in recs:
        loss, unit, ev, pr = _one(rec)
        if loss is not None and unit is not None:
            losses[unit].append(loss)
        for k, v in ev.items():
            evals.setdefault(k, []).append(v)
        for k, v in pr.items():
            probes.setdefault(k, []).append(v)
    unit = "bpb" if losses["bpb"] else ("nats" if losses["nats"] else None)
    return Metrics(loss=fmean(losses[unit]) if unit else None, loss_unit=unit,
                   evals={k: fmean(v) for k, v in evals.items()}, probes={k: fmean(v) for k, v in probes.items()})


def informative_tasks(records: Sequence[Mapping[str, Any]], config: FitnessConfig | None = None) -> set[str]:
    """Eval tasks of ``records`` that count: chance unknown, or some record beats chance by the margin."""
    cfg = config or FitnessConfig()
    best: dict[str, float] = {}
    for rec in records:
        for task, acc in read_metrics(rec).evals.items():
            best[task] = max(best.get(task, -1.0), acc)
    return {t for t, acc in best.items() if t not in cfg.chance or acc > cfg.chance[t] + cfg.chance_margin}


def fitness(records: Mapping[str, Any] | Sequence[Mapping[str, Any]],
            baseline: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
            config: FitnessConfig | None = None, counted: set[str] | None = None) -> float:
    """One number (higher is better) from result records, relative to ``baseline`` when given.

    With ``counted``, eval tasks outside it are left out (see :func:`informative_tasks`).
    """
    cfg = config or FitnessConfig()
    m = read_metrics(records)
    b = read_metrics(baseline) if baseline is not None else None
    if counted is not None:
        m.evals = {k: v for k, v in m.evals.items() if k in counted}
    terms: list[float] = []
    if m.loss is not None:
        if b is not None and b.loss is not None and b.loss_unit == m.loss_unit and b.loss > 0:
            terms.append(cfg.loss_weight * (b.loss - m.loss) / b.loss)
        else:
            terms.append(cfg.loss_weight * -m.loss)
    for mine, weight, base in ((m.evals, cfg.eval_weight, b.evals if b else {}),
                               (m.probes, cfg.probe_weight, b.probes if b else {})):
        if not mine:
            continue
        shared = sorted(set(mine) & set(base))
        if shared:
            terms.append(weight * (fmean(mine[k] for k in shared) - fmean(base[k] for k in shared)))
        else:
            terms.append(weight * fmean(mine.values()))
    if not terms:
        raise FitnessError("result record has no loss, bits-per-byte, eval or probe metric")
    return float(sum(terms))
