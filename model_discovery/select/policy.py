"""The statistics of selection, free of any store: estimates with their noise, parent choice,
successive-halving promotion, recommendation and the surrogate pre-screen.

The live :class:`~model_discovery.select.selector.Selector` reads the evolution tree into these
shapes; the replay benchmark (``benchmarks/selector_replay.py``) feeds them a tabulated world.
Both therefore run the same rules:

- **Estimates.** A design's fitness at a fidelity is the mean over its training seeds. Its
  standard error pools the seeds' own spread with the fidelity's noise (worth ``prior_weight``
  pseudo-observations), so one seed gets that noise and many seeds converge on their own
  spread. The noise is measured per rung, pooled over the rung's replicated designs once they
  give ``noise_dof`` degrees of freedom; before that it is ``noise_sd``.
- **Parents.** The first ``warmup_steps`` design steps pick parents at random; afterwards, with
  probability ``restart_prob`` a random seed, else Thompson sampling: one draw from each
  design's N(mean, se²) (for a design not verified yet, from the surrogate's prediction with
  its residual spread) and the best draw wins. The second parent (crossover, interleave) is the
  winner of a tournament of ``tournament`` random designs on their draws, so every pair can
  be reached. A cheap proposer drafts ``candidates`` designs a step: the first from those
  parents, the others (a share ``explore`` of them) from uniformly drawn parents, and the
  surrogate keeps the best-predicted one.
- **Promotion (ASHA).** Stages run from cheap to dear (the full run, replicate seeds, then the GPU
  rungs). A design that finished stage k moves on when it ranks in the top 1/``eta`` of all
  designs that finished stage k (and at least one always may). Replicate seeds go only to those
  of them that could still be the best (``replicate="contenders"``: upper bound above the best
  lower bound), since elsewhere noise cannot change the verdict, and only once
  ``replicate_after`` new designs have finished the stage.
- **Recommendation.** A design is called best only with at least ``min_seeds`` seeds; among
  those, the highest lower confidence bound (mean − z·se) wins.
- **Surrogate.** Ridge regression on design features ranks candidate designs; its online
  Spearman correlation with what verification then measured (seeds, which it is never asked
  to rank, not counted) is tracked, and when it falls below ``min_rho`` over at least
  ``rho_pairs`` designs, candidates are taken in random order instead.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import rankdata

from model_discovery.select.predictor import Ridge


class Estimate(BaseModel):
    """Mean fitness of a design with its standard error and number of training seeds."""

    model_config = ConfigDict(frozen=True)
    mean: float
    se: float = Field(ge=0)
    n: int = Field(ge=0, description="training seeds behind the mean (0: a prediction)")

    def lcb(self, z: float = 1.0) -> float:
        return self.mean - z * self.se

    def draw(self, rng: random.Random) -> float:
        return rng.gauss(self.mean, self.se) if self.se > 0 else self.mean

    def __str__(self) -> str:
        return f"{self.mean:+.4f} ± {self.se:.4f} (n={self.n})"


def estimate(values: Sequence[float], noise_sd: float, prior_weight: float = 2.0) -> Estimate:
    """Mean and standard error of per-seed fitness values, pooling their spread with ``noise_sd``."""
    n = len(values)
    if n == 0:
        raise ValueError("an estimate needs at least one value")
    mean = math.fsum(values) / n
    ss = math.fsum((v - mean) ** 2 for v in values)
    var = (ss + prior_weight * noise_sd ** 2) / ((n - 1) + prior_weight)
    return Estimate(mean=mean, se=math.sqrt(var / n), n=n)


def estimate_from_summary(mean: float, n: int, sd: float | None, noise_sd: float,
                          prior_weight: float = 2.0) -> Estimate:
    """As :func:`estimate`, from a stored mean, seed count and sample standard deviation."""
    ss = (n - 1) * sd ** 2 if sd is not None and n > 1 else 0.0
    var = (ss + prior_weight * noise_sd ** 2) / ((n - 1) + prior_weight)
    return Estimate(mean=mean, se=math.sqrt(var / max(n, 1)), n=n)


class PolicyConfig(BaseModel):
    """Knobs of the selection rules (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    warmup_steps: int = Field(3, ge=0, description="design steps with random parents at the start")
    restart_prob: float = Field(0.1, ge=0, le=1, description="chance a step restarts from a random seed")
    tournament: int = Field(3, ge=1, description="tournament size for the second parent")
    noise_sd: float = Field(0.01, ge=0, description="fitness std over training seeds when a design has one "
                                                    "(measured: benchmarks/fitness_noise.py)")
    noise_dof: int = Field(4, ge=1, description="extra seeds over a rung's replicated designs before their pooled "
                           "spread replaces noise_sd at that rung")
    prior_weight: float = Field(2.0, gt=0, description="pseudo-observations of noise_sd in every standard error")
    noise_model: bool = Field(True, description="False: point estimates (greedy parents, best single value)")
    eta: float = Field(3.0, gt=1, description="successive halving: the top 1/eta of a stage move on")
    replicate: Literal["contenders", "top"] = Field(
        "contenders", description="which of a stage's top 1/eta get replicate seeds: 'contenders' only those "
        "that could still be the best (upper bound above the best lower bound), 'top' all of them")
    min_seeds: int = Field(3, ge=1, description="seeds a design needs before it may be called best")
    replicate_after: int = Field(6, ge=0, description="new (non-seed) designs that must finish a stage before "
                                 "any design there gets replicate seeds: before the search has challengers, "
                                 "seeds spent ranking the leader rarely change a verdict")
    z: float = Field(1.0, ge=0, description="lower confidence bound = mean - z * se")
    candidates: int = Field(64, ge=1, description="proposals per design step ranked by the surrogate (cheap "
                                                  "proposers only)")
    explore: float = Field(1.0, ge=0, le=1, description="share of a step's extra candidates whose parents are "
                           "drawn uniformly (the rest by Thompson sampling): the surrogate then screens across "
                           "the tree, not one family")
    surrogate: bool = Field(True, description="rank candidates by the fitness model (else random order)")
    min_rho: float = Field(0.1, description="surrogate used only while its online Spearman is at least this")
    rho_window: int = Field(30, ge=5, description="latest (predicted, measured) pairs the online Spearman uses")
    rho_pairs: int = Field(10, ge=3, description="pairs needed before the online Spearman may switch the "
                                                 "surrogate off (a correlation of fewer is noise)")


# -- parents -------------------------------------------------------------------------------------
def draws(estimates: Mapping[str, Estimate | None], rng: random.Random, noise_model: bool = True
          ) -> dict[str, float]:
    """One Thompson draw per design with an estimate (its mean when ``noise_model`` is off)."""
    return {name: (e.draw(rng) if noise_model else e.mean) for name, e in estimates.items() if e is not None}


def choose_parent(pool: Sequence[str], seeds: Sequence[str], estimates: Mapping[str, Estimate | None],
                  step: int, config: PolicyConfig, rng: random.Random) -> str:
    """The first parent of design step ``step`` (0-based) from ``pool``; see the module docstring."""
    if not pool:
        raise LookupError("no design can be a parent")
    live_seeds = [s for s in seeds if s in pool]
    if step < config.warmup_steps:
        return rng.choice(list(pool))
    if live_seeds and rng.random() < config.restart_prob:
        return rng.choice(live_seeds)
    values = draws({n: estimates.get(n) for n in pool}, rng, config.noise_model)
    if not values:
        return rng.choice(list(pool))
    best = max(values.values())
    return rng.choice([n for n, v in values.items() if v == best])


def tournament(pool: Sequence[str], estimates: Mapping[str, Estimate | None], config: PolicyConfig,
               rng: random.Random, exclude: Sequence[str] = ()) -> str | None:
    """Best Thompson draw among ``config.tournament`` designs sampled from ``pool`` minus ``exclude``."""
    rest = [n for n in pool if n not in set(exclude)]
    if not rest:
        return None
    entrants = rng.sample(rest, min(config.tournament, len(rest)))
    values = draws({n: estimates.get(n) for n in entrants}, rng, config.noise_model)
    if not values:
        return entrants[0]
    return max(entrants, key=lambda n: values.get(n, -math.inf))


# -- promotion -----------------------------------------------------------------------------------
def promotions(finished: Mapping[str, float], promoted: set[str] | frozenset[str], eta: float) -> list[str]:
    """ASHA: designs of a stage to move on now, best first.

    ``finished`` maps each design that completed the stage to its value there (higher is
    better); ``promoted`` are those already moved on. The top ``max(1, floor(n / eta))`` of the
    stage may move on, so the set only grows as more designs finish.
    """
    ranked = sorted(finished, key=lambda n: -finished[n])
    top = max(1, math.floor(len(ranked) / eta))
    return [n for n in ranked[:top] if n not in promoted]


def contenders(estimates: Mapping[str, Estimate], z: float) -> set[str]:
    """Designs that could still be the best: mean + z·se reaches the best lower bound."""
    if not estimates:
        return set()
    bar = max(e.lcb(z) for e in estimates.values())
    return {n for n, e in estimates.items() if e.mean + z * e.se >= bar}


def replicate_candidates(finished: Mapping[str, float], promoted: set[str] | frozenset[str],
                         estimates: Mapping[str, Estimate], config: PolicyConfig,
                         seeds: Collection[str] = ()) -> list[str]:
    """Designs to give replicate seeds now: ASHA's top 1/eta, kept to contenders unless
    ``config.replicate`` is 'top'. Seeds go where noise could still change the verdict, and
    only once ``config.replicate_after`` designs not among ``seeds`` have finished the stage."""
    if sum(1 for n in finished if n not in seeds) < config.replicate_after:
        return []
    ups = promotions(finished, promoted, config.eta)
    if config.replicate == "contenders":
        keep = contenders(estimates, config.z)
        ups = [n for n in ups if n in keep]
    return ups


def recommend(estimates: Mapping[str, Estimate], config: PolicyConfig) -> str | None:
    """The design the search would call best now (None when no design has a value).

    With the noise model: highest lower bound among designs with ``min_seeds`` seeds, else the
    most-seeded designs' best mean. Without it: the best single value seen.
    """
    known = {n: e for n, e in estimates.items() if e.n > 0}
    if not known:
        return None
    if config.noise_model:
        enough = {n: e for n, e in known.items() if e.n >= config.min_seeds}
        if enough:
            return max(enough, key=lambda n: enough[n].lcb(config.z))
        most = max(e.n for e in known.values())
        known = {n: e for n, e in known.items() if e.n == most}
    return max(known, key=lambda n: known[n].mean)


def confirmed_best(estimates: Mapping[str, Estimate], seeds: Sequence[str], config: PolicyConfig,
                   exact: Collection[str] = ()) -> str | None:
    """A non-seed design with ``min_seeds`` seeds whose lower bound beats the best seed's mean, if
    any; the best seed must have ``min_seeds`` seeds too (one seed's mean is too noisy a bar),
    unless it is in ``exact`` (the baseline, whose fitness is 0 by definition)."""
    known = {s: estimates[s] for s in seeds if s in estimates and estimates[s].n > 0}
    if not known:
        return None
    top = max(known, key=lambda s: known[s].mean)
    if known[top].n < config.min_seeds and top not in exact:
        return None
    bar = known[top].mean
    ok = {n: e for n, e in estimates.items()
          if n not in set(seeds) and e.n >= config.min_seeds and e.lcb(config.z) > bar}
    return max(ok, key=lambda n: ok[n].lcb(config.z)) if ok else None


# -- surrogate -----------------------------------------------------------------------------------
def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); 0 when either side is constant."""
    if len(x) != len(y) or len(x) < 2:
        return 0.0
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


class Surrogate:
    """The fitness model used to pre-screen candidates, with its online rank correlation."""

    def __init__(self, config: PolicyConfig, alpha: float = 1.0) -> None:
        self.config = config
        self.model = Ridge(alpha)
        self.pairs: list[tuple[float, float]] = []  # (predicted before measuring, measured)

    def observe(self, features: Sequence[str], value: float, scored: bool = True) -> None:
        """A measured value: scored against the prediction made before it (unless ``scored`` is
        False, as for seeds, which the model is not asked to rank), then learned."""
        pred = self.model.predict(features)
        if pred is not None and scored:
            self.pairs.append((pred, value))
        self.model.add(features, value)

    def rho(self) -> float | None:
        """Spearman of the latest ``rho_window`` (prediction, measurement) pairs (None below
        ``rho_pairs``)."""
        recent = self.pairs[-self.config.rho_window:]
        if len(recent) < self.config.rho_pairs:
            return None
        return spearman([p for p, _ in recent], [m for _, m in recent])

    def useful(self) -> bool:
        r = self.rho()
        return self.config.surrogate and len(self.model) >= 3 and (r is None or r >= self.config.min_rho)

    def prior(self, features: Sequence[str]) -> Estimate | None:
        """The model's prediction as an estimate (n=0) with its residual spread."""
        pred = self.model.predict(features)
        if pred is None:
            return None
        return Estimate(mean=pred, se=max(self.model.residual_sd(), self.config.noise_sd), n=0)

    def rank(self, candidates: Sequence[Sequence[str]], rng: random.Random) -> list[int]:
        """Candidate indices best first (random order while the model is not useful)."""
        idx = list(range(len(candidates)))
        rng.shuffle(idx)
        if not self.useful():
            return idx
        preds = self.model.predict_many(candidates)
        return sorted(idx, key=lambda i: -preds[i])
