"""What the kernel sandbox adds to a design check: every seed checked with and without it.

    .venv/bin/python benchmarks/check_time.py [--scale micro] [--seeds gpt2,llama] [--repeats 2]

Each seed is checked ``--repeats`` times under the kernel sandbox (bubblewrap namespaces +
seccomp, the default) and as often with ``MODIS_SANDBOX=hooks-only`` (the same two sandboxed
processes, export and judge, without the kernel layer), interleaved so drift hits both alike.
The difference per seed is what the sandbox adds (target: at most 1 s). The startup cost of one
sandboxed process is measured apart with a trivial target. The GPT-2 reference figures are
measured once first. Last line:
``check_time: sandbox_added_s=<mean> kernel_s=<mean> hooks_only_s=<mean> startup_added_s=<x> n=<checks>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from model_discovery.check import SandboxLimits, reference_figures, run_checks, run_sandboxed
from model_discovery.check.isolation import ENV_SWITCH
from model_discovery.gau import get_scale, list_seeds, load_seed


def _mode(kernel: bool) -> None:
    os.environ[ENV_SWITCH] = "kernel" if kernel else "hooks-only"


def _startup(kernel: bool, n: int = 5) -> list[float]:
    _mode(kernel)
    times = []
    for _ in range(n):
        out = run_sandboxed("model_discovery.check.probe:echo", {"x": 1}, SandboxLimits(wall_time_s=60))
        assert out.ok, out.error
        times.append(out.wall_s)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="micro")
    parser.add_argument("--seeds", default="", help="comma-separated seed names (default: all)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    scale = get_scale(args.scale)
    seeds = [s for s in args.seeds.split(",") if s] or list_seeds()
    ref = reference_figures(scale)

    k_start, h_start = _startup(True), _startup(False)
    startup_added = statistics.fmean(k_start) - statistics.fmean(h_start)
    print(f"one sandboxed process: kernel {statistics.fmean(k_start):.2f} s, hooks-only "
          f"{statistics.fmean(h_start):.2f} s (mean of {len(k_start)}); added {startup_added:+.2f} s\n")
    print(f"{'seed':<10} {'kernel_s':>9} {'hooks_s':>9} {'added_s':>8} {'export_s':>9} {'judge_s':>8} {'causal_s':>9}")
    kernel_all, hooks_all, added_all = [], [], []
    for seed in seeds:
        design = load_seed(seed)
        k, h, export, judge, causal = [], [], [], [], []
        for _ in range(args.repeats):
            for kernel in (True, False):
                _mode(kernel)
                t0 = time.perf_counter()
                report = run_checks(design, scale, reference=ref)
                wall = time.perf_counter() - t0
                if not report.passed:
                    print(f"{seed}: check failed: {report.first_error}")
                    return 1
                (k if kernel else h).append(wall)
                if kernel:
                    export.append(sum(c.seconds for c in report.checks if c.name in ("build", "export")))
                    judge.append(sum(c.seconds for c in report.checks
                                     if c.name not in ("parse", "classes", "slots", "imports", "compile",
                                                       "build", "export")))
                    causal.append(report.get("causality").seconds)
        added = statistics.fmean(k) - statistics.fmean(h)
        kernel_all += k
        hooks_all += h
        added_all.append(added)
        print(f"{seed:<10} {statistics.fmean(k):>9.2f} {statistics.fmean(h):>9.2f} {added:>+8.2f} "
              f"{statistics.fmean(export):>9.2f} {statistics.fmean(judge):>8.2f} {statistics.fmean(causal):>9.2f}")
    _mode(True)
    print(f"\ncheck_time: sandbox_added_s={statistics.fmean(added_all):.3f} kernel_s={statistics.fmean(kernel_all):.2f} "
          f"hooks_only_s={statistics.fmean(hooks_all):.2f} startup_added_s={startup_added:.3f} n={len(kernel_all)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
