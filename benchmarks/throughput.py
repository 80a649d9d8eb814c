"""Verifications per hour with 1 and 2 local workers, and on a 2-node local Ray cluster.

    .venv/bin/python benchmarks/throughput.py [--jobs 6] [--train-tokens 20000] [--repeats 1] [--no-ray]

Each setting verifies the same ``--jobs`` seed designs at the ``micro`` rung through the
scheduler (``DiscoverySystem.serve``: claim within the budget, submit, store as results land),
from a fresh tree. The thread budgets match: one worker with all the machine's cores, two
workers with half each; the Ray cluster has two nodes of half the cores each, one task per node.
Settings are interleaved per repeat so drift hits all alike, after one untimed warm-up verification. A last run takes design steps
while one worker verifies (``discover``) and counts the steps that ended while a verification
was in flight (design steps never wait for one). Last line:
``throughput: ratio_2w_1w=<x> verifs_per_hour_1w=<y>``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from model_discovery.config import SystemConfig
from model_discovery.gau import load_seed
from model_discovery.records import VerifyOptions
from model_discovery.runners.local import machine_cores
from model_discovery.system import BuildSystem

SEEDS = ["gpt2", "llama", "gla", "retnet", "mamba2", "hyena", "rwkv", "deltanet"]


def _verify_all(config: SystemConfig, seeds: list[str]) -> tuple[float, list[dict[str, Any]]]:
    """Wall seconds to verify ``seeds`` through the scheduler, and its events."""
    events: list[dict[str, Any]] = []
    system = BuildSystem(config)
    try:
        for seed in seeds:
            system.tree.add_design(load_seed(seed), status="checked")
        t0 = time.perf_counter()
        done = system.serve(exit_when_idle=True, poll_s=0.2,
                            emit=lambda event, **f: events.append({"event": event, "t": time.perf_counter(), **f}))
        wall = time.perf_counter() - t0
        failed = [r.design for r in system.tree.results() if r.status != "ok"]
    finally:
        system.close()
    if len(done) != len(seeds) or failed:
        raise SystemExit(f"{config.run_dir}: verified {done}, failed {failed}")
    return wall, events


def _overlap(events: list[dict[str, Any]]) -> float:
    """Mean number of jobs in flight between the first claim and the last result."""
    points = sorted((e["t"], +1 if e["event"] == "claimed" else -1) for e in events
                    if e["event"] in ("claimed", "verified"))
    area, running, last = 0.0, 0, points[0][0]
    for t, step in points:
        area += running * (t - last)
        running, last = running + step, t
    return area / max(points[-1][0] - points[0][0], 1e-9)


def _ray_cluster(cores: int) -> Any:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": max(1, cores // 2)})
    cluster.add_node(num_cpus=max(1, cores // 2))
    cluster.wait_for_nodes()
    return cluster


def _design_overlap(root: Path, tokens: int) -> tuple[int, int]:
    """(design steps, steps that ended while the seed was still being verified) of a short discover."""
    cfg = SystemConfig(run_dir=root / "discover", seeds=["gpt2"], steps=2, budgets={"micro": 1},
                       verify=VerifyOptions(eval=False, probes=False, wandb=False, train_tokens=tokens * 3))
    system = BuildSystem(cfg)
    try:
        report = system("discover a new model", progress=False)
    finally:
        system.close()
    verified = (cfg.run_dir / "verify" / "gpt2@micro" / "verify_result.json").stat().st_mtime
    ended = (cfg.run_dir / "outcomes.jsonl").stat().st_mtime  # the last step's end
    return len(report.outcomes), len(report.outcomes) if ended < verified else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6, help="seed designs verified per setting")
    parser.add_argument("--train-tokens", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-ray", action="store_true", help="skip the 2-node Ray cluster")
    args = parser.parse_args()
    seeds = SEEDS[:args.jobs]
    cores = machine_cores()
    opts = VerifyOptions(eval=False, probes=False, wandb=False, train_tokens=args.train_tokens)
    settings: dict[str, dict[str, Any]] = {
        "1w": {"workers": 1, "worker_threads": cores},
        "2w": {"workers": 2, "worker_threads": max(1, cores // 2)},
    }
    cluster = None
    if not args.no_ray:
        cluster = _ray_cluster(cores)
        settings["ray2"] = {"runner": "ray", "runner_options": {"address": cluster.address, "num_cpus": max(1, cores // 2),
                                                                  "max_in_flight": 2}}
    walls: dict[str, list[float]] = {k: [] for k in settings}
    overlap: dict[str, list[float]] = {k: [] for k in settings}
    root = Path(tempfile.mkdtemp(prefix="modis-throughput-"))
    try:  # one untimed verification first: corpus, tokenizer and caches are built once, not in a setting
        _verify_all(SystemConfig(run_dir=root / "warm-up", budgets={"micro": 1}, verify=opts, selector="random"),
                    seeds[:1])
        for r in range(args.repeats):
            for name, fields in settings.items():
                cfg = SystemConfig(run_dir=root / f"{name}-{r}", budgets={"micro": len(seeds)}, verify=opts,
                                   selector="random", **fields)  # one seed each: no replicates
                wall, events = _verify_all(cfg, seeds)
                walls[name].append(wall)
                overlap[name].append(_overlap(events))
                print(f"{name} repeat {r}: {len(seeds)} verifications in {wall:.1f} s "
                      f"({len(seeds) / wall * 3600:.0f}/h), {overlap[name][-1]:.2f} in flight on average", flush=True)
        steps, concurrent = _design_overlap(root, args.train_tokens)
    finally:
        if cluster is not None:
            import ray

            ray.shutdown()
            cluster.shutdown()
    per_hour = {k: [len(seeds) / w * 3600 for w in v] for k, v in walls.items()}
    print(f"\n{cores} cores, {len(seeds)} micro verifications of {args.train_tokens:,} tokens per setting, "
          f"{args.repeats} repeat(s)")
    for name, values in per_hour.items():
        spread = f" ± {statistics.stdev(values):.0f}" if len(values) > 1 else ""
        print(f"  {name:5s} {statistics.fmean(values):7.0f}{spread} verifications/h; "
              f"{statistics.fmean(overlap[name]):.2f} jobs in flight on average")
    ratio = statistics.fmean(per_hour["2w"]) / statistics.fmean(per_hour["1w"])
    print(f"  2 workers / 1 worker: {ratio:.2f}x (target >= 1.6)")
    print(f"  design steps that ended while the seed's verification ran: {concurrent} of {steps}")
    print(f"throughput: ratio_2w_1w={ratio:.3f} verifs_per_hour_1w={statistics.fmean(per_hour['1w']):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
