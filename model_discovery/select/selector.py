"""Ladder-aware selection: which designs to evolve from, which to consult, which to verify where.

:class:`Selector` picks parents by UCB over the tree (exploitation: fitness, or the learned
prior for designs not yet verified; exploration: a bonus that shrinks with the number of
children a design already has), references for diversity (units least shared with the
parents), and verifications up the ladder: every new design at the lowest rung first, then the
best designs of each rung promoted to the next while that rung's budget lasts.
:class:`RandomSelector` has the same interface with uniform random choices, for comparison.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model_discovery.evolution import DesignRecord, EvolutionTree, ResultRecord
from model_discovery.evolution.tree import source_hash
from model_discovery.gau.scales import LADDER
from model_discovery.select.budget import Budget
from model_discovery.select.fitness import FitnessConfig, FitnessError, fitness
from model_discovery.select.predictor import FitnessPredictor

VerifyPick = tuple[str, str]


class SelectorConfig(BaseModel):
    """Settings of a selector (all optional)."""

    model_config = ConfigDict(extra="forbid")
    exploration: float = Field(1.0, ge=0, description="UCB exploration constant c")
    k_parents: int = Field(1, ge=1, le=2, description="1: mutation, 2: crossover")
    n_references: int = Field(2, ge=0)
    scales: list[str] = Field(default_factory=lambda: list(LADDER), description="rungs in use, low to high")
    budgets: dict[str, int] = Field(default_factory=dict, description="per-rung budget overrides")
    promote_quantile: float = Field(0.5, gt=0, le=1,
                                    description="share of a rung's verified designs eligible to move up")
    baseline: str = Field("gpt2", description="design that fitness is normalised against, per rung")
    parent_statuses: list[str] = Field(default_factory=lambda: ["checked", "verified"])
    ridge_alpha: float = Field(1.0, gt=0)
    lease_ttl_s: float = Field(6 * 3600.0, gt=0)
    seed: int | None = None
    fitness: FitnessConfig = Field(default_factory=FitnessConfig)

    @field_validator("scales")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in LADDER]
        if unknown or not v:
            raise ValueError(f"scales must be non-empty names from the ladder ({', '.join(LADDER)}); got {v}")
        return sorted(v, key=list(LADDER).index)


def _unit_set(rec: DesignRecord) -> frozenset[str]:
    return frozenset(f"{u.role}:{source_hash(u.source)}:{sorted(u.hparams.items())}"
                     for u in rec.design.units.values())


def _jaccard_distance(a: frozenset[str], b: frozenset[str]) -> float:
    union = a | b
    return 1.0 - (len(a & b) / len(union)) if union else 0.0


class Selector:
    """Evolutionary selector: UCB parents, diverse references, budgeted promotion up the ladder."""

    def __init__(self, config: SelectorConfig | None = None) -> None:
        self.config = config or SelectorConfig()
        self.rng = random.Random(self.config.seed)
        self.predictor = FitnessPredictor(self.config.ridge_alpha)
        self._pending: dict[str, int] = {}
        self._learned: set[tuple[str, str]] = set()

    # -- fitness and prior ------------------------------------------------------------------
    def fitness(self, records: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                baseline: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> float:
        """Fitness of result records, normalised against ``baseline`` records when given."""
        return fitness(records, baseline, self.config.fitness)

    def record_result(self, tree: EvolutionTree, name: str, scale: str, record: Mapping[str, Any] | BaseModel,
                      status: str = "ok") -> ResultRecord:
        """Score a verification against the baseline at the same rung, store it, learn from it.

        When the baseline's own result arrives, earlier results of that rung are rescored.
        """
        data = record.model_dump(mode="json") if isinstance(record, BaseModel) else dict(record)
        base = self._baseline_record(tree, scale) if name != self.config.baseline else data
        try:
            fit = self.fitness(data, base) if status == "ok" else None
        except FitnessError:
            fit = None
        stored = tree.add_result(name, scale, data, fit, status)
        if name == self.config.baseline and status == "ok":
            for res in tree.results(scale=scale):
                if res.design != name and res.status == "ok":
                    try:
                        tree.set_fitness(res.design, scale, self.fitness(res.record, data))
                    except FitnessError:
                        continue
        self.learn(tree)
        return stored

    def _baseline_record(self, tree: EvolutionTree, scale: str) -> dict[str, Any] | None:
        if not tree.has_design(self.config.baseline):
            return None
        res = tree.results(self.config.baseline, scale)
        return res[0].record if res and res[0].status == "ok" else None

    def learn(self, tree: EvolutionTree) -> int:
        """Feed the predictor every result with a fitness it has not seen yet; returns how many."""
        new = [r for r in tree.results() if r.fitness is not None and (r.design, r.scale) not in self._learned]
        for res in new:
            rec = tree.get_design(res.design)
            self.predictor.update(rec.design, res.fitness, rec.operator)  # type: ignore[arg-type]
            self._learned.add((res.design, res.scale))
        return len(new)

    def prior(self, rec: DesignRecord) -> float | None:
        """Predicted fitness of a design from the results seen so far (None before any)."""
        return self.predictor.predict(rec.design, rec.operator)

    def scores(self, tree: EvolutionTree) -> dict[str, float | None]:
        """Each design's fitness at its highest verified rung, else its prior."""
        self.learn(tree)
        order = {s: i for i, s in enumerate(LADDER)}
        best: dict[str, tuple[int, float]] = {}
        for res in tree.results():
            if res.fitness is None:
                continue
            rung = order.get(res.scale, -1)
            if res.design not in best or rung > best[res.design][0]:
                best[res.design] = (rung, res.fitness)
        return {rec.name: best[rec.name][1] if rec.name in best else self.prior(rec)
                for rec in tree.list_designs()}

    # -- parents ----------------------------------------------------------------------------
    def _parent_pool(self, tree: EvolutionTree) -> list[DesignRecord]:
        return [r for r in tree.list_designs()
                if r.status in self.config.parent_statuses or (r.is_seed and r.status != "failed")]

    def ucb(self, tree: EvolutionTree) -> dict[str, float]:
        """UCB value of every eligible parent: normalised fitness + c·sqrt(ln N / (1 + visits))."""
        pool = self._parent_pool(tree)
        if not pool:
            return {}
        scores = self.scores(tree)
        known = [scores[r.name] for r in pool if scores[r.name] is not None]
        lo, hi = (min(known), max(known)) if known else (0.0, 0.0)
        counts = tree.child_counts()
        visits = {r.name: counts.get(r.name, 0) + self._pending.get(r.name, 0) for r in pool}
        total = sum(visits.values())
        out = {}
        for r in pool:
            s = scores[r.name]
            q = 0.5 if s is None or hi == lo else (s - lo) / (hi - lo)
            bonus = self.config.exploration * math.sqrt(math.log(total + 1) / (visits[r.name] + 1))
            out[r.name] = q + bonus
        return out

    def _rank_parents(self, tree: EvolutionTree) -> list[str]:
        values = self.ucb(tree)
        names = list(values)
        self.rng.shuffle(names)  # random tie-breaking
        return sorted(names, key=lambda n: -values[n])

    def select_parents(self, tree: EvolutionTree, k: int | None = None) -> list[DesignRecord]:
        """``k`` (default config.k_parents) distinct parents; each pick counts as a visit."""
        k = k or self.config.k_parents
        if k not in (1, 2):
            raise ValueError(f"k must be 1 or 2, got {k}")
        ranked = self._rank_parents(tree)
        if not ranked:
            raise LookupError("no design can be a parent: the tree has no seed or checked design")
        picks = ranked[:k]
        for name in picks:
            self._pending[name] = self._pending.get(name, 0) + 1
        return [tree.get_design(n) for n in picks]

    # -- references -------------------------------------------------------------------------
    def select_references(self, tree: EvolutionTree, n: int | None = None,
                          exclude: Sequence[str] = ()) -> list[DesignRecord]:
        """``n`` designs whose units differ most from ``exclude`` (the parents) and each other."""
        n = self.config.n_references if n is None else n
        pool = [r for r in tree.list_designs() if r.status != "failed"]
        chosen = [r for r in pool if r.name in exclude]
        candidates = [r for r in pool if r.name not in exclude]
        if n <= 0 or not candidates:
            return []
        scores = self.scores(tree)
        picked: list[DesignRecord] = []
        while candidates and len(picked) < n:
            best = self._next_reference(candidates, chosen + picked, scores)
            picked.append(best)
            candidates.remove(best)
        return picked

    def _next_reference(self, candidates: list[DesignRecord], chosen: list[DesignRecord],
                        scores: Mapping[str, float | None]) -> DesignRecord:
        sets = [_unit_set(c) for c in chosen]

        def key(r: DesignRecord) -> tuple[float, float]:
            mine = _unit_set(r)
            dist = min((_jaccard_distance(mine, s) for s in sets), default=1.0)
            return (dist, scores.get(r.name) or float("-inf"))

        return max(candidates, key=key)

    # -- verifications ----------------------------------------------------------------------
    def budget(self, tree: EvolutionTree, budgets: Budget | Mapping[str, int] | None = None) -> Budget:
        if isinstance(budgets, Budget):
            return budgets
        return Budget.from_tree(tree, {**self.config.budgets, **(budgets or {})}, self.config.scales)

    def _order_new(self, tree: EvolutionTree, recs: list[DesignRecord]) -> list[DesignRecord]:
        """Lowest-rung order: the baseline, then seeds, then by prior (unknown priors keep age order)."""
        def key(r: DesignRecord) -> tuple[int, int, float]:
            p = self.prior(r)
            return (r.name != self.config.baseline, not r.is_seed, -(p if p is not None else float("-inf")))
        return sorted(recs, key=key)

    def _order_promotions(self, ranked: list[tuple[str, float]]) -> list[str]:
        """Best first, limited to the top ``promote_quantile`` of the rung below."""
        top = max(1, math.ceil(self.config.promote_quantile * len(ranked)))
        return [n for n, _ in sorted(ranked, key=lambda nf: -nf[1])[:top]]

    def select_verifications(self, tree: EvolutionTree, budgets: Budget | Mapping[str, int] | None = None,
                             owner: str | None = None, limit: int | None = None) -> list[VerifyPick]:
        """(design, scale) pairs to verify now, within every rung's remaining budget.

        Every checked design is verified at the lowest rung; designs move up one rung at a
        time, best first, and only while the upper rung's budget lasts. The baseline is verified
        at every rung it reaches. With ``owner``, each pick is claimed in the tree (bounded by
        the budget) and only the pairs won are returned, so many nodes can call this at once.
        """
        self.learn(tree)
        budget = self.budget(tree, budgets)
        designs = {r.name: r for r in tree.list_designs()}
        results = tree.results()
        done = {(r.design, r.scale) for r in results}
        busy = {(l.design, l.scale) for l in tree.leases(live_only=True)}
        picks: list[VerifyPick] = []
        scales = [s for s in self.config.scales if s in budget.limits]
        for i, scale in enumerate(scales):
            room = budget.remaining(tree, scale)
            if room <= 0:
                continue
            if i == 0:
                pool = [r for r in designs.values() if r.status in ("checked", "verified")
                        and (r.name, scale) not in done and (r.name, scale) not in busy]
                order = [r.name for r in self._order_new(tree, pool)]
            else:
                below = scales[i - 1]
                ranked = [(r.design, r.fitness) for r in results
                          if r.scale == below and r.status == "ok" and r.fitness is not None]
                order = self._order_promotions(ranked)
                if any(r.design == self.config.baseline and r.scale == below and r.status == "ok" for r in results):
                    order = [self.config.baseline] + [n for n in order if n != self.config.baseline]
                order = [n for n in order if (n, scale) not in done and (n, scale) not in busy]
            for name in order:
                if room <= 0 or (limit is not None and len(picks) >= limit):
                    break
                if owner is not None and not tree.claim_verification(
                        name, scale, owner, self.config.lease_ttl_s, budget=budget.limit(scale)):
                    continue
                picks.append((name, scale))
                room -= 1
        return picks


class RandomSelector(Selector):
    """Same interface, uniform random choices: parents, references and which designs move up."""

    def _rank_parents(self, tree: EvolutionTree) -> list[str]:
        names = [r.name for r in self._parent_pool(tree)]
        self.rng.shuffle(names)
        return names

    def _next_reference(self, candidates: list[DesignRecord], chosen: list[DesignRecord],
                        scores: Mapping[str, float | None]) -> DesignRecord:
        return self.rng.choice(candidates)

    def _order_new(self, tree: EvolutionTree, recs: list[DesignRecord]) -> list[DesignRecord]:
        recs = list(recs)
        self.rng.shuffle(recs)
        return recs

    def _order_promotions(self, ranked: list[tuple[str, float]]) -> list[str]:
        names = [n for n, _ in ranked]
        self.rng.shuffle(names)
        return names
