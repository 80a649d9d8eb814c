"""The judge's causality test: every position, both modes, float32 and float64, every traced length.

For a graph of length ``L`` one batch holds ``L - 1`` rows: row ``s`` is a random sequence whose
tokens after position ``s`` are all changed. The hidden states at positions ``<= s`` must equal
those of the unchanged sequence (computed under the same random seed, so dropout masks agree; in eval mode one reference row).
Hidden states decide the logits (the judge applies the head itself), so a graph passes exactly
when no output position depends on a later token. The seed is fresh on every run.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from model_discovery.check.graph import GraphLM


class CausalityLeak(Exception):
    """A graph whose output depends on later tokens; the message is the one-line finding."""

    def __init__(self, message: str, figures: dict[str, Any]) -> None:
        super().__init__(message)
        self.figures = figures


class CaseResult(BaseModel):
    """The worst relative change at or before a changed position, for one mode/length/dtype."""

    model_config = ConfigDict(extra="forbid")
    mode: str
    length: int
    dtype: str
    max_change: float
    position: int | None = None
    skipped: str | None = None


def _case(lm: GraphLM, length: int, dtype: torch.dtype, seed: int, chunk: int) -> CaseResult:
    mode = "train" if lm.training else "eval"
    g = torch.Generator().manual_seed(seed)
    V = lm.vocab_size
    device = lm.embedding.device
    base = torch.randint(0, V, (1, length), generator=g)
    rows = base.repeat(length - 1, 1)
    for s in range(length - 1):
        shift = torch.randint(1, V, (length - s - 1,), generator=g)
        rows[s, s + 1:] = (base[0, s + 1:] + shift) % V
    base, rows = base.to(device), rows.to(device)
    worst, where, scale = 0.0, None, 0.0
    fixed = None  # eval mode is deterministic: one reference row serves every chunk
    for lo in range(0, length - 1, chunk):
        n = min(chunk, length - 1 - lo)
        with torch.no_grad():
            torch.manual_seed(seed + lo)
            if lm.training:
                ref = lm.hidden_states(base.expand(n, length).contiguous())
            else:
                fixed = lm.hidden_states(base) if fixed is None else fixed
                ref = fixed.expand(n, -1, -1)
            torch.manual_seed(seed + lo)
            out = lm.hidden_states(rows[lo: lo + n])
        scale = max(scale, float(ref.abs().max()))
        for i in range(n):
            s = lo + i
            d = float((out[i, : s + 1] - ref[i, : s + 1]).abs().max())
            if d != d:  # NaN: a difference we cannot bound
                d = float("inf")
            if d > worst:
                worst, where = d, s
    rel = worst / max(scale, 1.0)
    return CaseResult(mode=mode, length=length, dtype=str(dtype).removeprefix("torch."), max_change=rel,
                      position=where)


def test_causality(lm: GraphLM, *, seed: int, tol_fp32: float, tol_fp64: float, chunk: int = 32) -> dict[str, Any]:
    """Test every traced graph (each mode and length) in float32, and the eval graph at the full
    length also in float64 (for leaks below float32's resolution); return figures, or raise
    :class:`CausalityLeak` naming the worst case.

    Branches of the design's Python on dtype, mode or length were fixed when it was traced: each
    graph is one branch, so testing every graph covers them; float64 only adds precision.
    """
    was_training = lm.training
    cases: list[CaseResult] = []
    main = max(lm.lengths("eval"))
    try:
        for mode in ("eval", "train"):
            lm.train(mode == "train")
            for length in lm.lengths(mode):
                dtypes = (torch.float32, torch.float64) if (mode, length) == ("eval", main) else (torch.float32,)
                for dtype in dtypes:
                    lm.to(dtype)
                    try:
                        cases.append(_case(lm, length, dtype, seed + length, chunk))
                    except Exception as exc:  # noqa: BLE001 - a graph not runnable in float64
                        if dtype is torch.float32:
                            raise
                        cases.append(CaseResult(mode=mode, length=length, dtype="float64", max_change=0.0,
                                                skipped=f"{type(exc).__name__}: {str(exc)[:120]}"))
    finally:
        lm.to(torch.float32)
        lm.train(was_training)
    figures: dict[str, Any] = {
        "seed": seed, "cases": len(cases), "lengths": sorted({c.length for c in cases}),
        "max_change_fp32": max((c.max_change for c in cases if c.dtype == "float32"), default=0.0),
        "max_change_fp64": max((c.max_change for c in cases if c.dtype == "float64" and not c.skipped), default=0.0),
        "skipped": [f"{c.mode}/T={c.length}/{c.dtype}: {c.skipped}" for c in cases if c.skipped],
    }
    leaks = [c for c in cases if not c.skipped and c.max_change > (tol_fp64 if c.dtype == "float64" else tol_fp32)]
    if leaks:
        c = max(leaks, key=lambda c: c.max_change)
        raise CausalityLeak(
            f"not causal: in {c.mode} mode at length {c.length} ({c.dtype}) the output at position "
            f"{c.position} changes when only later tokens change (relative change {c.max_change:.2e}); "
            f"mask or shift the offending unit so position t sees only positions <= t", figures)
    return figures
