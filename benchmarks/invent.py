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

The last line is ``invent: pass_rate=<x> n=<units tried> novel_share=<y>``. ``--report-only``
reports what an output folder holds (per-unit check lines, the discovery's tree) without running.
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
from model_discovery.evolution import EvolutionTree
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


def run_checks_logged(units: list[Design], out: Path) -> None:
    """Check each design once at micro; one JSON line per unit in ``out/checks.jsonl``."""
    ref = reference_figures(get_scale("micro"))
    with (out / "checks.jsonl").open("w") as log:
        for i, design in enumerate(units):
            unit = next(n for n, u in design.units.items() if u.origin is not None)
            report = run_checks(design, "micro", reference=ref)
            log.write(json.dumps({"unit": unit, "passed": report.passed, "error": report.first_error,
                                  "seconds": report.total_seconds,
                                  "genome": design.units[unit].origin.genome}) + "\n")  # type: ignore[union-attr]
            log.flush()
            print(f"  [{i + 1}/{len(units)}] {unit:<16} {'pass' if report.passed else 'FAIL'} "
                  f"{report.total_seconds:6.1f} s {report.first_error or ''}", flush=True)


def run_discovery(args: argparse.Namespace, out: Path) -> None:
    """Design steps only (no verification budget) from the seeds, into ``out/discovery``."""
    cfg = SystemConfig(run_dir=out / "discovery", seeds=args.seeds, steps=args.steps, seed=args.seed,
                       budgets={"micro": 0}, verify=VerifyOptions(eval=False, probes=False, wandb=False))
    system = BuildSystem(cfg)
    try:
        system("benchmark: unit invention", progress=False)
    finally:
        system.close()


def pass_rate(out: Path) -> tuple[int, int]:
    """(passed, tried) from ``out/checks.jsonl``, with a breakdown by main primitive printed."""
    path = out / "checks.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    kinds: Counter[str] = Counter()
    for row in rows:
        g = row["genome"]
        kind = g["token_mixer"]["kind"] if g["kind"] == "mixer" else g["structure"]["kind"]
        kinds[f"{kind}:{'pass' if row['passed'] else 'fail'}"] += 1
    passed = sum(r["passed"] for r in rows)
    if rows:
        lo, hi = wilson(passed, len(rows))
        secs = [r["seconds"] for r in rows]
        print(f"full sandboxed check at micro, first try: {passed}/{len(rows)} pass = {passed / len(rows):.3f} "
              f"(95% Wilson [{lo:.3f}, {hi:.3f}]; target >= 0.9); {statistics.fmean(secs):.1f} s/check")
        print("  by primitive: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
        for row in rows:
            if not row["passed"]:
                print(f"  failed {row['unit']}: {row['error']}")
    return passed, len(rows)


def novel_share(out: Path) -> tuple[int, int]:
    """(committed designs holding a unit whose source is in no catalogue file, committed designs)."""
    run_dir = out / "discovery"
    path = run_dir / "outcomes.jsonl"
    outcomes = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    committed = [o for o in outcomes if o["status"] == "committed" and o["design"]]
    if not committed:
        return 0, 0
    tree = EvolutionTree(run_dir / "tree.sqlite")
    known = catalogue_keys()
    novel, with_origin = 0, 0
    for o in committed:
        design = tree.get_design(o["design"]).design
        novel += any(source_key(u.source) not in known for u in design.units.values())
        with_origin += any(u.origin is not None for u in design.units.values())
    lo, hi = wilson(novel, len(committed))
    print(f"discovery: {len(outcomes)} steps, {len(committed)} committed; statuses "
          f"{dict(Counter(o['status'] for o in outcomes))}; committed by operator "
          f"{dict(Counter(o['operator'] for o in committed))}; {with_origin} hold a unit with a recorded origin")
    print(f"novel share: {novel}/{len(committed)} = {novel / len(committed):.3f} "
          f"(95% Wilson [{lo:.3f}, {hi:.3f}]; target >= 0.5)")
    return novel, len(committed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", type=int, default=100)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--base", default="llama", help="seed design the generated units are placed in")
    ap.add_argument("--seeds", nargs="+", default=["gpt2", "llama", "gla", "mamba2"])
    ap.add_argument("--out", default="runs/bench-invent")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: report the figures of what --out holds (e.g. a run stopped early)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if not args.report_only:
        times = static_seconds(args.units, args.seed, args.base)
        if times:
            print(f"generate + static check: {statistics.fmean(times):.3f} s/unit mean, median "
                  f"{statistics.median(times):.3f}, max {max(times):.3f} over {len(times)} units (target < 1 s)",
                  flush=True)
        units = designs(args.units, args.seed, args.base)
        with ThreadPoolExecutor(max_workers=1) as pool:  # checks and discovery both wait on subprocesses
            checked = pool.submit(run_checks_logged, units, out) if units else None
            if args.steps:
                run_discovery(args, out)
            if checked:
                checked.result()
    passed, n = pass_rate(out)
    novel, committed = novel_share(out)
    rate = passed / n if n else float("nan")
    share = novel / committed if committed else float("nan")
    print(f"invent: pass_rate={rate:.3f} n={n} novel_share={share:.3f}")


if __name__ == "__main__":
    main()
