"""The one training loop: a nanoGPT-style loop for any ``model(idx) -> logits`` LM.

AdamW (weight decay on 2-D parameters only), linear warmup then cosine decay, gradient clipping,
gradient accumulation, bf16 autocast on CUDA and fp32 on CPU by default, optional ``torch.compile``
(which falls back to eager, saying why in :class:`TrainResult`, when compiling fails). A
:class:`Trainer` holds that setup and takes one optimizer step at a time; :func:`train` runs a
verification on token streams and :func:`fit` a short run on any batches (the checker's
effectiveness check, the synthetic probes).
Batches of :func:`train` are random windows of the train stream drawn from an RNG seeded by
``(seed, step)``, so a run is deterministic, gradient accumulation splits the same batch, and a
resumed run sees exactly the batches the uninterrupted run would have seen. Checkpoints (model,
optimizer, step, curves, RNG states) go to ``<run_dir>/checkpoint.pt``; calling :func:`train`
again with the same run dir resumes.
"""

from __future__ import annotations

import logging
import math
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from model_discovery.errors import one_line
from model_discovery.records import TrainConfig, TrainProgress, TrainResult
from model_discovery.records.train import CurvePoint
from model_discovery.safe_io import write_text

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
PROGRESS_NAME = "progress.json"
WEIGHTS_NAME = "model.safetensors"
BatchAt = Callable[[int], tuple[torch.Tensor, torch.Tensor]]  # step -> (inputs, targets)


class TrainingError(RuntimeError):
    """Training could not go on (diverged, data too short, bad checkpoint); one-line message."""


# -- pieces ------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available")
    return dev


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on parameters of two or more dimensions only."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), **extra)


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr_ratio·lr``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.lr * config.min_lr_ratio
    return floor + 0.5 * (config.lr - floor) * (1.0 + math.cos(math.pi * progress))


def get_batch(tokens: np.ndarray, n: int, context_len: int, key: tuple[int, ...],
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of ``n`` random windows of ``tokens``, drawn by an RNG seeded
    with ``key`` (deterministic)."""
    if tokens.size < context_len + 2:
        raise TrainingError(f"token stream of {tokens.size} tokens is shorter than one window "
                            f"of {context_len + 1}")
    starts = np.random.default_rng(list(key)).integers(0, tokens.size - context_len - 1, size=n)
    win = torch.from_numpy(tokens[starts[:, None] + np.arange(context_len + 1)].astype(np.int64))
    if device.type == "cuda":
        win = win.pin_memory().to(device, non_blocking=True)
    return win[:, :-1], win[:, 1:]


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``model(x)`` against ``y`` (targets of -100 are not scored)."""
    logits = model(x)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    config: TrainConfig, train_curve: list[CurvePoint], val_curve: list[CurvePoint]) -> None:
    """Write the training state atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "config": config.model_dump(), "train_curve": train_curve, "val_curve": val_curve,
                "rng": _rng_state()}, tmp)
    os.replace(tmp, path)


def save_weights(path: Path, model: nn.Module) -> None:
    """The final weights alone as safetensors (plain data: safe to load outside the sandbox).

    Tied tensors are stored once, under the first key that names them (``wte.weight`` for the
    tied embedding/head of :class:`DesignLM`).
    """
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for key, value in model.state_dict().items():
        ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if ident not in seen:
            seen.add(ident)
            tensors[key] = value.detach().to("cpu").contiguous()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    config: TrainConfig) -> tuple[int, list[CurvePoint], list[CurvePoint]]:
    """Restore model, optimizer and RNG states; returns (step, train curve, val curve)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except Exception as exc:  # noqa: BLE001 - corrupt file, other model, other optimizer
        raise TrainingError(f"{path}: cannot resume: {' '.join(str(exc).split())[:300]}") from exc
    saved = state.get("config", {})
    for key in ("batch_size", "context_len", "max_steps", "seed"):
        if saved.get(key) != getattr(config, key):
            raise TrainingError(f"{path}: cannot resume: checkpoint has {key}={saved.get(key)}, "
                                f"run has {getattr(config, key)}")
    _set_rng_state(state["rng"])
    return int(state["step"]), [tuple(p) for p in state["train_curve"]], [tuple(p) for p in state["val_curve"]]


