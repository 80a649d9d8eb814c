"""Fitness: one number per verification from its loss, eval accuracies and probe scores.

The fields of a :class:`~model_discovery.verify.VerifyResult` are read as :class:`Metrics`:

- loss: ``eval_metrics["local_ppl/bits_per_byte"]`` (bits per byte: tokenizer independent) when
  the evaluation ran, else ``final_val_loss`` (nats per token);
- evals: ``eval_metrics["<task>/acc_norm"]``, else ``<task>/acc`` (``local_ppl`` is the loss);
- probes: ``probe_scores["probe/<name>"]`` (the ``probe/mean`` summary is left out).

A replicated result gives one :class:`Metrics` per training seed (:func:`per_seed`).

Without a baseline, fitness = ``w_loss·(−loss) + w_eval·mean(acc) + w_probe·mean(probe)``. With
the baseline (the gpt2 seed at the same rung) the terms become relative improvements:
``(loss_b − loss)/loss_b``, ``mean(acc) − mean(acc_b)`` over shared tasks, likewise probes — so 0
means "as good as the baseline" and values compare across rungs. Higher is better; fitness is
strictly decreasing in the loss.

A task accuracy that no design lifts clearly above chance is noise, not signal: with
``counted`` (see :func:`informative_tasks`) only the tasks named there enter the eval term.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean

from pydantic import BaseModel, ConfigDict, Field

from model_discovery.records import VerifyResult

LOSS_METRIC = "local_ppl/bits_per_byte"
SCORE_METRICS = ("acc_norm", "acc")


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
    """The metrics fitness uses, of one training seed or averaged over several."""

    model_config = ConfigDict(extra="forbid")
    loss: float | None = None
    loss_unit: str | None = Field(None, description="'bpb' or 'nats'")
    evals: dict[str, float] = Field(default_factory=dict)
    probes: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def read(cls, final_val_loss: float | None, eval_metrics: dict[str, float],
             probe_scores: dict[str, float]) -> "Metrics":
        """The metrics of a result's fields (see the module docstring)."""
        evals: dict[str, float] = {}
        for metric in reversed(SCORE_METRICS):  # acc_norm wins over acc
            for key, value in eval_metrics.items():
                task, _, name = key.rpartition("/")
                if name == metric and task != "local_ppl":
                    evals[task] = value
        probes = {k.removeprefix("probe/"): v for k, v in probe_scores.items() if k != "probe/mean"}
        if LOSS_METRIC in eval_metrics:
            return cls(loss=eval_metrics[LOSS_METRIC], loss_unit="bpb", evals=evals, probes=probes)
        unit = None if final_val_loss is None else "nats"
        return cls(loss=final_val_loss, loss_unit=unit, evals=evals, probes=probes)


def per_seed(result: VerifyResult) -> list[Metrics]:
    """One :class:`Metrics` per training seed of ``result`` (its probes are shared)."""
    if result.replicates:
        return [Metrics.read(r.final_val_loss, r.eval_metrics, result.probe_scores) for r in result.replicates]
    return [Metrics.read(result.final_val_loss, result.eval_metrics, result.probe_scores)]


Measured = Metrics | VerifyResult


def read_metrics(results: Measured | Sequence[Measured]) -> Metrics:
    """The metrics of one result or the average of several (e.g. training seeds)."""
    items = [results] if isinstance(results, (Metrics, VerifyResult)) else list(results)
    ms = [m if isinstance(m, Metrics) else Metrics.read(m.final_val_loss, m.eval_metrics, m.probe_scores)
          for m in items]
    unit = "bpb" if any(m.loss_unit == "bpb" for m in ms) else ("nats" if any(m.loss_unit for m in ms) else None)
    losses = [m.loss for m in ms if m.loss is not None and m.loss_unit == unit]

    def mean(field: str) -> dict[str, float]:
        keys = {k for m in ms for k in getattr(m, field)}
        return {k: fmean(getattr(m, field)[k] for m in ms if k in getattr(m, field)) for k in keys}

    return Metrics(loss=fmean(losses) if losses else None, loss_unit=unit, evals=mean("evals"), probes=mean("probes"))


def informative_tasks(results: Sequence[Measured], config: FitnessConfig | None = None) -> set[str]:
    """Eval tasks of ``results`` that count: chance unknown, or some result beats chance by the margin."""
    cfg = config or FitnessConfig()
    best: dict[str, float] = {}
    for res in results:
        for task, acc in read_metrics(res).evals.items():
            best[task] = max(best.get(task, -1.0), acc)
    return {t for t, acc in best.items() if t not in cfg.chance or acc > cfg.chance[t] + cfg.chance_margin}


def fitness(results: Measured | Sequence[Measured], baseline: Measured | Sequence[Measured] | None = None,
            config: FitnessConfig | None = None, counted: set[str] | None = None) -> float:
    """One number (higher is better) from results, relative to ``baseline`` when given.

    With ``counted``, eval tasks outside it are left out (see :func:`informative_tasks`).
    """
    cfg = config or FitnessConfig()
    m = read_metrics(results)
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
        raise FitnessError("the result has no loss, bits-per-byte, eval or probe metric")
    return float(sum(terms))
