"""Discovery benchmark: design success rate (pass@k), designs/hour, best fitness vs the best seed,
and the evolutionary selector vs the random selector at an equal budget.

    .venv/bin/python benchmarks/discovery.py --steps 8 --seeds gpt2 llama gla mamba2

Both selectors run the same number of design steps from the same seeds with the same per-rung
verify budget, each in its own run directory (offline: symbolic agents, micro rung on CPU).
Fitness is relative to the gpt2 seed at the same rung (0 = as good as gpt2, higher is better).

The budget is counted in training runs and binds (``--budget``, default 14 micro runs for 8
steps): the selectors must choose what to verify. The best of many noisy verifications is
biased upwards, so each run's recommended new design (the selector's own rule: lower bound with
replicates for the evolutionary selector, best single value for random), the best seed and gpt2
are then verified again with ``--confirm-seeds`` fresh training seeds; the *confirmed gain*
(difference of means over those seeds, with a Welch t-based 95 % interval) is the number to
compare.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

from scipy import stats

from model_discovery.config import SystemConfig
from model_discovery.gau import Design, load_seed
from model_discovery.records import VerifyOptions
from model_discovery.select.fitness import fitness, per_seed
from model_discovery.select.policy import recommend
from model_discovery.system import BuildSystem
from model_discovery.verify import VerifyResult, verify_design

CONFIRM_SEED = 1000  # confirmation seeds start here: never used by the runs themselves


def run(selector: str, args: argparse.Namespace, repeat: int) -> tuple[dict, Design | None]:
    run_dir = Path(args.out) / f"{selector}-{repeat}"
    cfg = SystemConfig(run_dir=run_dir, seeds=args.seeds, steps=args.steps, selector=selector,
                       seed=args.seed + repeat,
                       budgets={"micro": args.budget},
                       verify=VerifyOptions(eval=args.eval, probes=False, wandb=False, train_tokens=args.train_tokens))
    system = BuildSystem(cfg)
    t0 = time.perf_counter()
    try:
        report = system(f"benchmark ({selector})", progress=False)
        wall = time.perf_counter() - t0
        seeds = set(args.seeds)
        results = {r.design: r.fitness for r in system.tree.results(scale="micro") if r.fitness is not None}
        est = system.selector.estimates(system.tree, "micro")
        best_name = recommend({d: e for d, e in est.items() if d not in seeds}, system.selector.policy)
        best_design = system.tree.get_design(best_name).design if best_name else None
    finally:
        system.close()
    outcomes = report.outcomes
    committed = [o for o in outcomes if o.status == "committed"]
    pass_at = report.pass_at_k()
    seed_best = max((f for d, f in results.items() if d in seeds), default=None)
    new_best = results.get(best_name) if best_name else None
    return {"selector": selector, "repeat": repeat, "steps": len(outcomes), "committed": len(committed),
            "failed_checks": sum(o.status == "failed" for o in outcomes),
            "rejected": sum(o.status == "rejected" for o in outcomes),
            "success_rate": len(committed) / max(len(outcomes), 1),
            "pass_at_k": pass_at, "designs_per_hour": len(committed) / (wall / 3600), "wall_s": wall,
            "verified": len(report.verified), "best_seed_fitness": seed_best, "best_new_fitness": new_best,
            "best_seed": max(((d, f) for d, f in results.items() if d in seeds), key=lambda x: x[1],
                             default=(None, None))[0],
            "best_new_design": best_name}, best_design


class Confirmer:
    """Verifies designs again with fresh training seeds; fitness per seed against gpt2's mean."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cache: dict[str, VerifyResult] = {}

    def record(self, design: Design) -> VerifyResult:
        key = design.fingerprint()
        if key not in self.cache:
            rec = verify_design(design, "micro", Path(self.args.out) / "confirm" / design.name, eval=self.args.eval,
                                probes=False, wandb=False, train_overrides={"train_tokens": self.args.train_tokens},
                                seed=CONFIRM_SEED, replicates=self.args.confirm_seeds)
            if not rec.ok:
                raise SystemExit(f"confirmation of {design.name} failed: {rec.error}")
            self.cache[key] = rec
        return self.cache[key]

    def fitnesses(self, design: Design) -> list[float]:
        base = self.record(load_seed("gpt2"))
        return [fitness(m, base) for m in per_seed(self.record(design))]

    def gain(self, new: Design, seed: str) -> tuple[float, float, float]:
        """(mean gain of ``new`` over seed design ``seed``, its standard error, the half-width of
        its Welch t-based 95 % interval)."""
        a, b = self.fitnesses(new), self.fitnesses(load_seed(seed))
        va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
        se = math.sqrt(va + vb)
        dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb > 0 else len(a) + len(b) - 2
        return statistics.fmean(a) - statistics.fmean(b), se, float(stats.t.ppf(0.975, dof)) * se