def _progress(config: TrainConfig, initial: int) -> Any:
    return tqdm(total=config.max_steps, initial=initial, disable=not config.progress, desc="train",
                unit="step", dynamic_ncols=True, leave=False)


# -- the loop ----------------------------------------------------------------------------------
class Trainer:
    """A model set up to train under ``config`` (device, precision, optimizer, compiled forward);
    :meth:`step` is the optimizer step of every training run."""

    def __init__(self, model: nn.Module, config: TrainConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and self.device.type == "cuda")
        self.dtype = torch.bfloat16 if bf16 else torch.float32
        self.autocast = (torch.autocast(device_type=self.device.type, dtype=self.dtype)
                         if self.dtype != torch.float32 else nullcontext())
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.cuda.reset_peak_memory_stats(self.device)
        self.model = model.to(self.device)
        model.train()
        self.optimizer = make_optimizer(model, config, self.device)
        self.fwd: nn.Module = torch.compile(model) if config.compile else model  # type: ignore[assignment]
        self.fallback: str | None = None  # why the compiled forward fell back to eager

    def batch(self, tokens: np.ndarray, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of optimizer step ``step``: random windows of ``tokens`` (deterministic)."""
        return get_batch(tokens, self.config.batch_size, self.config.context_len, (self.config.seed, step),
                         self.device)

    def step(self, step: int, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """Optimizer step number ``step`` on the batch (learning rate from :func:`lr_at`, gradient
        accumulation, clipping); returns the step's mean loss as a tensor (no device sync)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, self.config)
        xs, ys = xs.to(self.device), ys.to(self.device)
        try:
            return self._accumulate(self.fwd, xs, ys)
        except Exception as exc:
            if self.fwd is self.model:
                raise
            self.fallback = one_line(exc)
            log.warning("torch.compile failed, training eagerly: %s", self.fallback)
            self.optimizer.zero_grad(set_to_none=True)
            self.fwd = self.model
            return self._accumulate(self.fwd, xs, ys)

    def _accumulate(self, fwd: nn.Module, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        config = self.config
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(config.grad_accum):
            rows = slice(micro * config.micro_size, (micro + 1) * config.micro_size)
            with self.autocast:
                loss = lm_loss(fwd, xs[rows], ys[rows]) / config.grad_accum
            loss.backward()
            loss_sum += loss.detach()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(fwd.parameters(), config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum

    @torch.no_grad()
    def evaluate(self, tokens: np.ndarray, n_batches: int) -> float:
        """Mean next-token loss over ``n_batches`` fixed micro-batches of ``tokens``."""
        model, config = self.model, self.config
        was_training = model.training
        model.eval()
        total = torch.zeros((), device=self.device)
        for b in range(n_batches):
            x, y = get_batch(tokens, config.micro_size, config.context_len, (1_000_003, b), self.device)
            with self.autocast:
                total += lm_loss(model, x, y).float()
        model.train(was_training)
        return float(total.item() / n_batches)


def fit(trainer: Trainer, batch_at: BatchAt) -> list[float]:
    """Run all ``max_steps`` steps of ``trainer`` on ``batch_at(step)``; return each step's loss.

    Raises :class:`TrainingError` when a loss is not finite.
    """
    losses = []
    for step in range(trainer.config.max_steps):
        loss = float(trainer.step(step, *batch_at(step)))
        if not math.isfinite(loss):
            raise TrainingError(f"train loss is {loss} at step {step + 1} (diverged)")
        losses.append(loss)
    return losses


def _write_progress(path: Path, progress: TrainProgress) -> None:
    """Replace ``path`` with ``progress`` (written aside, then renamed: a reader never sees half);
    a progress note that cannot be written is skipped, the training goes on."""
    try:
        write_text(path, progress.model_dump_json())
    except OSError as exc:
        log.debug("progress not written to %s: %s", path, exc)


def train(model: nn.Module, data: Any, config: TrainConfig, run_dir: str | Path | None = None,
          resume: bool = True) -> TrainResult:
    """Train ``model`` on ``data.train`` (a 1-D token array) and evaluate on ``data.val``.

    With ``run_dir``, a checkpoint is written there (every ``checkpoint_interval`` steps, at
    ``stop_at`` and at the end) and, when ``resume`` is true and one exists, training continues
    from its step. Raises :class:`TrainingError` when the loss stops being finite.
    """
    t_start = time.perf_counter()
    trainer = Trainer(model, config)
    device, optimizer = trainer.device, trainer.optimizer
    ckpt = Path(run_dir) / CHECKPOINT_NAME if run_dir is not None else None

    step, train_curve, val_curve = 0, [], []
    if ckpt is not None and resume and ckpt.exists():
        step, train_curve, val_curve = load_checkpoint(ckpt, model, optimizer, config)
    resumed_from = step
    if not resumed_from:
        torch.manual_seed(config.seed)

    first_step_s = 0.0
    end = min(config.max_steps, config.stop_at or config.max_steps)
    non_train_s = 0.0
    bar = _progress(config, step)
    loop_start = time.perf_counter()
    try:
        while step < end:
            t_step = time.perf_counter()
            loss_sum = trainer.step(step, *trainer.batch(data.train, step))
            if step == resumed_from:
                first_step_s = time.perf_counter() - t_step
            step += 1
            if step % config.log_interval == 0 or step == end or step == 1:
                loss = float(loss_sum.item())
                if not math.isfinite(loss):
                    raise TrainingError(f"train loss is {loss} at step {step} (diverged)")
                train_curve.append((step, step * config.tokens_per_step, loss))
                if ckpt is not None:
                    _write_progress(ckpt.with_name(PROGRESS_NAME), TrainProgress(
                        step=step, end_step=end, loss=loss, elapsed_s=time.perf_counter() - loop_start,
                        resumed_from=resumed_from, updated_at=time.time()))
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr_at(step - 1, config):.2e}", refresh=False)
            bar.update(1)
            t0 = time.perf_counter()
            if config.eval_interval and step % config.eval_interval == 0 and step < config.max_steps:
                val_curve.append((step, step * config.tokens_per_step, trainer.evaluate(data.val, config.eval_batches)))
            if ckpt is not None and config.checkpoint_interval and step % config.checkpoint_interval == 0:
                save_checkpoint(ckpt, model, optimizer, step, config, train_curve, val_curve)
            non_train_s += time.perf_counter() - t0
    finally:
        bar.close()
    train_s = time.perf_counter() - loop_start - non_train_s

    if ckpt is not None:
        save_checkpoint(ckpt, model, optimizer, step, config, train_curve, val_curve)
        save_weights(ckpt.with_name(WEIGHTS_NAME), model)
    final_val = trainer.evaluate(data.val, config.final_eval_batches)
    if not math.isfinite(final_val):
        raise TrainingError(f"final val loss is {final_val} at step {step} (diverged)")
    if not val_curve or val_curve[-1][0] != step:
        val_curve.append((step, step * config.tokens_per_step, final_val))
    n_total = sum(p.numel() for p in model.parameters())
    n_params = model.num_params() if hasattr(model, "num_params") else n_total
    done = step - resumed_from
    return TrainResult(
        n_params=int(n_params), n_params_total=int(n_total), steps=step, max_steps=config.max_steps,
        tokens=step * config.tokens_per_step, completed=step >= config.max_steps, resumed_from=resumed_from,
        train_loss=train_curve, val_loss=val_curve, final_val_loss=final_val,
        tokens_per_s=done * config.tokens_per_step / train_s if done and train_s > 0 else 0.0,
        peak_memory_bytes=peak_memory_bytes(device), wall_s=time.perf_counter() - t_start,
        device=str(device), dtype=str(trainer.dtype).replace("torch.", ""),
        compiled=config.compile and trainer.fallback is None, compile_fallback=trainer.fallback,
        first_step_s=first_step_s)
