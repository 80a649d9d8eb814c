"""Selector replay: search strategies compared on the tabulated neighbourhood, many times over.

    .venv/bin/python benchmarks/selector_replay.py                 # held-out streams 1000..1099
    .venv/bin/python benchmarks/selector_replay.py --repeats 200 --budget 30 60

The world is the table of ``benchmarks/replay/`` (see its ``build.py``): designs, the operator
edges between them and each design's validation loss per training seed at the short, half and
full micro fidelity. Fitness is relative to the gpt2 seed's mean at the same fidelity, as a run
scores it; a design's true value is its mean full fitness over all its seeds, and the table's
best is the highest true value.

Each replayed search starts from the seed designs and spends a budget counted in full micro
runs (a short run costs 0.25, continuing it to full 0.75, each replicate seed 1). A design step
takes a parent, draws children of it from the table's edges (a proposal outside the table is
redrawn), and verifies one. What a verification observes is one stored seed of that design,
drawn at random per (repeat, design), so every strategy in a repeat sees the same noise for the
same design (paired streams). The strategies run the rules of :mod:`model_discovery.select.policy`:

- ``random``: uniform parents and children, every design trained once at full, best single
  value recommended (what :class:`RandomSelector` does live);
- ``evolutionary``: Thompson parents, a surrogate pre-screen of ``candidates`` children (the
  first of the Thompson parent, the others of uniformly drawn parents), successive halving to
  replicates once ``replicate_after`` new designs are in, lower-bound recommendation (what
  :class:`Selector` and the design flow do live);
- ablations: ``random+sh`` (random parents and children, the same promotion and
  recommendation), ``evo-nosurrogate``, ``evo-nonoise`` (point estimates, no replicates),
  ``evo+short`` (a short run first), ``evo-replicate-top`` (all of the top 1/eta replicated),
  ``evo-replicate-now`` (replicates from the first result on), ``evo-one-family`` (four
  candidates, all children of the step's parent).

Printed per strategy and budget: final regret of the recommended design (median, IQR),
P(regret < 0.01), verifications and tokens until the recommendation is within 0.01 of the
table's best (median), and a one-sided paired Wilcoxon test of final regret against random.
The last line is machine-readable.

The streams default to 1000.. (held out); the strategies' settings were chosen on streams 0..39.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import multiprocessing as mp
import random
import statistics
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

from model_discovery.gau import Design
from model_discovery.select.policy import (Estimate, PolicyConfig, Surrogate, choose_parent, estimate, promotions,
                                           recommend, replicate_candidates, spearman)
from model_discovery.select.predictor import design_features

TABLE_DIR = Path(__file__).resolve().parent / "replay"
COST = {"short": 0.25, "full": 1.0}
WITHIN = 0.01


# -- the world ---------------------------------------------------------------------------------
@dataclass
class World:
    names: list[str]                       # design fingerprints
    label: dict[str, str]                  # fingerprint -> design name
    seeds: list[str]                       # seed designs (generation 0)
    children: dict[str, list[str]]         # operator edges
    values: dict[str, dict[str, list[float]]]  # fp -> fidelity -> fitness per seed (seed order)
    features: dict[str, list[str]]
    truth: dict[str, float] = field(default_factory=dict)

    @property
    def best(self) -> float:
        return max(self.truth.values())


def load_world(folder: Path) -> World:
    with gzip.open(folder / "designs.jsonl.gz", "rt") as fh:
        rows = {r["fingerprint"]: r for r in map(json.loads, fh)}
    losses: dict[str, dict[str, dict[int, float]]] = {}
    with open(folder / "table.csv") as fh:
        for r in csv.DictReader(fh):
            losses.setdefault(r["fingerprint"], {}).setdefault(r["fidelity"], {})[int(r["seed"])] = float(r["val_loss"])
    n_seeds = max(len(v.get("full", {})) for v in losses.values())
    complete = [fp for fp in rows if fp in losses and len(losses[fp].get("full", {})) == n_seeds]
    gpt2 = next(fp for fp in complete if rows[fp]["name"] == "gpt2")
    base = {fid: statistics.fmean(losses[gpt2][fid].values()) for fid in losses[gpt2]}
    values = {fp: {fid: [(base[fid] - losses[fp][fid][s]) / base[fid] for s in sorted(losses[fp][fid])]
                   for fid in losses[fp]} for fp in complete}
    keep = set(complete)
    children: dict[str, list[str]] = {fp: [] for fp in complete}
    with open(folder / "edges.csv") as fh:
        for e in csv.DictReader(fh):
            if e["parent"] in keep and e["child"] in keep and e["child"] not in children[e["parent"]]:
                children[e["parent"]].append(e["child"])
    world = World(names=complete, label={fp: rows[fp]["name"] for fp in complete},
                  seeds=[fp for fp in complete if rows[fp]["generation"] == 0], children=children, values=values,
                  features={fp: design_features(Design.model_validate(rows[fp]["design"]), rows[fp]["operator"])
                            for fp in complete})
    world.truth = {fp: statistics.fmean(values[fp]["full"]) for fp in complete}
    return world


# -- strategies --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Strategy:
    name: str
    random_parents: bool = False
    stages: tuple[str, ...] = ("full", "replicates")
    policy: PolicyConfig = field(default_factory=PolicyConfig)


def strategies(noise_sd: float) -> dict[str, Strategy]:
    base = PolicyConfig(noise_sd=noise_sd)
    point = base.model_copy(update={"noise_model": False, "surrogate": False, "candidates": 1})
    return {s.name: s for s in [
        Strategy("random", random_parents=True, stages=("full",), policy=point),
        Strategy("evolutionary", policy=base),
        Strategy("random+sh", random_parents=True, policy=base.model_copy(update={"surrogate": False,
                                                                                 "candidates": 1})),
        Strategy("evo-nosurrogate", policy=base.model_copy(update={"surrogate": False, "candidates": 1})),
        Strategy("evo-nonoise", stages=("full",), policy=base.model_copy(update={"noise_model": False})),
        Strategy("evo+short", stages=("short", "full", "replicates"), policy=base),
        Strategy("evo-replicate-top", policy=base.model_copy(update={"replicate": "top"})),
        Strategy("evo-replicate-now", policy=base.model_copy(update={"replicate_after": 0})),
        Strategy("evo-one-family", policy=base.model_copy(update={"explore": 0.0, "candidates": 4})),
    ]}


@dataclass
class Trace:
    verifications: list[int] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    regret: list[float] = field(default_factory=list)

    def at_budget(self, budget: float) -> float:
        """Regret of the recommendation when ``budget`` full runs had been spent."""
        last = math.inf
        for t, r in zip(self.tokens, self.regret):
            if t > budget + 1e-9:
                break
            last = r
        return last

    def first_within(self, eps: float) -> tuple[float, float]:
        """(verifications, tokens) when the recommendation first came within ``eps`` (inf: never)."""
        for v, t, r in zip(self.verifications, self.tokens, self.regret):
            if r < eps:
                return float(v), t
        return math.inf, math.inf


class Replay:
    """One replayed search of one strategy on one stream."""

    def __init__(self, world: World, strategy: Strategy, stream: int) -> None:
        self.w, self.s, self.cfg = world, strategy, strategy.policy
        self.rng = random.Random(f"{strategy.name}:{stream}")
        self.stream = stream
        self.known: dict[str, None] = {}  # designs proposed so far, in order (a dict: fast membership)
        self.obs: dict[str, dict[str, list[float]]] = {}  # fp -> fidelity -> observed values
        self.est: dict[str, Estimate] = {}                # fp -> estimate at full
        self.stage: dict[str, int] = {}                   # fp -> stages finished
        self.promoted: dict[int, set[str]] = {}
        self.surrogate = Surrogate(self.cfg)
        self.trace = Trace()
        self.spent = 0.0
        self.verifs = 0
        self.steps = 0

    def seed_order(self, fp: str) -> list[int]:
        """The order in which this design's stored seeds are observed: the same for every strategy."""
        order = list(range(len(self.w.values[fp]["full"])))
        random.Random(zlib.crc32(f"{self.stream}:{fp}".encode())).shuffle(order)
        return order

    # observation
    def run_stage(self, fp: str) -> None:
        name = self.s.stages[self.stage.get(fp, 0)]
        order = self.seed_order(fp)
        vals = self.w.values[fp]
        got = self.obs.setdefault(fp, {})
        if name == "short":
            got["short"] = [vals["short"][order[0]]]
            self.spent += COST["short"]
            self.verifs += 1
        elif name == "full":
            got["full"] = [vals["full"][order[0]]]
            self.spent += COST["full"] - (COST["short"] if "short" in got else 0.0)
            self.verifs += 1
            self.surrogate.observe(self.w.features[fp], got["full"][0], scored=fp not in self.w.seeds)
        else:  # replicates: the remaining seeds at full
            extra = [vals["full"][i] for i in order[1:self.cfg.min_seeds]]
            got["full"] = got["full"] + extra
            self.spent += len(extra) * COST["full"]
            self.verifs += len(extra)
        if got.get("full"):
            self.est[fp] = estimate(got["full"], self.cfg.noise_sd, self.cfg.prior_weight)
        self.stage[fp] = self.stage.get(fp, 0) + 1
        self.record()

    def estimates(self) -> dict[str, Estimate]:
        return self.est

    def record(self) -> None:
        rec = recommend(self.estimates(), self.cfg)
        regret = self.w.best - self.w.truth[rec] if rec is not None else math.inf
        self.trace.verifications.append(self.verifs)
        self.trace.tokens.append(self.spent)
        self.trace.regret.append(regret)

    # decisions
    def next_promotion(self) -> str | None:
        for k in range(len(self.s.stages) - 1):
            fid = "short" if self.s.stages[k] == "short" else "full"
            finished = {fp: statistics.fmean(self.obs[fp][fid]) for fp, done in self.stage.items() if done > k}
            promoted = self.promoted.setdefault(k, set())
            if self.s.stages[k + 1] == "replicates":
                ups = replicate_candidates(finished, promoted, self.est, self.cfg, self.w.seeds)
            else:
                ups = promotions(finished, promoted, self.cfg.eta)
            ups = [fp for fp in ups if self.stage.get(fp, 0) == k + 1]
            if ups:
                self.promoted[k].add(ups[0])
                return ups[0]
        return None

    def parent_estimates(self) -> dict[str, Estimate | None]:
        est: dict[str, Estimate | None] = dict(self.estimates())
        for fp in self.known:
            if fp not in est:
                est[fp] = self.surrogate.prior(self.w.features[fp]) if len(self.surrogate.model) >= 3 else None
        return est

    def design_step(self) -> str | None:
        """A new design to verify, or None when the world has nothing left to propose."""
        pool = [fp for fp in self.known if any(c not in self.obs and c not in self.known for c in self.w.children[fp])]
        if not pool:
            return None
        est = None if self.s.random_parents else self.parent_estimates()
        seeds = [s for s in self.w.seeds if s in pool]

        def child(explore: bool) -> str | None:
            """A fresh child of a parent drawn as the live selector draws it."""
            if est is None or explore:
                parent = self.rng.choice(pool)
            else:
                parent = choose_parent(pool, seeds, est, self.steps, self.cfg, self.rng)
            fresh = [c for c in self.w.children[parent] if c not in self.known and c not in cands]
            return self.rng.choice(fresh) if fresh else None

        cands: list[str] = []
        for i in range(self.cfg.candidates):  # the step's parents, then explore-share uniform ones
            c = child(i > 0 and self.rng.random() < self.cfg.explore)
            if c is not None:
                cands.append(c)
        self.steps += 1
        if not cands:
            return None
        if self.cfg.surrogate:
            cands = [cands[i] for i in self.surrogate.rank([self.w.features[c] for c in cands], self.rng)]
        return cands[0]

    def run(self, budget: float) -> Trace:
        queue = list(self.w.seeds)
        self.rng.shuffle(queue)
        self.known = dict.fromkeys(queue)
        while self.spent < budget:
            if queue:
                fp = queue.pop(0)
            else:
                fp = self.next_promotion()
                if fp is None:
                    fp = self.design_step()
                    if fp is None:
                        break
                    self.known[fp] = None
            self.run_stage(fp)
        return self.trace


