"""Ladder-aware selection over the evolution tree: parents, references, and what to verify where.

:class:`Selector` reads the tree into the shapes of :mod:`model_discovery.select.policy` and
applies its rules (the replay benchmark runs the same rules on a tabulated world):

- every stored result carries its fitness as a mean over training seeds with a standard error
  (``fitness_se``, from the seeds' spread pooled with the rung's measured noise);
- parents: random for the first design steps, then Thompson sampling with an occasional restart
  from a seed; the second parent and the first reference come from a tournament, so any pair
  can meet; designs whose training failed are never parents;
- verification, as asynchronous successive halving: every new design is trained once at the
  lowest rung (ranked by the surrogate while its online rank correlation says it helps); the
  top 1/eta of a rung get replicate seeds there; the top 1/eta of the replicated designs (by
  lower confidence bound) move up a rung. A rung above the first gets budget only as the rung
  below spends it (``pacing``);
- the surrogate and every fitness are rebuilt from the tree, so a resumed or second node sees
  the same numbers.

:class:`RandomSelector` has the same interface with uniform random choices and no noise model,
for comparison.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from contextlib import suppress

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model_discovery.evolution import EvolutionTree
from model_discovery.evolution.tree import source_hash
from model_discovery.gau.scales import LADDER
from model_discovery.records import Design, DesignRecord, ResultRecord, VerifyPick, VerifyResult
from model_discovery.select.budget import Budget
from model_discovery.select.fitness import FitnessConfig, FitnessError, fitness, informative_tasks, per_seed
from model_discovery.select.policy import (Estimate, PolicyConfig, Surrogate, choose_parent, confirmed_best,
                                           estimate, estimate_from_summary, promotions, recommend,
                                           replicate_candidates, tournament)
from model_discovery.select.predictor import design_features


class SelectorConfig(BaseModel):
    """Settings of a selector (all optional)."""

    model_config = ConfigDict(extra="forbid")
    k_parents: int = Field(1, ge=1, le=2, description="1: mutation, 2: crossover")
    n_references: int = Field(2, ge=0)
    scales: list[str] = Field(default_factory=lambda: list(LADDER), description="rungs in use, low to high")
    budgets: dict[str, int] = Field(default_factory=dict, description="per-rung budget overrides (training runs)")
    pacing: float | None = Field(0.25, gt=0, description="a rung above the first may have used at most "
                                 "pacing x what the rung below used; None: no pacing")
    baseline: str = Field("gpt2", description="design that fitness is normalised against, per rung")
    ridge_alpha: float = Field(1.0, gt=0)
    lease_ttl_s: float = Field(6 * 3600.0, gt=0)
    seed: int | None = None
    fitness: FitnessConfig = Field(default_factory=FitnessConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)

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
    """Evolutionary selector: Thompson parents, tournament partners, successive halving up the ladder."""

    random_choices = False

    def __init__(self, config: SelectorConfig | None = None) -> None:
        self.config = config or SelectorConfig()
        self.rng = random.Random(self.config.seed)

    @property
    def policy(self) -> PolicyConfig:
        return self.config.policy

    # -- fitness ----------------------------------------------------------------------------
    def counted_tasks(self, tree: EvolutionTree, scale: str) -> set[str]:
        """Eval tasks that enter fitness at ``scale``: some design there beats chance clearly."""
        return informative_tasks([r.result for r in tree.results(scale=scale) if r.status == "ok"],
                                 self.config.fitness)

    def rung_noise(self, per_design: Sequence[Sequence[float]]) -> float:
        """A rung's fitness noise for one seed: the seed spread pooled over its designs with
        several seeds once they give ``policy.noise_dof`` degrees of freedom, else ``policy.noise_sd``."""
        groups = [v for v in per_design if len(v) > 1]
        dof = sum(len(v) - 1 for v in groups)
        if dof < self.policy.noise_dof:
            return self.policy.noise_sd
        ss = math.fsum(math.fsum((x - math.fsum(v) / len(v)) ** 2 for x in v) for v in groups)
        return math.sqrt(ss / dof)

    def record_result(self, tree: EvolutionTree, name: str, scale: str, result: VerifyResult) -> ResultRecord:
        """Score a verification against the baseline at the same rung, store it, rescore the rung.

        A record whose seeds are new to a stored result is merged into it (replicates). A
        failed verification marks the design ``failed``: it is no parent and is not promoted;
        when the design already has a trained result at the rung (a failed replicate), that
        result is kept and the failure only changes the design's status.
        """
        old = next((r for r in tree.results(name, scale) if r.status == "ok"), None)
        if not result.ok:
            tree.set_status(name, "failed")
            if old is not None:
                tree.release(name, scale)
                return old
            return tree.add_result(name, scale, result, None, result.status)
        if old is not None and old.result.seeds().isdisjoint(result.seeds()):
            result = old.result.merged(result)
        tree.add_result(name, scale, result, None, "ok", seeds=len(result.seeds()))
        self.rescore(tree, scale)
        return next(r for r in tree.results(name, scale))

    def footing(self, tree: EvolutionTree, scale: str) -> str | None:
        """The footing fitness is ranked on at ``scale``: the baseline's when it is verified there,
        else the one most results share (the first verified on a tie); None without results."""
        rung = LADDER.get(scale)
        results = [r.result for r in tree.results(scale=scale) if r.status == "ok"]
        base = next((r for r in results if r.design == self.config.baseline), None)
        if base is not None:
            return base.footing(rung)
        common = Counter(r.footing(rung) for r in results).most_common(1)  # ties: the first verified
        return common[0][0] if common else None

    def rescore(self, tree: EvolutionTree, scale: str) -> int:
        """Recompute every fitness at ``scale`` (baseline and counted tasks may have changed).

        Only results on the rung's :meth:`footing` get a fitness: one verified under other settings
        (tokens, lm-eval, probes) is kept apart, with none, rather than ranked with the others."""
        footing, rung = self.footing(tree, scale), LADDER.get(scale)
        results = [r for r in tree.results(scale=scale) if r.status == "ok"]
        same = [r for r in results if r.result.footing(rung) == footing]
        base = next((r.result for r in same if r.design == self.config.baseline), None)
        counted = informative_tasks([r.result for r in same], self.config.fitness)
        values: dict[str, list[float]] = {}
        for res in same:
            with suppress(FitnessError):
                values[res.design] = [fitness(m, base, self.config.fitness, counted) for m in per_seed(res.result)]
        noise = self.rung_noise(list(values.values()))
        changed = 0
        for res in results:
            vals = values.get(res.design)
            est = estimate(vals, noise, self.policy.prior_weight) if vals else None
            fit, se = (est.mean, est.se) if est is not None else (None, None)
            if fit != res.fitness or se != res.fitness_se:
                tree.set_fitness(res.design, scale, fit, se)
                changed += 1
        return changed

    def estimates(self, tree: EvolutionTree, scale: str | None = None) -> dict[str, Estimate]:
        """Each design's fitness estimate at ``scale`` (default: its highest verified rung)."""
        order = {s: i for i, s in enumerate(LADDER)}
        best: dict[str, tuple[int, Estimate]] = {}
        for res in tree.results(scale=scale):
            if res.fitness is None or res.status != "ok":
                continue
            est = (Estimate(mean=res.fitness, se=res.fitness_se, n=res.seeds) if res.fitness_se is not None
                   else estimate_from_summary(res.fitness, res.seeds, None, self.policy.noise_sd,
                                              self.policy.prior_weight))
            rung = order.get(res.scale, -1)
            if res.design not in best or rung > best[res.design][0]:
                best[res.design] = (rung, est)
        return {n: e for n, (_, e) in best.items()}

    # -- surrogate --------------------------------------------------------------------------
    def surrogate(self, tree: EvolutionTree) -> Surrogate:
        """The fitness model rebuilt from the tree's results in the order they arrived."""
        model = Surrogate(self.policy, self.config.ridge_alpha)
        designs = {r.name: r for r in tree.list_designs()}
        seen: set[str] = set()
        for res in tree.results():
            if res.fitness is None or res.design in seen or res.design not in designs:
                continue
            seen.add(res.design)
            rec = designs[res.design]
            model.observe(design_features(rec.design, rec.operator), res.fitness, scored=not rec.is_seed)
        return model

    @staticmethod
    def prior(rec: DesignRecord, model: Surrogate) -> Estimate | None:
        """``model``'s prediction for a design (None before any result)."""
        return model.prior(design_features(rec.design, rec.operator))

    def screen(self, tree: EvolutionTree, candidates: Sequence[tuple[Design, str]]) -> list[int]:
        """Indices of candidate (design, operator) pairs, best first by the surrogate (random
        order while the surrogate is not useful)."""
        model = self.surrogate(tree)
        return model.rank([design_features(d, op) for d, op in candidates], self.rng)

    def surrogate_report(self, tree: EvolutionTree) -> str:
        """One line: how well the surrogate has ranked what was then measured."""
        model = self.surrogate(tree)
        rho = model.rho()
        if rho is None:
            return (f"surrogate: {len(model.pairs)} predictions checked so far (needs {self.policy.rho_pairs} "
                    f"for a rank correlation)")
        state = "used" if model.useful() else f"not used (below {self.policy.min_rho:+.2f})"
        return (f"surrogate: online Spearman {rho:+.2f} over the last {min(len(model.pairs), self.policy.rho_window)} "
                f"predictions; {state}")

    # -- parents ----------------------------------------------------------------------------
    def _parent_pool(self, tree: EvolutionTree) -> list[DesignRecord]:
        return [r for r in tree.list_designs()
                if r.status in ("checked", "verified") or (r.is_seed and r.status != "failed")]

    def _parent_estimates(self, tree: EvolutionTree, pool: Sequence[DesignRecord]) -> dict[str, Estimate | None]:
        est: dict[str, Estimate | None] = dict(self.estimates(tree))
        model = self.surrogate(tree)
        return {**est, **{rec.name: self.prior(rec, model) for rec in pool if rec.name not in est}}

    def design_steps(self, tree: EvolutionTree) -> int:
        """Design steps so far, read from the tree (every non-seed design, whatever its status)."""
        return sum(1 for r in tree.list_designs() if not r.is_seed)

    def select_parents(self, tree: EvolutionTree, k: int | None = None) -> list[DesignRecord]:
        """``k`` (default config.k_parents) distinct parents: the first by Thompson sampling (random
        during warm-up, a seed on restart), the second by tournament."""
        k = k or self.config.k_parents
        if k not in (1, 2):
            raise ValueError(f"k must be 1 or 2, got {k}")
        pool = self._parent_pool(tree)
        if not pool:
            raise LookupError("no design can be a parent: the tree has no seed or checked design")
        names = [r.name for r in pool]
        seeds = [r.name for r in pool if r.is_seed]
        est = self._parent_estimates(tree, pool)
        first = self._first_parent(names, seeds, est, self.design_steps(tree))
        picks = [first]
        if k == 2:
            second = self._partner(names, est, exclude=[first])
            if second is not None:
                picks.append(second)
        return [tree.get_design(n) for n in picks]

    def uniform_parents(self, tree: EvolutionTree, k: int = 1) -> list[DesignRecord]:
        """``k`` distinct parents drawn uniformly from those :meth:`select_parents` draws from (the
        extra candidates of a screened design step)."""
        pool = self._parent_pool(tree)
        return self.rng.sample(pool, min(k, len(pool)))

    def _first_parent(self, names: list[str], seeds: list[str], est: Mapping[str, Estimate | None], step: int) -> str:
        return choose_parent(names, seeds, est, step, self.policy, self.rng)

    def _partner(self, names: list[str], est: Mapping[str, Estimate | None], exclude: Sequence[str]) -> str | None:
        return tournament(names, est, self.policy, self.rng, exclude)

    # -- references -------------------------------------------------------------------------
    def select_references(self, tree: EvolutionTree, n: int | None = None,
                          exclude: Sequence[str] = ()) -> list[DesignRecord]:
        """``n`` designs: the first a tournament winner (the crossover partner), the rest those
        whose units differ most from the parents and each other."""
        n = self.config.n_references if n is None else n
        pool = [r for r in tree.list_designs() if r.status != "failed"]
        chosen = [r for r in pool if r.name in exclude]
        candidates = [r for r in pool if r.name not in exclude]
        if n <= 0 or not candidates:
            return []
        est = self._parent_estimates(tree, candidates)
        first = self._partner([r.name for r in candidates], est, exclude=())
        picked = [r for r in candidates if r.name == first]
        candidates = [r for r in candidates if r.name != first]
        while candidates and len(picked) < n:
            best = self._next_reference(candidates, chosen + picked)
            picked.append(best)
            candidates.remove(best)
        return picked

    def _next_reference(self, candidates: list[DesignRecord], chosen: list[DesignRecord]) -> DesignRecord:
        sets = [_unit_set(c) for c in chosen]
        return max(candidates, key=lambda r: min((_jaccard_distance(_unit_set(r), s) for s in sets), default=1.0))

    # -- verifications ----------------------------------------------------------------------
    def budget(self, tree: EvolutionTree, budgets: Budget | Mapping[str, int] | None = None) -> Budget:
        if isinstance(budgets, Budget):
            return budgets
        return Budget.from_tree(tree, {**self.config.budgets, **(budgets or {})}, self.config.scales)

    def _order_new(self, tree: EvolutionTree, recs: list[DesignRecord]) -> list[DesignRecord]:
        """Lowest-rung order: the baseline, then seeds, then the surrogate's ranking (its
        pre-screen: with a binding budget only the best-predicted get verified)."""
        first = [r for r in recs if r.name == self.config.baseline] + [r for r in recs if r.is_seed
                                                                      and r.name != self.config.baseline]
        rest = [r for r in recs if r not in first]
        ranks = self.surrogate(tree).rank([design_features(r.design, r.operator) for r in rest], self.rng)
        return first + [rest[i] for i in ranks]

    def _replicate_order(self, finished: dict[str, float], done: set[str], est: Mapping[str, Estimate],
                         seeds: Collection[str]) -> list[str]:
        """Designs of a rung to give replicate seeds now: the top 1/eta that could still be the best."""
        if not self.policy.noise_model or self.policy.min_seeds <= 1:
            return []
        return replicate_candidates(finished, done, est, self.policy, seeds)

    def _promotion_order(self, finished: dict[str, float], done: set[str]) -> list[str]:
        """Designs to move up from the rung below: the top 1/eta by lower bound (ASHA)."""
        return promotions(finished, done, self.policy.eta)

    def select_verifications(self, tree: EvolutionTree, budgets: Budget | Mapping[str, int] | None = None,
                             owner: str | None = None, limit: int | None = None) -> list[VerifyPick]:
        """Verifications to run now, within every rung's remaining budget (in training runs).

        At each rung: replicate seeds for its promising designs, then promotions from the rung
        below (the baseline first), then (lowest rung) every new design. With ``owner``, each pick
        is claimed in the tree (bounded by the budget) and only the picks won are returned, so
        many nodes can call this at once.
        """
        budget = self.budget(tree, budgets)
        designs = {r.name: r for r in tree.list_designs()}
        results = tree.results()
        busy = {(l.design, l.scale) for l in tree.leases(live_only=True)}
        picks: list[VerifyPick] = []
        scales = [s for s in self.config.scales if s in budget.limits]
        spent = {s: tree.spent(s) for s in scales}
        need = self.policy.min_seeds if self.policy.noise_model else 1
        for i, scale in enumerate(scales):
            room = budget.limit(scale) - spent[scale]
            if i > 0 and self.config.pacing is not None:
                room = min(room, math.floor(self.config.pacing * spent[scales[i - 1]]) - spent[scale])
            here = {r.design: r for r in results if r.scale == scale}
            ok = {n: r for n, r in here.items() if r.status == "ok" and r.fitness is not None
                  and designs.get(n) is not None and designs[n].status != "failed"}
            order: list[VerifyPick] = []
            # replicate seeds for the best single-seed designs of this rung
            # (not the baseline: its noise moves every fitness alike and changes no ranking)
            single = {n: r.fitness for n, r in ok.items() if n != self.config.baseline}  # type: ignore[misc]
            done = {n for n, r in ok.items() if r.seeds >= need} | {n for n in ok if (n, scale) in busy}
            seeds = {n for n, r in designs.items() if r.is_seed}
            ups = self._replicate_order(single, done, self.estimates(tree, scale), seeds)
            bar = max((n for n in single if n in seeds), key=lambda n: single[n], default=None)
            if bar is not None and any(n not in seeds and ok[n].seeds >= need for n in ok):
                ups = [bar] + [n for n in ups if n != bar]  # a claim needs the best seed's mean on min_seeds
            for n in ups:
                if ok[n].seeds < need and (n, scale) not in busy:
                    order.append(VerifyPick(n, scale, need - ok[n].seeds, ok[n].seeds))
            if i == 0:
                pool = [r for r in designs.values() if r.status in ("checked", "verified")
                        and r.name not in here and (r.name, scale) not in busy]
                order += [VerifyPick(r.name, scale) for r in self._order_new(tree, pool)]
            else:
                below = scales[i - 1]
                est = self.estimates(tree, below)
                ready = {n: e.lcb(self.policy.z) for n, e in est.items() if e.n >= need
                         and designs.get(n) is not None and designs[n].status != "failed"}
                moved = {n for n in ready if n in here or (n, scale) in busy}
                ups = self._promotion_order(ready, moved)
                if self.config.baseline in est and self.config.baseline not in moved:
                    ups = [self.config.baseline] + [n for n in ups if n != self.config.baseline]
                order += [VerifyPick(n, scale) for n in ups if n not in here and (n, scale) not in busy]
            for pick in order:
                if limit is not None and len(picks) >= limit:
                    break
                if room < pick.seeds:  # does not fit what is left; a smaller pick after it may
                    continue
                if owner is not None and not tree.claim_verification(
                        pick.design, pick.scale, owner, self.config.lease_ttl_s, budget=budget.limit(scale),
                        seeds=pick.seeds, replicate=pick.replicate):
                    continue
                picks.append(pick)
                room -= pick.seeds
                spent[scale] += pick.seeds
        return picks

    # -- what a run found -------------------------------------------------------------------
    def best(self, tree: EvolutionTree, scale: str) -> tuple[str | None, str | None]:
        """(recommended design, confirmed best or None) at ``scale``.

        Confirmed: a non-seed design with enough seeds whose lower bound beats the best seed's mean.
        """
        est = self.estimates(tree, scale)
        seeds = [r.name for r in tree.list_designs() if r.is_seed]
        return recommend(est, self.policy), confirmed_best(est, seeds, self.policy, exact=[self.config.baseline])


class RandomSelector(Selector):
    """Same interface, uniform random choices, no noise model: parents, references, what moves up."""

    random_choices = True

    def __init__(self, config: SelectorConfig | None = None) -> None:
        config = config or SelectorConfig()
        super().__init__(config.model_copy(update={"policy": config.policy.model_copy(
            update={"noise_model": False, "surrogate": False})}))

    def _first_parent(self, names: list[str], seeds: list[str], est: Mapping[str, Estimate | None], step: int) -> str:
        return self.rng.choice(names)

    def _partner(self, names: list[str], est: Mapping[str, Estimate | None], exclude: Sequence[str]) -> str | None:
        rest = [n for n in names if n not in set(exclude)]
        return self.rng.choice(rest) if rest else None

    def _next_reference(self, candidates: list[DesignRecord], chosen: list[DesignRecord]) -> DesignRecord:
        return self.rng.choice(candidates)

    def _order_new(self, tree: EvolutionTree, recs: list[DesignRecord]) -> list[DesignRecord]:
        recs = list(recs)
        self.rng.shuffle(recs)
        return recs

    def _promotion_order(self, finished: dict[str, float], done: set[str]) -> list[str]:
        names = [n for n in finished if n not in done]
        self.rng.shuffle(names)
        return names
