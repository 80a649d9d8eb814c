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


def run(selector: str, args: argparse.Namespace) -> dict:
    run_dir = Path(args.out) / selector
    cfg = SystemConfig(run_dir=run_dir, seeds=args.seeds, steps=args.steps, selector=selector, seed=args.seed,
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
    return {"selector": selector, "steps": len(outcomes), "committed": len(committed),
            "failed_checks": sum(o.status == "failed" for o in outcomes),
            "rejected": sum(o.status == "rejected" for o in outcomes),
            "success_rate": len(committed) / max(len(outcomes), 1),
            "pass_at_k": pass_at, "designs_per_hour": len(committed) / (wall / 3600), "wall_s": wall,
            "verified": len(report.verified), "best_seed_fitness": seed_best, "best_new_fitness": new_best,
            "best_new_design": max(((d, f) for d, f in results.items() if d not in seeds),
                                   key=lambda x: x[1], default=(None, None))[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--seeds", nargs="+", default=["gpt2", "llama", "gla", "mamba2"])
    ap.add_argument("--budget", type=int, default=100, help="verify budget at micro (per run)")
    ap.add_argument("--train-tokens", type=int, default=150_000)
    ap.add_argument("--eval", action="store_true", help="also run lm-eval local tasks (bits-per-byte)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench_discovery")
    ap.add_argument("--selectors", nargs="+", default=["evolutionary", "random"])
    args = ap.parse_args()
    rows = [run(s, args) for s in args.selectors]
    fmt = lambda x: "-" if x is None else (f"{x:+.4f}" if isinstance(x, float) else str(x))  # noqa: E731
    print(f"discovery benchmark: {args.steps} steps, seeds {', '.join(args.seeds)}, micro rung, "
          f"{args.train_tokens} train tokens per verification")
    keys = ["steps", "committed", "failed_checks", "rejected", "success_rate", "designs_per_hour", "wall_s",
            "verified", "best_seed_fitness", "best_new_fitness", "best_new_design"]
    print(f"{'':<20}" + "".join(f"{r['selector']:>24}" for r in rows))
    for k in keys:
        print(f"{k:<20}" + "".join(f"{fmt(r[k]):>24}" for r in rows))
    for r in rows:
        print(f"{r['selector']} pass@k: " + ", ".join(f"pass@{k}={v:.2f}" for k, v in r["pass_at_k"].items()))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
