"""Discovery benchmark: design success rate (pass@k), designs/hour, best fitness vs the best seed,
and the evolutionary selector vs the random selector at an equal budget.

    .venv/bin/python benchmarks/discovery.py --steps 8 --seeds gpt2 llama gla mamba2

Both selectors run the same number of design steps from the same seeds with the same per-rung
verify budget, each in its own run directory (offline: symbolic agents, micro rung on CPU).
Fitness is relative to the gpt2 seed at the same rung (0 = as good as gpt2, higher is better).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from model_discovery.config import SystemConfig, VerifyOptions
from model_discovery.system import BuildSystem


def run(selector: str, args: argparse.Namespace, repeat: int) -> dict:
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
    finally:
        system.close()
    outcomes = report.outcomes
    committed = [o for o in outcomes if o.status == "committed"]
    pass_at = report.pass_at_k()
    seed_best = max((f for d, f in results.items() if d in seeds), default=None)
    new_best = max((f for d, f in results.items() if d not in seeds), default=None)
    return {"selector": selector, "repeat": repeat, "steps": len(outcomes), "committed": len(committed),
            "failed_checks": sum(o.status == "failed" for o in outcomes),
            "rejected": sum(o.status == "rejected" for o in outcomes),
            "success_rate": len(committed) / max(len(outcomes), 1),
            "pass_at_k": pass_at, "designs_per_hour": len(committed) / (wall / 3600), "wall_s": wall,
            "verified": len(report.verified), "best_seed_fitness": seed_best, "best_new_fitness": new_best,
            "best_new_design": max(((d, f) for d, f in results.items() if d not in seeds),
                                   key=lambda x: x[1], default=(None, None))[0]}


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=1, help="independent runs per selector (seed, seed+1, ...)")
    ap.add_argument("--seeds", nargs="+", default=["gpt2", "llama", "gla", "mamba2"])
    ap.add_argument("--budget", type=int, default=100, help="verify budget at micro (per run)")
    ap.add_argument("--train-tokens", type=int, default=150_000)
    ap.add_argument("--eval", action="store_true", help="also run lm-eval local tasks (bits-per-byte)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench_discovery")
    ap.add_argument("--selectors", nargs="+", default=["evolutionary", "random"])
    args = ap.parse_args()
    rows = [run(s, args, r) for r in range(args.repeats) for s in args.selectors]
    print(f"discovery benchmark: {args.steps} steps x {args.repeats} runs per selector, seeds "
          f"{', '.join(args.seeds)}, micro rung, {args.train_tokens} train tokens per verification")
    print(f"{'selector':<13}{'run':>4}{'ok/steps':>9}{'failed':>7}{'rejected':>9}{'designs/h':>10}"
          f"{'best seed':>10}{'best new':>10}{'gain':>8}  best new design")
    for r in rows:
        gain = (r["best_new_fitness"] - r["best_seed_fitness"]
                if r["best_new_fitness"] is not None and r["best_seed_fitness"] is not None else None)
        r["gain"] = gain
        fit = lambda x: "-" if x is None else f"{x:+.4f}"  # noqa: E731
        print(f"{r['selector']:<13}{r['repeat']:>4}{r['committed']:>5}/{r['steps']:<3}{r['failed_checks']:>7}"
              f"{r['rejected']:>9}{r['designs_per_hour']:>10.0f}{fit(r['best_seed_fitness']):>10}"
              f"{fit(r['best_new_fitness']):>10}{fit(gain):>8}  {r['best_new_design']}")
    for sel in args.selectors:
        mine = [r for r in rows if r["selector"] == sel]
        gains = [r["gain"] for r in mine if r["gain"] is not None]
        rate = _mean([r["success_rate"] for r in mine])
        passes = {k: _mean([r["pass_at_k"].get(k, 1.0) for r in mine]) for k in mine[0]["pass_at_k"]}
        print(f"{sel}: success rate {rate:.2f}, "
              + ", ".join(f"pass@{k} {v:.2f}" for k, v in passes.items())
              + f"; mean gain over best seed {_mean(gains):+.4f} over {len(gains)} runs; "
              f"{sum(g > 0 for g in gains)}/{len(gains)} runs beat the best seed")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
