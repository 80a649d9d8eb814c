"""The judge: trusted code that computes every dynamic verdict from a design's operator graph.

:func:`judge_design` is a sandbox target (``model_discovery.check.judge:judge_design``) that runs
in its own sandboxed process, apart from the design's: it loads the graph bundle the design's
process exported (:mod:`model_discovery.check.graph`) as data and runs, in order, ``params``
(counted from the weights), ``forward``, ``causality`` (:mod:`model_discovery.check.causality`),
``gradients``, ``speed_memory`` and ``effectiveness``. No design Python runs here, so nothing can
patch a check, see the held-out tokens before they are scored, or forge the result.
"""

from __future__ import annotations

import math
import time
from contextlib import suppress
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from model_discovery.check.causality import CausalityLeak, test_causality
from model_discovery.check.graph import GraphError, GraphLM, load_graph_lm
from model_discovery.check.runner import CheckRunner
from model_discovery.check.sandbox import report
from model_discovery.records import CheckConfig, ScaleConfig, TrainConfig
from model_discovery.train.corpus import TokenData
from model_discovery.train.loop import Trainer, TrainingError, fit, get_batch

JUDGE_CHECKS: tuple[str, ...] = ("params", "forward", "causality", "gradients", "speed_memory", "effectiveness")


class CheckFailed(Exception):
    """A check's verdict is negative; the message is the one-line reason."""

    def __init__(self, message: str, figures: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.figures = figures or {}


def sandbox_warmup(threads: int = 1) -> None:
    """Load what the checks use before lockdown (no tracing: the judge only runs graphs)."""
    torch.set_num_threads(max(1, int(threads)))
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(2, 4, 8)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        F.cross_entropy(lin(x).reshape(-1, 8), torch.zeros(8, dtype=torch.long)).backward()
    trainer = Trainer(torch.nn.Sequential(torch.nn.Embedding(8, 8), lin),
                      TrainConfig(max_steps=1, batch_size=2, context_len=4, lr=1e-3, device="cpu", progress=False))
    fit(trainer, lambda step: trainer.batch(np.arange(16, dtype=np.uint16) % 8, step))
    lin.double()(torch.randn(1, 8, dtype=torch.float64))
    import safetensors.torch  # noqa: F401 - the weights reader


def _describe(exc: BaseException) -> tuple[str, dict[str, Any]]:
    if isinstance(exc, (CheckFailed, CausalityLeak)):
        return str(exc), exc.figures
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}", {}


def _first_nonfinite(lm: GraphLM, idx: torch.Tensor) -> str:
    """The first operator of the eval graph whose output is not finite."""
    g = lm._graph(idx.shape[1])
    chunk = idx[: g.spec.batch]
    chunk = F.pad(chunk, (0, g.spec.seq_len - chunk.shape[1], 0, g.spec.batch - chunk.shape[0]))
    found: list[str] = []

    def observe(node: Any, out: Any) -> bool:
        if isinstance(out, torch.Tensor) and out.is_floating_point() and not torch.isfinite(out).all():
            found.append(f"operator {node.target} (node {node.name})")
        return bool(found)

    with torch.no_grad():
        g.run(lm._state(), chunk, observe)
    return found[0] if found else "the LM head"


