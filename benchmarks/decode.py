"""Greedy decoding speed of every seed with the decode cache (``DesignLM.generate``) and without it.

    .venv/bin/python benchmarks/decode.py [--scales micro,14M] [--seeds gpt2,gla] [--prompt 64]
                                          [--new 64] [--repeats 3] [--threads 1]

For each seed and scale: batch 1, a random ``--prompt``-token prompt, ``--new`` greedy tokens.
``cached`` is ``lm.generate(idx, new, top_k=1)`` (the prompt is one chunk, then one token per
step through the cache); ``uncached`` is the loop ``lm(idx)[:, -1].argmax()`` over the whole
prefix at each step. One untimed warm-up of each first; the two modes then alternate for
``--repeats`` rounds so drift hits both alike. Printed per seed: tokens per second of each mode
(median and range over the repeats), the speedup (ratio of the medians) and how many of the
greedy tokens the two modes agree on before they first differ (they differ only where float
rounding flips a near-tie of the untrained model's logits). A line per scale gives the median
speedup over its seeds; the last line, ``decode: speedup_median=<x> seeds=<n>``, the median
over every (seed, scale) row measured and the number of rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from model_discovery.gau import build_lm, get_scale, list_seeds, load_seed


def uncached(lm: torch.nn.Module, idx: torch.Tensor, new: int) -> torch.Tensor:
    """Greedy tokens recomputing the whole (context-clipped) prefix at each step."""
    for _ in range(new):
        nxt = lm(idx[:, -lm.context_len:])[:, -1].argmax(-1, keepdim=True)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


def cached(lm: torch.nn.Module, idx: torch.Tensor, new: int) -> torch.Tensor:
    """Greedy tokens through the decode cache."""
    return lm.generate(idx, max_new_tokens=new, top_k=1)


def timed(fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def measure(seed: str, scale_name: str, prompt: int, new: int, repeats: int) -> tuple[dict[str, list[float]], int]:
    """Tokens per second of each mode, one figure per repeat, and the number of leading greedy
    tokens on which the two modes agree."""
    scale = get_scale(scale_name)
    if prompt + new > scale.context_len:
        raise SystemExit(f"--prompt {prompt} + --new {new} exceeds the {scale.name} context of {scale.context_len}")
    torch.manual_seed(0)
    lm = build_lm(load_seed(seed), scale).eval()
    idx = torch.randint(0, scale.vocab_size, (1, prompt), generator=torch.Generator().manual_seed(1))
    modes = {"cached": cached, "uncached": uncached}
    rates: dict[str, list[float]] = {m: [] for m in modes}
    with torch.no_grad():
        outs = {m: fn(lm, idx, new) for m, fn in modes.items()}  # warm-up
        agree = int((outs["cached"] == outs["uncached"]).all(0).long().cumprod(0).sum()) - prompt
        for _ in range(repeats):
            for m, fn in modes.items():
                wall, _ = timed(lambda fn=fn: fn(lm, idx, new))
                rates[m].append(new / wall)
    return rates, agree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="micro", help="comma-separated rungs, e.g. micro,14M")
    parser.add_argument("--seeds", default="", help="comma-separated seed names (default: all)")
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [s for s in args.seeds.split(",") if s] or list_seeds()
    print(f"batch 1, prompt {args.prompt}, {args.new} greedy tokens, {args.repeats} repeats, "
          f"{args.threads} thread(s); tokens/s as median [min, max]")
    print(f"{'seed':<10} {'scale':<6} {'cached tok/s':>24} {'uncached tok/s':>24} {'speedup':>8} {'agree':>6}")
    speedups = []
    for scale in [s for s in args.scales.split(",") if s]:
        row = []
        for seed in seeds:
            rates, agree = measure(seed, scale, args.prompt, args.new, args.repeats)
            cells = [f"{statistics.median(r):7.1f} [{min(r):6.1f}, {max(r):6.1f}]" for r in rates.values()]
            row.append(statistics.median(rates["cached"]) / statistics.median(rates["uncached"]))
            print(f"{seed:<10} {scale:<6} {cells[0]:>24} {cells[1]:>24} {row[-1]:7.2f}x {agree:>3}/{args.new}",
                  flush=True)
        print(f"{scale}: speedup_median={statistics.median(row):.2f} seeds={len(row)}")
        speedups += row
    print(f"decode: speedup_median={statistics.median(speedups):.2f} seeds={len(speedups)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
