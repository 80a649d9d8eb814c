"""Unit invention: pass rate of random generated units through the full sandboxed check at micro,
seconds per unit to generate and statically check, and the novel share of an offline discovery run.

    .venv/bin/python benchmarks/invent.py [--units 100] [--steps 30] [--seed 0] [--out runs/bench-invent]

1. ``--units`` random genomes (mixer or channel mixer, half each on average) are generated; each
   unit replaces the first unit of its role in the ``--base`` seed (llama) and the design goes
   through :func:`model_discovery.check.run_checks` at micro once (first try, no repair).
2. Generation plus the static checks (parse, classes, slots, imports, compile) are timed per unit
   over the same genomes (in process, no sandbox).
3. At the same time (the checks run in a thread; both wait on subprocesses), a ``--steps``-step
   offline discovery (symbolic agents, default operator weights, the given
   seeds, no verification budget so only design steps run) commits designs; the novel share is the
   fraction of committed designs holding a unit whose source (modulo renaming) is in no catalogue
   file.

The last line is ``invent: pass_rate=<x> n=<units tried> novel_share=<y>``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from model_discovery.agents.symbolic.draft import catalogue_keys
from model_discovery.agents.symbolic.source import source_key
from model_discovery.check import reference_figures, run_checks, static_checks
from model_discovery.config import SystemConfig
from model_discovery.gau import get_scale, load_seed
from model_discovery.genome.invent import genome_unit, with_unit
from model_discovery.genome.operators import GenomeEdit, random_genome
from model_discovery.records import Design, VerifyOptions
from model_discovery.system import BuildSystem


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson 95 % interval of a proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def designs(n: int, seed: int, base: str) -> list[Design]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        name, spec = genome_unit(GenomeEdit(random_genome(rng), "sample", "benchmark genome"))
        out.append(with_unit(load_seed(base), name, spec))
    return out


def static_seconds(n: int, seed: int, base: str) -> list[float]:
    """Seconds to generate one unit, place it, and run the static checks, per unit."""
    rng = random.Random(seed)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        name, spec = genome_unit(GenomeEdit(random_genome(rng), "sample", "benchmark genome"))
        results, source = static_checks(with_unit(load_seed(base), name, spec))
        times.append(time.perf_counter() - t0)
        if source is None:
            failed = next(r for r in results if not r.passed)
            print(f"  static check failed for {name}: {failed.message}")
    return times


def pass_rate(units: list[Design], out: Path) -> tuple[int, Counter[str]]:
    ref = reference_figures(get_scale("micro"))
    passed, kinds = 0, Counter()
    log = (out / "checks.jsonl").open("w")
    for i, design in enumerate(units):
        unit = next(n for n, u in design.units.items() if u.origin is not None)
        genome = design.units[unit].origin.genome  # type: ignore[union-attr]
        report = run_checks(design, "micro", reference=ref)
        passed += report.passed
        kind = genome["token_mixer"]["kind"] if genome["kind"] == "mixer" else genome["structure"]["kind"]  # type: ignore[index]
        kinds[f"{kind}:{'pass' if report.passed else 'fail'}"] += 1
        log.write(json.dumps({"unit": unit, "passed": report.passed, "error": report.first_error,
                              "seconds": report.total_seconds, "genome": genome}) + "\n")
        log.flush()
        print(f"  [{i + 1}/{len(units)}] {unit:<16} {'pass' if report.passed else 'FAIL'} "
              f"{report.total_seconds:6.1f} s {report.first_error or ''}", flush=True)
    return passed, kinds


def novel_share(args: argparse.Namespace, out: Path) -> tuple[int, int, dict]:
    cfg = SystemConfig(run_dir=out / "discovery", seeds=args.seeds, steps=args.steps, seed=args.seed,
                       budgets={"micro": 0}, verify=VerifyOptions(eval=False, probes=False, wandb=False))
    system = BuildSystem(cfg)
    t0 = time.perf_counter()
    try:
        report = system("benchmark: unit invention", progress=False)
        committed = [o for o in report.outcomes if o.status == "committed" and o.design]
        known = catalogue_keys()
        novel = 0
        ops: Counter[str] = Counter(o.operator or "?" for o in committed)
        for outcome in committed:
            design = system.tree.get_design(outcome.design).design  # type: ignore[arg-type]
            novel += any(source_key(u.source) not in known for u in design.units.values())
        stats = {"steps": len(report.outcomes), "committed": len(committed), "wall_s": time.perf_counter() - t0,
                 "statuses": dict(Counter(o.status for o in report.outcomes)), "operators": dict(ops)}
    finally:
        system.close()
    return novel, len(committed), stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=100)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base", default="llama", help="seed design the generated units are placed in")
    ap.add_argument("--seeds", nargs="+", default=["gpt2", "llama", "gla", "mamba2"])
    ap.add_argument("--out", default="runs/bench-invent")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    times = static_seconds(args.units, args.seed, args.base)
    print(f"generate + static check: {statistics.fmean(times):.3f} s/unit mean, median "
          f"{statistics.median(times):.3f}, max {max(times):.3f} over {len(times)} units (target < 1 s)", flush=True)

    units = designs(args.units, args.seed, args.base)
    with ThreadPoolExecutor(max_workers=1) as pool:  # checks and discovery both wait on subprocesses
        checked = pool.submit(pass_rate, units, out) if units else None
        disc = novel_share(args, out) if args.steps else None
        passed, kinds = checked.result() if checked else (0, Counter())

    rate, n = float("nan"), len(units)
    if units:
        rate = passed / n
        lo, hi = wilson(passed, n)
        print(f"full sandboxed check at micro, first try: {passed}/{n} pass = {rate:.3f} "
              f"(95% Wilson [{lo:.3f}, {hi:.3f}]; target >= 0.9)")
        print("  by primitive: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())), flush=True)

    share = float("nan")
    if disc is not None:
        novel, committed, stats = disc
        share = novel / committed if committed else 0.0
        lo, hi = wilson(novel, committed)
        print(f"discovery: {stats['steps']} steps, {committed} committed in {stats['wall_s']:.0f} s, statuses "
              f"{stats['statuses']}, operators {stats['operators']}")
        print(f"novel share: {novel}/{committed} = {share:.3f} (95% Wilson [{lo:.3f}, {hi:.3f}]; target >= 0.5)")
    print(f"invent: pass_rate={rate:.3f} n={n} novel_share={share:.3f}")


if __name__ == "__main__":
    main()
