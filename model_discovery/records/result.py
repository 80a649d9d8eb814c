"""The verification record: what one (design, scale) verification produced, as JSON."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from statistics import fmean, stdev
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from model_discovery.records.scale import ScaleConfig
from model_discovery.records.train import TrainResult
from model_discovery.safe_io import write_text

RESULT_NAME = "verify_result.json"


class Replicate(BaseModel):
    """One training seed of a replicated verification."""

    model_config = ConfigDict(extra="forbid")

    seed: int
    final_val_loss: float
    eval_metrics: dict[str, float] = Field(default_factory=dict)
    out_dir: str = Field("", description="where this seed's training wrote its checkpoint and weights")


def over_seeds(replicates: list[Replicate]) -> dict[str, Any]:
    """``final_val_loss`` and the eval metrics every seed has, as means over ``replicates``, and
    ``spread``: their standard deviations (0 for one seed)."""
    keys = sorted(set.intersection(*(set(r.eval_metrics) for r in replicates)))
    columns = {"final_val_loss": [r.final_val_loss for r in replicates],
               **{k: [r.eval_metrics[k] for r in replicates] for k in keys}}
    means = {k: fmean(v) for k, v in columns.items()}
    return {"final_val_loss": means.pop("final_val_loss"), "eval_metrics": means,
            "spread": {k: stdev(v) if len(v) > 1 else 0.0 for k, v in columns.items()}}


class VerifyResult(BaseModel):
    """One verification of a design at one rung of the ladder.

    ``status`` is ``failed`` when the design could not be built or trained; ``error`` is then one
    line naming the cause and ``error_kind`` its class (e.g. the sandbox's kind: ``timeout``,
    ``memory``, ``exception``). Evaluation or probe problems do not fail a trained design: they
    are listed in ``warnings`` and the corresponding scores are missing.

    A replicated verification trains the design once per seed (``replicates``); ``final_val_loss``
    and ``eval_metrics`` are then means over the seeds, ``spread`` their standard deviations, and
    ``train`` is the first seed's run (whose weights lie in ``out_dir/train``).
    """

    model_config = ConfigDict(extra="forbid")

    design: str
    fingerprint: str
    scale: str
    status: Literal["ok", "failed"]
    seed: int = Field(0, description="training seed (the first one when replicated)")
    error: str = ""
    error_kind: str = ""
    train: TrainResult | None = None
    eval_metrics: dict[str, float] = Field(default_factory=dict)
    probe_scores: dict[str, float] = Field(default_factory=dict)
    replicates: list[Replicate] = Field(default_factory=list, description="per-seed results (two or more seeds)")
    spread: dict[str, float] = Field(default_factory=dict, description="std over seeds of final_val_loss and "
                                     "each eval metric (two or more seeds)")
    final_val_loss: float | None = None
    tokens_per_s: float = 0.0
    peak_memory_bytes: int = 0
    wall_s: float = 0.0
    warnings: list[str] = Field(default_factory=list)
    data_dir: str = ""
    out_dir: str = ""
    wandb_dir: str | None = None
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def footing(self, rung: ScaleConfig | None = None) -> str:
        """The settings its fitness depends on: training tokens, lm-eval on/off, probes on/off.

        Results on different footings are not comparable (another loss unit, other terms in the
        fitness, more training): they are never ranked together. On a ``rung`` whose token budget
        is per parameter (Chinchilla), tokens are counted per (non-embedding) parameter, so that
        designs of different sizes trained on the rung's recipe share a footing."""
        t = self.train
        if t is None:
            tokens = "not trained"
        elif rung is not None and rung.train_tokens is None and t.n_params > 0:
            tokens = f"{t.tokens / t.n_params:.0f} tokens/param"
        else:
            tokens = f"{t.tokens:,} tokens"
        return f"{tokens} · lm-eval {'on' if self.eval_metrics else 'off'} · probes {'on' if self.probe_scores else 'off'}"

    def seeds(self) -> set[int]:
        """The training seeds this result holds."""
        return {r.seed for r in self.replicates} or {self.seed}

    def as_replicates(self) -> list[Replicate]:
        """Its seeds as replicates (a one-seed result gives one)."""
        if self.replicates:
            return list(self.replicates)
        if self.final_val_loss is None:
            raise ValueError(f"{self.design}@{self.scale}: a result without a loss has no seeds to merge")
        return [Replicate(seed=self.seed, final_val_loss=self.final_val_loss, eval_metrics=dict(self.eval_metrics),
                          out_dir=self.out_dir)]

    def merged(self, other: "VerifyResult") -> "VerifyResult":
        """This result with the seeds of ``other`` added: per-seed list, means and spreads."""
        by_seed = {r.seed: r for r in self.as_replicates() + other.as_replicates()}
        reps = [by_seed[s] for s in sorted(by_seed)]
        return self.model_copy(update={"replicates": reps, "wall_s": self.wall_s + other.wall_s, **over_seeds(reps)})

    def save(self, out_dir: str | Path) -> Path:
        """Write ``<out_dir>/verify_result.json`` atomically, never through a symlink; returns the path."""
        return write_text(Path(out_dir) / RESULT_NAME, self.model_dump_json(indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "VerifyResult":
        """Read a record from a JSON file or from the out dir that holds one."""
        path = Path(path)
        if path.is_dir():
            path = path / RESULT_NAME
        try:
            return cls.model_validate_json(path.read_text())
        except OSError as exc:
            raise ValueError(f"{path}: cannot read verify result: {exc.strerror}") from exc
        except ValueError as exc:
            raise ValueError(f"{path}: invalid verify result: {' '.join(str(exc).split())[:300]}") from exc

    def summary(self) -> str:
        """A few human-readable lines."""
        head = f"{self.design} [{self.fingerprint}] @ {self.scale}: {self.status}"
        if not self.ok:
            return f"{head} ({self.error_kind or 'error'}): {self.error}"
        lines = [head]
        if self.train is not None:
            t = self.train
            lines.append(f"  params {t.n_params:,} non-embedding; {t.steps} steps, {t.tokens:,} tokens; "
                         f"val loss {t.final_val_loss:.4f}; {t.device}, {t.dtype}"
                         + ("; compiled" if t.compiled else ""))
            if t.compile_fallback:
                lines.append(f"  torch.compile fell back to eager: {t.compile_fallback}")
        if self.replicates and self.final_val_loss is not None:
            lines.append(f"  {len(self.replicates)} seeds: val loss {self.final_val_loss:.4f} "
                         f"± {self.spread.get('final_val_loss', 0.0):.4f} (mean ± std)")
        lines.append(f"  {self.tokens_per_s:,.0f} tokens/s; peak memory {self.peak_memory_bytes / 2**20:,.0f} MiB; "
                     f"wall {self.wall_s:.1f} s")
        for title, scores in (("eval", self.eval_metrics), ("probes", self.probe_scores)):
            if scores:
                lines.append(f"  {title}: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(scores.items())))
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)