def _confirmed(row: dict) -> str:
    if row.get("confirmed_gain") is None:
        return "-"
    g, h = row["confirmed_gain"], row["confirmed_ci"]
    return f"{g:+.4f} [{g - h:+.4f}, {g + h:+.4f}]"


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=1, help="independent runs per selector (seed, seed+1, ...)")
    ap.add_argument("--seeds", nargs="+", default=["gpt2", "llama", "gla", "mamba2"])
    ap.add_argument("--budget", type=int, default=14, help="training runs at micro per run (binds)")
    ap.add_argument("--train-tokens", type=int, default=150_000)
    ap.add_argument("--eval", action="store_true", help="also run lm-eval local tasks (bits-per-byte)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench_discovery")
    ap.add_argument("--selectors", nargs="+", default=["evolutionary", "random"])
    ap.add_argument("--confirm-seeds", type=int, default=3,
                    help="fresh training seeds to re-verify each run's best new design with (0: skip)")
    args = ap.parse_args()
    if args.confirm_seeds == 1:
        ap.error("--confirm-seeds must be 0 or at least 2 (a spread needs two seeds)")
    rows = []
    confirmer = Confirmer(args)
    for r in range(args.repeats):
        for s in args.selectors:
            row, best = run(s, args, r)
            row["confirmed_gain"] = row["confirmed_se"] = row["confirmed_ci"] = None
            if args.confirm_seeds and best is not None and row["best_seed"]:
                row["confirmed_gain"], row["confirmed_se"], row["confirmed_ci"] = confirmer.gain(best, row["best_seed"])
            rows.append(row)
    print(f"discovery benchmark: {args.steps} steps x {args.repeats} runs per selector, seeds "
          f"{', '.join(args.seeds)}, micro rung, {args.train_tokens} train tokens per verification")
    print(f"{'selector':<13}{'run':>4}{'ok/steps':>9}{'failed':>7}{'rejected':>9}{'designs/h':>10}"
          f"{'best seed':>10}{'best new':>10}{'gain':>8}{'confirmed gain [95% CI]':>28}  recommended new design")
    for r in rows:
        gain = (r["best_new_fitness"] - r["best_seed_fitness"]
                if r["best_new_fitness"] is not None and r["best_seed_fitness"] is not None else None)
        r["gain"] = gain
        fit = lambda x: "-" if x is None else f"{x:+.4f}"  # noqa: E731
        print(f"{r['selector']:<13}{r['repeat']:>4}{r['committed']:>5}/{r['steps']:<3}{r['failed_checks']:>7}"
              f"{r['rejected']:>9}{r['designs_per_hour']:>10.0f}{fit(r['best_seed_fitness']):>10}"
              f"{fit(r['best_new_fitness']):>10}{fit(gain):>8}{_confirmed(r):>28}  {r['best_new_design']}")
    for sel in args.selectors:
        mine = [r for r in rows if r["selector"] == sel]
        gains = [r["gain"] for r in mine if r["gain"] is not None]
        rate = _mean([r["success_rate"] for r in mine])
        passes = {k: _mean([r["pass_at_k"].get(k, 1.0) for r in mine]) for k in mine[0]["pass_at_k"]}
        print(f"{sel}: success rate {rate:.2f}, "
              + ", ".join(f"pass@{k} {v:.2f}" for k, v in passes.items())
              + f"; mean gain over best seed {_mean(gains):+.4f} over {len(gains)} runs; "
              f"{sum(g > 0 for g in gains)}/{len(gains)} runs beat the best seed")
        confirmed = [r["confirmed_gain"] for r in mine if r["confirmed_gain"] is not None]
        if confirmed:
            print(f"{sel}: confirmed gain {_mean(confirmed):+.4f} (mean over {len(confirmed)} runs; "
                  f"{args.confirm_seeds} fresh seeds each); "
                  f"{sum(r['confirmed_gain'] > r['confirmed_ci'] for r in mine if r['confirmed_gain'] is not None)}"
                  f"/{len(confirmed)} runs beat the best seed (95 % interval above 0)")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
