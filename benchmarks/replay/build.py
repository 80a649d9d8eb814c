"""Build the replay table: a closed neighbourhood of designs around the seeds, each checked and
trained with several seeds, with its loss recorded at a short and at a full fidelity.

    .venv/bin/python benchmarks/replay/build.py                 # resume / fill the committed table
    .venv/bin/python benchmarks/replay/build.py --workers 2 --designs 200 --seeds 3

Steps, each resumable (rows already in the files are skipped):

1. ``designs.jsonl.gz``: the nine seeds, then designs made by applying the symbolic operators
   (swap, hparam, insert, remove, interleave, crossover) to the seeds and then once more to
   those children, deduplicated by fingerprint, in a fixed order from ``--enum-seed``. Then an
   edge pass: each design is edited many more times and every result that lands on a design of
   the set adds an edge ``(parent, operator, child)``, so that a replayed search can move
   through the set the way a live one moves through the tree.
2. ``checks.jsonl``: the full sandboxed check of each design at micro. Only designs that pass
   are trained, until ``--designs`` of them (seeds included) are in the table.
3. ``table.csv``: one row per (design, seed, fidelity). A run trains the design at the micro
   rung for ``--train-tokens`` tokens with the rung's recipe (warm-up, cosine decay), and the
   validation loss is read at 25 % (``short``), 50 % (``half``) and 100 % (``full``) of the
   schedule. ``short`` is therefore the first quarter of the full run: a successive-halving
   search that promotes a design continues its run instead of starting over.

Training runs in worker processes with one thread each through the verifier's own trainer and
LM builder. The code trained here is catalogue code recombined by the operators (no generated
source) and has passed the sandboxed checker first. ``provenance.json`` records versions,
command, hardware and the recipe; a resume with a different recipe is refused.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import multiprocessing as mp
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIELDS = ["fingerprint", "design", "fidelity", "seed", "val_loss", "bpb", "tokens", "seconds"]
FRACTIONS = {"short": 0.25, "half": 0.5, "full": 1.0}
EVAL_POINTS = 4  # val loss every quarter of the schedule
EVAL_BATCHES = 8  # micro-batches per quarter-point estimate (the same windows for every design: paired)
FINAL_EVAL_BATCHES = 16  # micro-batches for the full-fidelity estimate


# -- 1. the neighbourhood ------------------------------------------------------------------------
def enumerate_designs(n_candidates: int, enum_seed: int, edge_tries: int) -> tuple[list[dict], list[dict]]:
    """Seeds, their operator children and grandchildren (unique fingerprints), and the edges."""
    from model_discovery.agents.symbolic.config import SymbolicConfig
    from model_discovery.agents.symbolic.operators import OPERATORS, NotApplicable
    from model_discovery.agents.symbolic.proposer import SymbolicProposer
    from model_discovery.gau import list_seeds, load_seed

    proposer = SymbolicProposer(SymbolicConfig(seed=enum_seed))
    rng = random.Random(enum_seed)
    seeds = [load_seed(n) for n in list_seeds()]
    by_fp: dict[str, Any] = {}
    rows: list[dict] = []
    edges: set[tuple[str, str, str, str]] = set()

    def add(design: Any, gen: int, operator: str, parents: list[str]) -> None:
        fp = design.fingerprint()
        if fp in by_fp:
            return
        by_fp[fp] = design
        rows.append({"fingerprint": fp, "name": design.name, "generation": gen, "operator": operator,
                     "parents": parents, "design": json.loads(design.to_json(indent=None))})

    def edit(a: Any, b: Any, op: str) -> Any | None:
        try:
            return proposer.build(op, a, b if op in ("crossover", "interleave") else None).design
        except (NotApplicable, ValueError):
            return None

    for s in seeds:
        add(s, 0, "seed", [])
    for gen, pool_gen in ((1, 0), (2, 1)):
        quota = len(seeds) + (n_candidates - len(seeds)) * gen // 2
        tries = 0
        while len(rows) < quota and tries < 50 * quota:
            tries += 1
            pool = [r for r in rows if r["generation"] == pool_gen]
            a = by_fp[rng.choice(pool)["fingerprint"]]
            b = rng.choice(seeds)
            op = rng.choice(OPERATORS)
            child = edit(a, b, op)
            if child is not None:
                parents = [a.fingerprint()] + ([b.fingerprint()] if op in ("crossover", "interleave") else [])
                add(child, gen, op, parents)
    for r in rows:
        for p in r["parents"][:1]:
            edges.add((p, r["operator"], r["fingerprint"], "enum"))
    members = list(by_fp.values())
    for a in members:
        for _ in range(edge_tries):
            op = rng.choice(OPERATORS)
            child = edit(a, rng.choice(seeds), op)
            if child is not None and child.fingerprint() in by_fp and child.fingerprint() != a.fingerprint():
                edges.add((a.fingerprint(), op, child.fingerprint(), "edge-pass"))
    edge_rows = [{"parent": p, "operator": op, "child": c, "found_by": how} for p, op, c, how in sorted(edges)]
    return rows, edge_rows


# -- 2. checks ---------------------------------------------------------------------------------
def check_one(row: dict) -> dict:
    """Full sandboxed check of one design at micro (runs in a worker)."""
    from model_discovery.check import run_checks
    from model_discovery.gau import Design

    design = Design.model_validate(row["design"])
    report = run_checks(design, "micro")
    speed = report.get("speed_memory")
    return {"fingerprint": row["fingerprint"], "passed": report.passed, "error": report.first_error,
            "seconds": report.total_seconds,
            "slowdown": (speed.figures.get("slowdown") if speed is not None else None)}


# -- 3. training -------------------------------------------------------------------------------
_DATA: Any = None


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    global _DATA
    from model_discovery.gau import get_scale
    from model_discovery.train.corpus import load_token_data

    _DATA = load_token_data(get_scale("micro").vocab_size)


def train_one(job: tuple[dict, int, int, float]) -> list[dict]:
    """Train one design with one seed; rows for every fidelity (runs in a worker)."""
    from model_discovery.gau import Design, build_lm, get_scale
    from model_discovery.records import TrainConfig
    from model_discovery.train.loop import train

    row, seed, train_tokens, bytes_per_token = job
    scale = get_scale("micro")
    design = Design.model_validate(row["design"])
    t0 = time.perf_counter()
    model = build_lm(design, scale)
    steps = math.ceil(train_tokens / (scale.batch_size * scale.context_len))
    cfg = TrainConfig.from_scale(scale, 0, train_tokens=train_tokens, seed=seed, progress=False,
                                 eval_interval=max(1, steps // EVAL_POINTS), eval_batches=EVAL_BATCHES,
                                 final_eval_batches=FINAL_EVAL_BATCHES)

    class Splits:
        train = _DATA.train
        val = _DATA.val

    try:
        result = train(model, Splits, cfg)
    except Exception as exc:  # noqa: BLE001 - a failing design is a row, not a crash
        return [{"fingerprint": row["fingerprint"], "design": row["name"], "fidelity": "error", "seed": seed,
                 "val_loss": float("nan"), "bpb": float("nan"), "tokens": 0,
                 "seconds": round(time.perf_counter() - t0, 2), "error": " ".join(str(exc).split())[:200]}]
    seconds = time.perf_counter() - t0
    out = []
    for fidelity, frac in FRACTIONS.items():
        target = max(1, round(frac * steps))
        step, tokens, loss = min(result.val_loss, key=lambda p: abs(p[0] - target))
        out.append({"fingerprint": row["fingerprint"], "design": row["name"], "fidelity": fidelity, "seed": seed,
                    "val_loss": round(loss, 5), "bpb": round(loss / math.log(2) / bytes_per_token, 5),
                    "tokens": tokens, "seconds": round(seconds * tokens / result.tokens, 2)})
    return out


def bytes_per_token() -> float:
    """Bytes of validation text per validation token (to turn nats/token into bits/byte)."""
    from model_discovery.gau import get_scale
    from model_discovery.train.corpus import corpus_dir, load_token_data

    data = load_token_data(get_scale("micro").vocab_size)
    meta = json.loads((corpus_dir() / "meta.json").read_text())
    return meta["splits"]["val"]["bytes"] / data.val.size


# -- driver ------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _append_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "a") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")


def provenance(args: argparse.Namespace) -> dict:
    import torch

    return {"recipe": {"scale": "micro", "train_tokens": args.train_tokens, "seeds": args.seeds,
                       "fractions": FRACTIONS, "enum_seed": args.enum_seed, "candidates": args.candidates,
                       "threads_per_run": 1, "eval_batches": EVAL_BATCHES,
                       "final_eval_batches": FINAL_EVAL_BATCHES},
            "versions": {"python": platform.python_version(), "torch": torch.__version__},
            "hardware": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                         "cpus": os.cpu_count()},
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE), help="folder of the table files")
    ap.add_argument("--designs", type=int, default=200, help="designs in the table (seeds included)")
    ap.add_argument("--candidates", type=int, default=240, help="designs enumerated before checking")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per design")
    ap.add_argument("--train-tokens", type=int, default=100_000, help="tokens of the full fidelity")
    ap.add_argument("--enum-seed", type=int, default=0)
    ap.add_argument("--edge-tries", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=0, help="stop cleanly after this long (0: no limit)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + 60 * args.max_minutes if args.max_minutes else math.inf
    prov_path = out / "provenance.json"
    prov = provenance(args)
    if prov_path.exists():
        old = json.loads(prov_path.read_text())
        if old["recipe"] != prov["recipe"]:
            raise SystemExit(f"{prov_path}: recipe differs from this command's ({old['recipe']} vs "
                             f"{prov['recipe']}); use another --out")
    prov_path.write_text(json.dumps(prov, indent=2) + "\n")

    designs_path, edges_path = out / "designs.jsonl.gz", out / "edges.csv"
    rows = _read_jsonl(designs_path)
    if not rows:
        t0 = time.perf_counter()
        rows, edges = enumerate_designs(args.candidates, args.enum_seed, args.edge_tries)
        with gzip.open(designs_path, "wt") as fh:
            for r in rows:
                fh.write(json.dumps(r, sort_keys=True) + "\n")
        with open(edges_path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["parent", "operator", "child", "found_by"])
            w.writeheader()
            w.writerows(edges)
        print(f"enumerated {len(rows)} designs, {len(edges)} edges in {time.perf_counter() - t0:.0f} s", flush=True)

    ctx = mp.get_context("spawn")
    checks_path = out / "checks.jsonl"
    checks = {c["fingerprint"]: c for c in _read_jsonl(checks_path)}
    table_path = out / "table.csv"
    done: set[tuple[str, int]] = set()
    if table_path.exists():
        with open(table_path) as fh:
            done = {(r["fingerprint"], int(r["seed"])) for r in csv.DictReader(fh)}
    else:
        with open(table_path, "w", newline="") as fh:
            csv.DictWriter(fh, fieldnames=FIELDS).writeheader()
    bpt = bytes_per_token()

    # Check in enumeration order until enough designs have passed.
    with ctx.Pool(args.workers) as pool:
        pending = [r for r in rows if r["fingerprint"] not in checks]
        passed = sum(c["passed"] for c in checks.values())
        it = pool.imap(check_one, pending)
        for row in pending:
            if passed >= args.designs or time.time() > deadline:
                pool.terminate()
                break
            c = next(it)
            checks[c["fingerprint"]] = c
            passed += c["passed"]
            _append_jsonl(checks_path, [c])
            print(f"check {len(checks):4d}/{len(rows)} {row['name']:<44} "
                  f"{'pass' if c['passed'] else 'FAIL ' + str(c['error'])[:60]}", flush=True)
    chosen = [r for r in rows if checks.get(r["fingerprint"], {}).get("passed")][:args.designs]

    jobs = [(r, s, args.train_tokens, bpt) for s in range(args.seeds) for r in chosen
            if (r["fingerprint"], s) not in done]
    t0 = time.perf_counter()
    with ctx.Pool(args.workers, initializer=_worker_init) as pool, open(table_path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        for i, result in enumerate(pool.imap_unordered(train_one, jobs), 1):
            writer.writerows([r for r in result if r["fidelity"] != "error"])
            fh.flush()
            if result[0]["fidelity"] == "error":
                _append_jsonl(out / "train_errors.jsonl", result)
            elapsed = time.perf_counter() - t0
            print(f"train {i:4d}/{len(jobs)} {result[0]['design']:<44} seed {result[0]['seed']} "
                  f"full {result[-1]['val_loss']:.4f}  eta {elapsed / i * (len(jobs) - i) / 60:.0f} min", flush=True)
            if time.time() > deadline:
                pool.terminate()
                print("stopped at --max-minutes; run again to resume", flush=True)
                return 0
    print(f"table: {len(chosen)} designs x {args.seeds} seeds in {table_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
