"""Decoding generated units with a cache: milliseconds per new token with the cache against the
full forward over the whole sequence at every token (what a model without a cache, or a unit
that replays, pays), and the largest logit difference between the two.

    .venv/bin/python benchmarks/decode_generated.py [--prefill 256] [--new 32] [--repeats 3] [--threads 1]

For one mixer genome per token mixer kind (each with a gated channel unit), the llama seed with
both units replaced is built at the ``micro`` rung with the context raised to prefill + new. Each
repeat draws fresh tokens, prefills ``--prefill`` of them into a cache (timed), then feeds the
``--new`` next ones one at a time through the cache, and separately runs the full forward on
each growing prefix; both are timed per token (mean ± standard deviation over repeats).

The last line is ``decode_generated: speedup_min=<x> speedup_median=<y> max_abs_diff=<z>``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from model_discovery.gau import build_lm, get_scale, load_seed
from model_discovery.gau.runtime import DecodeCache
from model_discovery.genome import spec as gs
from model_discovery.genome.invent import genome_unit, with_unit
from model_discovery.genome.operators import GenomeEdit

GENOMES: dict[str, gs.MixerGenome] = {
    "attention": gs.MixerGenome(featurizer=gs.ShortConv(), token_mixer=gs.Attention(qk_norm=True)),
    "attention-window64": gs.MixerGenome(token_mixer=gs.Attention(window=64), combine=gs.Sum()),
    "linear_recurrence": gs.MixerGenome(featurizer=gs.TokenShift(), token_mixer=gs.LinearRecurrence()),
    "delta_rule": gs.MixerGenome(featurizer=gs.ShortConv(), token_mixer=gs.DeltaRule()),
    "conv": gs.MixerGenome(featurizer=gs.ShortConv(), token_mixer=gs.CausalConv(width=8), combine=gs.Mix()),
    "long_conv": gs.MixerGenome(token_mixer=gs.LongConv()),
}


def per_token_ms(lm: torch.nn.Module, idx: torch.Tensor, prefill: int) -> tuple[float, float, float, float]:
    """(prefill ms, cached ms/token, full-forward ms/token, max |logit difference|) for one sequence."""
    cache = DecodeCache()
    start = time.perf_counter()
    lm(idx[:, :prefill], cache)
    prefill_ms = 1e3 * (time.perf_counter() - start)
    cached, full = [], []
    start = time.perf_counter()
    for t in range(prefill, idx.size(1)):
        cached.append(lm(idx[:, t:t + 1], cache)[:, -1])
    cached_ms = 1e3 * (time.perf_counter() - start) / (idx.size(1) - prefill)
    start = time.perf_counter()
    for t in range(prefill, idx.size(1)):
        full.append(lm(idx[:, :t + 1])[:, -1])
    full_ms = 1e3 * (time.perf_counter() - start) / (idx.size(1) - prefill)
    diff = (torch.stack(cached) - torch.stack(full)).abs().max().item()
    return prefill_ms, cached_ms, full_ms, diff


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefill", type=int, default=256)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scale = get_scale("micro").model_copy(update={"context_len": args.prefill + args.new})
    print(f"micro rung (d_model {scale.d_model}, {scale.n_block} blocks), prefill {args.prefill}, {args.new} new "
          f"tokens one at a time, batch 1, {args.threads} thread(s), {args.repeats} repeats (mean ± sd)")
    print(f"{'token mixer':20s} {'prefill ms':>12s} {'cached ms/tok':>15s} {'full ms/tok':>15s} {'speedup':>8s} "
          f"{'max |diff|':>11s}")
    speedups, diffs = [], []
    for kind, genome in GENOMES.items():
        design = load_seed("llama")
        for unit in (genome, gs.ChannelGenome()):
            design = with_unit(design, *genome_unit(GenomeEdit(unit, "sample", "benchmark")))
        torch.manual_seed(0)
        lm = build_lm(design, scale, vocab_size=scale.vocab_size).eval()
        runs = []
        with torch.no_grad():
            for r in range(args.repeats):
                gen = torch.Generator().manual_seed(r)
                idx = torch.randint(0, scale.vocab_size, (1, args.prefill + args.new), generator=gen)
                runs.append(per_token_ms(lm, idx, args.prefill))
        pre, cached, full, diff = ([run[i] for run in runs] for i in range(4))

        def show(values: list[float]) -> str:
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.fmean(values):7.2f} ± {sd:5.2f}"

        speedup = statistics.fmean(full) / statistics.fmean(cached)
        speedups.append(speedup)
        diffs.append(max(diff))
        print(f"{kind:20s} {show(pre):>12s} {show(cached):>15s} {show(full):>15s} {speedup:7.1f}x {max(diff):11.2e}")
    print(f"decode_generated: speedup_min={min(speedups):.2f} speedup_median={statistics.median(speedups):.2f} "
          f"max_abs_diff={max(diffs):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