_WORLD: World | None = None


def _init(folder: str) -> None:
    global _WORLD
    _WORLD = load_world(Path(folder))


def _job(job: tuple[Strategy, int, float]) -> tuple[str, int, Trace]:
    assert _WORLD is not None
    strategy, stream, budget = job
    return strategy.name, stream, Replay(_WORLD, strategy, stream).run(budget)


# -- report ------------------------------------------------------------------------------------
def _q(xs: list[float], q: float) -> float:
    finite = sorted(xs)
    return float(np.quantile(finite, q)) if finite else math.nan


def _fmt(x: float, spec: str = ".1f") -> str:
    return "never" if math.isinf(x) else format(x, spec)


def fidelity_rho(world: World, a: str, b: str) -> float:
    fps = [fp for fp in world.names if a in world.values[fp] and b in world.values[fp]]
    return spearman([statistics.fmean(world.values[fp][a]) for fp in fps],
                    [statistics.fmean(world.values[fp][b]) for fp in fps])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default=str(TABLE_DIR))
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--stream-offset", type=int, default=1000, help="first stream (0..39 were used for tuning)")
    ap.add_argument("--budget", type=float, nargs="+", default=[20.0, 40.0, 80.0],
                    help="budgets in full micro runs; the last one is the headline")
    ap.add_argument("--strategies", nargs="+", default=None)
    ap.add_argument("--noise-sd", type=float, default=None, help="default: pooled seed spread of the table")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    world = load_world(Path(args.table))
    full_sd = math.sqrt(statistics.fmean(statistics.variance(world.values[fp]["full"]) for fp in world.names))
    noise_sd = args.noise_sd if args.noise_sd is not None else full_sd
    strats = strategies(noise_sd)
    chosen = args.strategies or list(strats)
    if "random" not in chosen:
        chosen = ["random"] + chosen
    horizon = max(args.budget)
    jobs = [(strats[name], args.stream_offset + r, horizon) for r in range(args.repeats) for name in chosen]
    with mp.get_context("fork").Pool(args.workers, initializer=_init, initargs=(args.table,)) as pool:
        out = pool.map(_job, jobs, chunksize=8)
    traces: dict[str, dict[int, Trace]] = {}
    for name, stream, trace in out:
        traces.setdefault(name, {})[stream] = trace

    n_within = sum(world.best - v < WITHIN for v in world.truth.values())
    best_fp = max(world.truth, key=world.truth.get)
    seed_best = max(world.truth[s] for s in world.seeds)
    print(f"selector replay: {len(world.names)} designs, {sum(map(len, world.children.values()))} edges, "
          f"{len(world.seeds)} seeds; {args.repeats} repeats (streams {args.stream_offset}.."
          f"{args.stream_offset + args.repeats - 1}); noise sd {noise_sd:.4f} (pooled over seeds at full)")
    print(f"table best {world.label[best_fp]} {world.best:+.4f} (best seed {seed_best:+.4f}); "
          f"{n_within} designs within {WITHIN} of it")
    rho_short = fidelity_rho(world, "short", "full")
    rho_half = fidelity_rho(world, "half", "full")
    print(f"fidelity rank correlation (Spearman of seed means): short~full {rho_short:+.3f}, half~full {rho_half:+.3f}")
    streams = sorted(traces["random"])
    summary: dict[str, dict] = {}
    for budget in args.budget:
        print(f"\nbudget {budget:g} full micro runs")
        print(f"{'strategy':<17}{'regret median':>14}{'IQR':>18}{'P(<0.01)':>10}{'verifs to 0.01':>16}"
              f"{'tokens to 0.01':>16}{'p vs random':>13}")
        base = [traces["random"][s].at_budget(budget) for s in streams]
        for name in chosen:
            reg = [traces[name][s].at_budget(budget) for s in streams]
            hits = [traces[name][s].first_within(WITHIN) for s in streams]
            ver = [h[0] if h[1] <= budget else math.inf for h in hits]
            tok = [h[1] if h[1] <= budget else math.inf for h in hits]
            if name == "random":
                p = math.nan
            else:
                diff = np.asarray(reg) - np.asarray(base)
                p = float(wilcoxon(diff, alternative="less").pvalue) if np.any(diff != 0) else 1.0
            med_v, med_t = statistics.median(ver), statistics.median(tok)
            summary.setdefault(name, {})[budget] = {"regret": reg, "verifs": med_v, "tokens": med_t, "p": p}
            print(f"{name:<17}{statistics.median(reg):>14.4f}   [{_q(reg, .25):.4f}, {_q(reg, .75):.4f}]"
                  f"{sum(r < WITHIN for r in reg) / len(reg):>10.2f}{_fmt(med_v):>16}{_fmt(med_t):>16}"
                  f"{'' if math.isnan(p) else f'{p:.2g}':>13}")
    head = summary.get("evolutionary", {}).get(horizon)
    rnd = summary["random"][horizon]
    ratio = head["verifs"] / rnd["verifs"] if head and rnd["verifs"] not in (0, math.inf) else math.nan
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    print(f"selector_replay: verif_ratio={ratio:.3f} p={head['p'] if head else math.nan:.3g} "
          f"rho={rho_short:.3f} designs={len(world.names)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
