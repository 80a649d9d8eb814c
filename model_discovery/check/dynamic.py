"""Dynamic checks: the trusted code that runs a design inside the sandbox child.

:func:`run_dynamic_checks` is the sandbox target (``model_discovery.check.dynamic:run_dynamic_checks``).
It builds the design at the scale from compiled source (through
:func:`~model_discovery.check.sandbox.load_untrusted_module`) and runs, in order: ``build``,
``params``, ``forward``, ``causality``, ``gradients``, ``speed_memory``, ``effectiveness``. Each
finished check is streamed to the parent, so a timeout still leaves the earlier verdicts.
"""

from __future__ import annotations

import copy
import math
import time
import traceback
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from model_discovery.check.report import CheckConfig, CheckResult
from model_discovery.check.sandbox import UNTRUSTED_FILENAME_PREFIX, load_untrusted_module, report
from model_discovery.gau.design import Design
from model_discovery.gau.scales import ScaleConfig

DYNAMIC_CHECKS: tuple[str, ...] = ("build", "params", "forward", "causality", "gradients", "speed_memory",
                                   "effectiveness")
_FATAL = {"build", "forward"}  # later checks cannot run without these


class CheckFailed(Exception):
    """A check's verdict is negative; the message is the one-line reason."""

    def __init__(self, message: str, figures: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.figures = figures or {}


def sandbox_warmup(threads: int = 1) -> None:
    """Exercise the torch paths the checks use so lazy imports happen before lockdown."""
    torch.set_num_threads(max(1, int(threads)))
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 8)
    conv = torch.nn.Conv1d(8, 8, 3, groups=8, padding=2)
    opt = torch.optim.AdamW(list(lin.parameters()) + list(conv.parameters()), lr=1e-3)
    x = torch.randn(2, 4, 8)
    q = lin(x).view(2, 4, 2, 4).transpose(1, 2)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
        y = F.scaled_dot_product_attention(q, q, q, is_causal=True).transpose(1, 2).reshape(2, 4, 8)
        y = y + conv(x.transpose(1, 2))[..., :4].transpose(1, 2)
        y = y + torch.fft.irfft(torch.fft.rfft(x, n=8, dim=1), n=8, dim=1)[:, :4]
        y = y + torch.cumsum(x, 1) + torch.einsum("btd,bsd->bts", x, x).tril() @ x
        loss = F.cross_entropy(y.reshape(-1, 8), torch.zeros(8, dtype=torch.long)) + torch.linalg.norm(y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(lin.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    copy.deepcopy(lin).double()(torch.randn(1, 8, dtype=torch.float64))
    np.load  # noqa: B018 - numpy is imported before lockdown


# --------------------------------------------------------------------------------------------


def _locate(exc: BaseException, source: str) -> str:
    """'unit NAME: `code line`' for the innermost frame in a design unit's code, else ''."""
    lines = source.splitlines()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(UNTRUSTED_FILENAME_PREFIX)]
    if not frames:
        return ""
    lineno = frames[-1].lineno or 0
    for i in range(min(lineno, len(lines)) - 1, -1, -1):
        line = lines[i]
        if line.startswith("# ---- unit "):
            unit = line[len("# ---- unit "):].split(" ")[0]
            code = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
            return f"unit {unit}: `{code[:120]}`"
        if line.startswith("# ---- "):
            return ""
    return ""


def _exc_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Runner:
    """Runs the checks in order and streams each result to the parent."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.results: list[CheckResult] = []

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> bool:
        report({"phase": name})
        start = time.perf_counter()
        try:
            figures = fn()
            result = CheckResult(name=name, passed=True, figures=figures or {})
        except CheckFailed as exc:
            result = CheckResult(name=name, passed=False, figures=exc.figures, message=f"{name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - design code may raise anything
            where = _locate(exc, self.source)
            msg = f"{name}: {where}: {_exc_line(exc)}" if where else f"{name}: {_exc_line(exc)}"
            result = CheckResult(name=name, passed=False, message=msg)
        result.seconds = round(time.perf_counter() - start, 4)
        self.results.append(result)
        report({"check": result.model_dump()})
        return result.passed


def _batch(tokens: np.ndarray, batch: int, T: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    starts = rng.integers(0, len(tokens) - T - 1, size=batch)
    rows = np.stack([np.asarray(tokens[s:s + T + 1], dtype=np.int64) for s in starts])
    t = torch.from_numpy(rows)
    return t[:, :-1].contiguous(), t[:, 1:].contiguous()


def _gau_modules(model: torch.nn.Module, unit_names: set[str]) -> list[tuple[str, torch.nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if type(m).__name__ in unit_names]


def _first_nonfinite_unit(model: torch.nn.Module, idx: torch.Tensor, unit_names: set[str]) -> str:
    """Which unit first produced a non-finite output (in call order)."""
    found: list[str] = []

    def hook(mod: torch.nn.Module, _inp: Any, out: Any) -> None:
        y = out[0] if isinstance(out, tuple) else out
        if not found and isinstance(y, torch.Tensor) and not torch.isfinite(y).all():
            found.append(f"unit {type(mod).__name__} (block {getattr(mod, 'block_loc', ('?',))[0]})")

    handles = [m.register_forward_hook(hook) for _, m in _gau_modules(model, unit_names)]
    try:
        with torch.no_grad():
            model(idx)
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else "the LM wrapper"


def _causality(model: torch.nn.Module, V: int, T: int, tol: float, dtype: torch.dtype, seed: int) -> dict[str, Any]:
    """Perturbation and gradient tests of causality at several positions; raises CheckFailed."""
    g = torch.Generator().manual_seed(seed + 1)
    ts = sorted({0, T // 3, T // 2, T - 2})
    B = len(ts)
    idx = torch.randint(0, V, (B, T), generator=g)
    idx2 = idx.clone()
    for b, t in enumerate(ts):
        shift = torch.randint(1, V, (T - t - 1,), generator=g)
        idx2[b, t + 1:] = (idx[b, t + 1:] + shift) % V
    emb: list[torch.Tensor] = []

    def keep(_m: Any, _i: Any, out: torch.Tensor) -> None:
        if out.requires_grad:
            out.retain_grad()
        emb.append(out)

    handle = model.wte.register_forward_hook(keep)
    try:
        torch.manual_seed(seed)
        logits1 = model(idx)
        emb1 = emb[-1]
        with torch.no_grad():
            torch.manual_seed(seed)
            logits2 = model(idx2)
    finally:
        handle.remove()
    if logits1.shape != (B, T, V):
        raise CheckFailed(f"logits shape {tuple(logits1.shape)}, expected {(B, T, V)}")
    scale = float(logits1.detach().abs().max()) or 1.0
    change = 0.0
    worst_t = None
    for b, t in enumerate(ts):
        d = float((logits1[b, : t + 1].detach() - logits2[b, : t + 1]).abs().max())
        if d > change:
            change, worst_t = d, t
    r = torch.randn(logits1.shape, generator=g, dtype=logits1.dtype)
    mask = torch.zeros(B, T, 1, dtype=logits1.dtype)
    for b, t in enumerate(ts):
        mask[b, : t + 1] = 1
    (logits1 * r * mask).sum().backward()
    grad = emb1.grad
    if grad is None:
        raise CheckFailed("no gradient reaches the token embeddings; cannot test causality")
    gabs = grad.abs().amax(dim=-1)  # (B, T)
    past = max(float(gabs[b, : t + 1].max()) for b, t in enumerate(ts)) or 1e-30
    leak, leak_t, offsets = 0.0, None, []
    for b, t in enumerate(ts):
        fut = gabs[b, t + 1:]
        if fut.numel():
            m = float(fut.max())
            if m > leak:
                leak, leak_t = m, t
            offsets += [int(i) + 1 for i in torch.nonzero(fut > tol * past).flatten()[:8]]
    ratio = leak / past
    figures = {"dtype": str(dtype).replace("torch.", ""), "positions": ts, "max_logit_change": change,
               "grad_leak_ratio": ratio, "tolerance": tol}
    if change > tol * max(scale, 1.0) or ratio > tol:
        t = leak_t if ratio > tol else worst_t
        where = f"; future offsets seen: +{min(offsets)}..+{max(offsets)}" if offsets else ""
        raise CheckFailed(
            f"not causal: output at position {t} depends on later tokens (max |Δlogit| {change:.2e}, "
            f"gradient leak ratio {ratio:.2e} > {tol:.0e}{where}); mask or shift the offending unit so "
            f"position t sees only positions <= t", figures)
    return figures


def _saved_bytes(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Run ``fn`` while summing unique storages saved for backward."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        except Exception:  # noqa: BLE001 - e.g. tensors without storage
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def run_dynamic_checks(payload: dict[str, Any]) -> dict[str, Any]:
    """Sandbox target: run the dynamic checks of one design (see module docstring).

    payload: ``design`` (Design JSON dict), ``source`` (compiled module), ``scale``
    (ScaleConfig dict), ``config`` (CheckConfig dict), ``allowed_imports``, ``train_path`` and
    ``val_path`` (``.npy`` token files prepared by the parent), ``only`` (optional check names).
    Returns ``{"checks": [CheckResult dicts]}``.
    """
    design = Design.model_validate(payload["design"])
    scale = ScaleConfig.model_validate(payload["scale"])
    cfg = CheckConfig.model_validate(payload.get("config") or {})
    only = set(payload.get("only") or DYNAMIC_CHECKS)
    source: str = payload["source"]
    unit_names = set(design.units)
    V, T, D = scale.vocab_size, scale.context_len, scale.d_model
    runner = _Runner(source)
    state: dict[str, Any] = {}
    rng = np.random.default_rng(cfg.seed)

    def tokens(kind: str) -> np.ndarray:
        if kind not in state:
            arr = np.load(payload[f"{kind}_path"], mmap_mode="r")
            if int(arr.max()) >= V:
                raise CheckFailed(f"{kind} tokens exceed the vocabulary of {V}")
            state[kind] = arr
        return state[kind]

    def build() -> dict[str, Any]:
        start = time.perf_counter()
        module = load_untrusted_module(source, f"gau_{design.name.replace('-', '_')}",
                                       list(payload.get("allowed_imports") or []) + ["json"])
        torch.manual_seed(cfg.seed)
        model = module.build_lm(D, scale.n_block, V, T)
        if not isinstance(model, torch.nn.Module):
            raise CheckFailed(f"build_lm returned {type(model).__name__}, not a module")
        model.train()
        state["model"] = model
        state["module"] = module
        return {"build_s": round(time.perf_counter() - start, 4),
                "total_params": int(sum(p.numel() for p in model.parameters()))}

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
        g = torch.Generator().manual_seed(cfg.seed)
        idx = torch.randint(0, V, (cfg.forward_batch, T), generator=g)
        with torch.no_grad():
            logits = model(idx)
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (cfg.forward_batch, T, V):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise CheckFailed(f"logits shape {shape}, expected {(cfg.forward_batch, T, V)}")
        if not torch.isfinite(logits).all():
            where = _first_nonfinite_unit(model, idx, unit_names)
            raise CheckFailed(f"output contains NaN/Inf; first non-finite output from {where}",
                              {"shape": list(logits.shape)})
        # shorter sequences must work too (generation and evaluation use them)
        with torch.no_grad():
            short = model(idx[:, : max(1, T // 4)])
        if tuple(short.shape) != (cfg.forward_batch, max(1, T // 4), V):
            raise CheckFailed(f"logits shape {tuple(short.shape)} for a sequence of {max(1, T // 4)} tokens")
        return {"shape": list(logits.shape), "logit_std": float(logits.std())}

    def causality() -> dict[str, Any]:
        model = state["model"]
        try:
            prev = torch.get_default_dtype()
            m64 = copy.deepcopy(model).double()
            torch.set_default_dtype(torch.float64)
            try:
                return _causality(m64, V, T, cfg.causality_tol_fp64, torch.float64, cfg.seed)
            finally:
                torch.set_default_dtype(prev)
                del m64
        except CheckFailed:
            raise
        except Exception:  # noqa: BLE001 - design not float64-clean: test in float32
            return _causality(copy.deepcopy(model), V, T, cfg.causality_tol_fp32, torch.float32, cfg.seed)

    def gradients() -> dict[str, Any]:
        model = state["model"]
        model.zero_grad(set_to_none=True)
        x, y = _batch(tokens("train"), 4, T, rng)
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
        model = state["model"]
        model.zero_grad(set_to_none=True)
        vx, vy = _batch(tokens("val"), cfg.train_batch, T, np.random.default_rng(cfg.seed + 3))

        def evaluate() -> float:
            model.eval()
            with torch.no_grad():
                val = float(model.loss(vx, vy))
            model.train()
            return val

        before = evaluate()
        opt = torch.optim.AdamW(model.parameters(), lr=scale.lr, betas=(0.9, 0.95), weight_decay=0.1)
        losses = []
        for step in range(cfg.train_steps):
            x, y = _batch(tokens("train"), cfg.train_batch, T, rng)
            loss = model.loss(x, y)
            if not torch.isfinite(loss):
                raise CheckFailed(f"training loss became {float(loss)} at step {step}",
                                  {"loss_before": before, "losses": losses})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(round(float(loss), 4))
        after = evaluate()
        rel = (before - after) / before if before > 0 else 0.0
        figures = {"loss_before": before, "loss_after": after, "rel_drop": rel, "steps": cfg.train_steps,
                   "first_train_loss": losses[0], "last_train_loss": losses[-1]}
        if not math.isfinite(after):
            raise CheckFailed(f"held-out loss is {after} after {cfg.train_steps} steps", figures)
        if rel < cfg.min_rel_loss_drop:
            raise CheckFailed(f"held-out loss fell only {rel:.1%} ({before:.3f} -> {after:.3f}) over "
                              f"{cfg.train_steps} AdamW steps (need {cfg.min_rel_loss_drop:.0%}); the model "
                              f"does not learn", figures)
        return figures

    steps = {"build": build, "params": params, "forward": forward, "causality": causality,
             "gradients": gradients, "speed_memory": speed_memory, "effectiveness": effectiveness}
    for name in DYNAMIC_CHECKS:
        if name not in only and name not in _FATAL:
            continue
        ok = runner.run(name, steps[name])
        if not ok and name in _FATAL:
            break
    report({"phase": "done"})
    return {"checks": [r.model_dump() for r in runner.results]}
