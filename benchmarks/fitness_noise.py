"""Fitness noise: how much one design's fitness moves when only the training seed changes.

    .venv/bin/python benchmarks/fitness_noise.py --designs gpt2 llama gla mamba2 --seeds 4

Each design is verified at the micro rung once per seed (initialisation and batch order change;
data, recipe and evaluation do not), as a discovery run verifies it (sandboxed, lm-eval local
tasks, no probes). Fitness is taken against gpt2 trained with seed 0, as a run scores it. The
standard deviation over seeds is the noise floor under which a gain between two designs, or
between two selectors, is not evidence.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from model_discovery.gau import load_seed
from model_discovery.select.fitness import fitness
from model_discovery.verify import VerifyResult, verify_design


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--designs", nargs="+", default=["gpt2", "llama", "gla", "mamba2"])
    ap.add_argument("--seeds", type=int, default=4, help="training seeds per design (0..N-1)")
    ap.add_argument("--train-tokens", type=int, default=150_000)
    ap.add_argument("--out", default="runs/bench_fitness_noise")
    args = ap.parse_args()
    out = Path(args.out)
    records: dict[str, list[VerifyResult]] = {}
    t0 = time.perf_counter()
    for name in args.designs:
        for seed in range(args.seeds):
            rec = verify_design(load_seed(name), "micro", out / f"{name}-s{seed}", eval=True, probes=False,
                                wandb=False, train_overrides={"train_tokens": args.train_tokens}, seed=seed)
            if not rec.ok:
                raise SystemExit(f"{name} seed {seed}: {rec.error}")
            records.setdefault(name, []).append(rec)
    if "gpt2" not in records:
        raise SystemExit("gpt2 must be among --designs: fitness is relative to it")
    base = records["gpt2"][0]
    print(f"fitness noise: micro rung, {args.train_tokens:,} train tokens, seeds 0..{args.seeds - 1}, "
          f"fitness against gpt2 seed 0 ({time.perf_counter() - t0:.0f} s)")
    print(f"{'design':<10}{'mean':>9}{'std':>8}{'min':>9}{'max':>9}   per seed")
    rows = {}
    for name, recs in records.items():
        fits = [fitness(r, base) for r in recs]
        std = statistics.stdev(fits) if len(fits) > 1 else 0.0
        rows[name] = {"fitness": fits, "mean": statistics.fmean(fits), "std": std}
        print(f"{name:<10}{rows[name]['mean']:>+9.4f}{std:>8.4f}{min(fits):>+9.4f}{max(fits):>+9.4f}   "
              + " ".join(f"{f:+.4f}" for f in fits))
    pooled = statistics.fmean(r["std"] ** 2 for r in rows.values()) ** 0.5
    print(f"pooled std over seeds: {pooled:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"pooled_std": pooled, "designs": rows}, indent=2))


if __name__ == "__main__":
    main()
