"""Seconds per full design check (static, sandboxed export, the judge) on CPU at a scale, for every seed.

    .venv/bin/python benchmarks/check_speed.py [--scale micro] [--seeds gpt2,llama]

The GPT-2 reference figures are measured first (once) and reported separately, so the per-seed
times are what a check costs inside a long-running process. Target: under 30 s per design at
micro on two cores.
"""

from __future__ import annotations

import argparse
import time

from model_discovery.check import format_report, reference_figures, run_checks
from model_discovery.gau import get_scale, list_seeds, load_seed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="micro")
    parser.add_argument("--seeds", default="", help="comma-separated seed names (default: all)")
    parser.add_argument("--verbose", action="store_true", help="print every report table")
    args = parser.parse_args()
    scale = get_scale(args.scale)
    seeds = [s for s in args.seeds.split(",") if s] or list_seeds()

    start = time.perf_counter()
    ref = reference_figures(scale)
    print(f"reference gpt2 @ {scale.name}: {time.perf_counter() - start:.1f} s "
          f"(fwd+bwd {ref.fwd_bwd_ms:.1f} ms, train memory {ref.train_mem_bytes / 2**20:.1f} MiB)\n")
    names = ["build", "export", "params", "forward", "causality", "gradients", "speed_memory", "effectiveness"]
    print(f"{'seed':<10} {'total_s':>8} {'verdict':<7} " + " ".join(f"{n[:9]:>9}" for n in names) + "  slowdown")
    worst = 0.0
    for seed in seeds:
        report = run_checks(load_seed(seed), scale, reference=ref)
        worst = max(worst, report.total_seconds)
        cells = []
        for n in names:
            c = report.get(n)
            cells.append(f"{c.seconds:>9.2f}" if c else f"{'-':>9}")
        speed = report.get("speed_memory")
        slow = speed.figures.get("slowdown", "-") if speed else "-"
        print(f"{seed:<10} {report.total_seconds:>8.1f} {'pass' if report.passed else 'FAIL':<7} "
              + " ".join(cells) + f"  {slow}")
        if args.verbose or not report.passed:
            print(format_report(report) + "\n")
    print(f"\nslowest design check: {worst:.1f} s (target < 30 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
