"""Training throughput: our trainer vs a minimal nanoGPT-style loop, same model, same batches.

Both train the GPT-2 seed at a ladder rung (``micro`` on CPU by default) on the same token
stream with the same batch size, context, optimizer settings and precision; each is timed over
the same number of optimizer steps, alternating runs and keeping the best of ``--repeats``. The
first step (warm-up, and compilation with ``--compile``) is timed apart and left out of tokens/s.
Prints tokens/s of both and the ratio (target: ours >= 0.9x the plain loop).

    python benchmarks/train_throughput.py                      # CPU, micro rung
    python benchmarks/train_throughput.py --device cuda --scale 125M --steps 50 --compile
"""

from __future__ import annotations

import argparse
import math
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from model_discovery.gau import build_lm, get_scale, load_seed
from model_discovery.records import TrainConfig
from model_discovery.train.corpus import load_token_data
from model_discovery.train.loop import train


def nanogpt_loop(model: torch.nn.Module, tokens: np.ndarray, cfg: TrainConfig, device: torch.device,
                 compile: bool) -> tuple[float, float]:
    """The reference: plain AdamW loop with nanoGPT's get_batch; returns (tokens/s after the first
    step, first step's seconds)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr,
                            betas=(cfg.beta1, cfg.beta2), **({"fused": True} if device.type == "cuda" else {}))
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    fwd = torch.compile(model) if compile else model
    accum = cfg.grad_accum
    rng = np.random.default_rng(0)

    def get_batch() -> tuple[torch.Tensor, torch.Tensor]:
        ix = rng.integers(0, len(tokens) - cfg.context_len - 1, size=cfg.micro_size)
        x = torch.stack([torch.from_numpy(tokens[i:i + cfg.context_len].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(tokens[i + 1:i + 1 + cfg.context_len].astype(np.int64)) for i in ix])
        if device.type == "cuda":
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x, y

    model.train()
    t0 = time.perf_counter()
    first_s = 0.0
    for step in range(cfg.max_steps):
        lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        for _ in range(accum):
            x, y = get_batch()
            with ctx:
                logits = fwd(x)
                loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1)) / accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % cfg.log_interval == 0:
            loss.item()
        if step == 0:
            if device.type == "cuda":
                torch.cuda.synchronize()
            first_s = time.perf_counter() - t0
            t0 = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (cfg.max_steps - 1) * cfg.tokens_per_step / (time.perf_counter() - t0), first_s


def trainer_run(model: torch.nn.Module, data: object, cfg: TrainConfig) -> tuple[float, float]:
    """Our trainer: (tokens/s after the first step, first step's seconds)."""
    res = train(model, data, cfg)  # type: ignore[arg-type]
    if cfg.compile and not res.compiled:
        raise SystemExit(f"torch.compile fell back to eager: {res.compile_fallback}")
    total_s = res.steps * cfg.tokens_per_step / res.tokens_per_s
    return (res.steps - 1) * cfg.tokens_per_step / (total_s - res.first_step_s), res.first_step_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="micro")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs; the best of each counts")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    scale = get_scale(args.scale).model_copy(update={"device": args.device})
    data = load_token_data(scale.vocab_size)
    design = load_seed("gpt2")

    def fresh() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_lm(design, scale).to(device)

    n_params = fresh().num_params()
    cfg = TrainConfig.from_scale(scale, n_params, max_steps=args.steps, eval_interval=0, final_eval_batches=1,
                                 checkpoint_interval=0, progress=False, compile=args.compile,
                                 warmup_steps=max(1, args.steps // 10), log_interval=10)
    print(f"scale {scale.name}: d_model {scale.d_model}, n_block {scale.n_block}, context {scale.context_len}, "
          f"batch {cfg.batch_size} (micro {cfg.micro_size}), {n_params:,} non-embedding params, "
          f"device {device}, {torch.get_num_threads()} threads, {args.steps} steps x {args.repeats}")
    ours: list[tuple[float, float]] = []
    plain: list[tuple[float, float]] = []
    for _ in range(args.repeats):
        plain.append(nanogpt_loop(fresh(), data.train, cfg, device, args.compile))
        ours.append(trainer_run(fresh(), data, cfg))
    best_ours, best_plain = max(v for v, _ in ours), max(v for v, _ in plain)

    def runs(rows: list[tuple[float, float]]) -> str:
        return ", ".join(f"{v:,.0f}" for v, _ in rows) + "; first step " + ", ".join(f"{s:.2f}" for _, s in rows) + " s"

    print(f"nanoGPT-style loop: {best_plain:12,.0f} tokens/s   (runs: {runs(plain)})")
    print(f"modis trainer:      {best_ours:12,.0f} tokens/s   (runs: {runs(ours)})")
    ratio = best_ours / best_plain if best_plain and math.isfinite(best_plain) else float("nan")
    print(f"ratio (trainer / loop): {ratio:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