def _saved_bytes(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Run ``fn`` while summing unique storages saved for backward."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        with suppress(Exception):  # e.g. tensors without storage
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def judge_design(payload: dict[str, Any]) -> dict[str, Any]:
    """Sandbox target: judge one exported design (see module docstring).

    payload: ``graph_dir`` (the bundle), ``scale`` (ScaleConfig dict), ``config`` (CheckConfig
    dict), ``data_dir`` (a built token directory, read only), ``causality_seed`` (fresh per run),
    ``only`` (optional check names). Returns ``{"checks": [CheckResult dicts]}``.
    """
    scale = ScaleConfig.model_validate(payload["scale"])
    cfg = CheckConfig.model_validate(payload.get("config") or {})
    only = set(payload.get("only") or JUDGE_CHECKS)
    V, T = scale.vocab_size, scale.context_len
    runner = CheckRunner(_describe)
    state: dict[str, Any] = {}

    def tokens(kind: str) -> np.ndarray:
        if kind not in state:
            arr = TokenData.open(payload["data_dir"]).split(kind)
            if int(arr.max()) >= V:
                raise CheckFailed(f"{kind} tokens exceed the vocabulary of {V}")
            state[kind] = arr
        return state[kind]

    def graph() -> dict[str, Any]:
        try:
            lm = load_graph_lm(payload["graph_dir"])
        except GraphError as exc:
            raise CheckFailed(str(exc)) from exc
        if lm.vocab_size != V or lm.d_model != scale.d_model:
            raise CheckFailed(f"graph has vocabulary {lm.vocab_size} and width {lm.d_model}, the rung "
                              f"{scale.name} needs {V} and {scale.d_model}")
        lm.train()
        state["model"] = lm
        return {"graphs": [[g.spec.mode, g.spec.batch, g.spec.seq_len, len(g.steps)] for g in lm.graphs],
                "total_params": lm.num_params(non_embedding=False)}

    def params() -> dict[str, Any]:
        n = int(state["model"].num_params(non_embedding=True))
        lo, hi = scale.param_limits()
        figures = {"non_embedding_params": n, "limits": [lo, hi]}
        if not lo <= n <= hi:
            side = "above" if n > hi else "below"
            raise CheckFailed(f"{n:,} non-embedding parameters is {side} the {scale.name} band "
                              f"[{lo:,}, {hi:,}]; change the units' size hyperparameters", figures)
        return figures

    def forward() -> dict[str, Any]:
        model = state["model"]
        model.eval()
        try:
            g = torch.Generator().manual_seed(cfg.seed)
            idx = torch.randint(0, V, (cfg.forward_batch, T), generator=g)
            with torch.no_grad():
                logits = model(idx)
            if not torch.isfinite(logits).all():
                raise CheckFailed(f"output contains NaN/Inf; first non-finite output from "
                                  f"{_first_nonfinite(model, idx)}", {"shape": list(logits.shape)})
            for length in model.lengths("eval"):
                with torch.no_grad():
                    short = model(idx[:, :length])
                if not torch.isfinite(short).all():
                    raise CheckFailed(f"output contains NaN/Inf for a sequence of {length} tokens")
        finally:
            model.train()
        return {"shape": list(logits.shape), "logit_std": float(logits.std()), "lengths": model.lengths("eval")}

    def causality() -> dict[str, Any]:
        return test_causality(state["model"], seed=int(payload.get("causality_seed", cfg.seed)),
                              tol_fp32=cfg.causality_tol_fp32, tol_fp64=cfg.causality_tol_fp64)

    def gradients() -> dict[str, Any]:
        model = state["model"]
        model.zero_grad(set_to_none=True)
        x, y = get_batch(tokens("train"), 4, T, (cfg.seed,), torch.device("cpu"))
        torch.manual_seed(cfg.seed)
        loss = model.loss(x, y)
        if not torch.isfinite(loss):
            raise CheckFailed(f"loss is {float(loss)} on real tokens")
        loss.backward()
        missing, bad, zero = [], [], []
        sq = 0.0
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if p.grad is None:
                missing.append(name)
            elif not torch.isfinite(p.grad).all():
                bad.append(name)
            else:
                sq += float(p.grad.double().pow(2).sum())
                if not p.grad.any():
                    zero.append(name)
        model.zero_grad(set_to_none=True)
        figures = {"loss": float(loss), "grad_norm": math.sqrt(sq), "zero_grad_params": zero[:5]}
        if bad:
            raise CheckFailed(f"non-finite gradients in {len(bad)} parameters, first {bad[0]}", figures)
        if missing:
            raise CheckFailed(f"no gradient reaches {len(missing)} parameters (unused in forward?), "
                              f"first {missing[0]}", figures)
        return figures

    def speed_memory() -> dict[str, Any]:
        model = state["model"]
        B = cfg.speed_batch
        g = torch.Generator().manual_seed(cfg.seed + 2)
        x = torch.randint(0, V, (B, T), generator=g)
        y = torch.randint(0, V, (B, T), generator=g)
        model.zero_grad(set_to_none=True)
        loss, act = _saved_bytes(lambda: model.loss(x, y))
        loss.backward()
        times = []
        for _ in range(cfg.speed_iters):
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            model.loss(x, y).backward()
            times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
        ms = min(times) * 1000
        param_bytes = int(sum(p.numel() * p.element_size() for p in model.parameters()))
        return {"fwd_bwd_ms": round(ms, 3), "tokens_per_s": round(B * T / (ms / 1000)),
                "activation_bytes": int(act), "param_bytes": param_bytes,
                "train_mem_bytes": int(act + 4 * param_bytes), "batch": B, "seq": T}

    def effectiveness() -> dict[str, Any]:
        # the verification trainer's loop at a constant learning rate (no warmup, no decay)
        state["model"].zero_grad(set_to_none=True)
        trainer = Trainer(state["model"], TrainConfig(
            max_steps=cfg.train_steps, batch_size=cfg.train_batch, context_len=T, lr=scale.lr, min_lr_ratio=1.0,
            device="cpu", dtype="float32", seed=cfg.seed, progress=False))
        before = trainer.evaluate(tokens("val"), 1)
        try:
            losses = fit(trainer, lambda step: trainer.batch(tokens("train"), step))
        except TrainingError as exc:
            raise CheckFailed(str(exc), {"loss_before": before}) from exc
        after = trainer.evaluate(tokens("val"), 1)
        rel = (before - after) / before if before > 0 else 0.0
        figures = {"loss_before": before, "loss_after": after, "rel_drop": rel, "steps": cfg.train_steps,
                   "first_train_loss": round(losses[0], 4), "last_train_loss": round(losses[-1], 4)}
        if not math.isfinite(after):
            raise CheckFailed(f"held-out loss is {after} after {cfg.train_steps} steps", figures)
        if rel < cfg.min_rel_loss_drop:
            raise CheckFailed(f"held-out loss fell only {rel:.1%} ({before:.3f} -> {after:.3f}) over "
                              f"{cfg.train_steps} AdamW steps (need {cfg.min_rel_loss_drop:.0%}); the model "
                              f"does not learn", figures)
        return figures

    steps = {"params": params, "forward": forward, "causality": causality, "gradients": gradients,
             "speed_memory": speed_memory, "effectiveness": effectiveness}
    if runner.run("graph", graph):
        for name in JUDGE_CHECKS:
            if name not in only and name != "forward":
                continue
            if not runner.run(name, steps[name]) and name == "forward":
                break
    report({"phase": "done"})
    return {"checks": [r.model_dump() for r in runner.results]}
