"""The design's side of the dynamic checks: build the LM from untrusted source and export it.

:func:`export_design` is the sandbox target (``model_discovery.check.dynamic:export_design``) that
runs in the design's own sandboxed process. It builds the design at the scale from compiled source
(through :func:`~model_discovery.check.sandbox.load_untrusted_module`) and exports its operator
graph and weights (:func:`~model_discovery.check.graph.export_lm`) into the one writable
directory. Its checks, ``build`` and ``export``, can only hurt the design if forged: every other
verdict is computed by the judge (:mod:`model_discovery.check.judge`) from the exported graph.
"""

from __future__ import annotations

import copy
import time
import traceback
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model_discovery.check.channel import UNTRUSTED_FILENAME_PREFIX
from model_discovery.check.graph import export_lm
from model_discovery.check.runner import CheckRunner
from model_discovery.check.sandbox import load_untrusted_module, report
from model_discovery.gau.compose import MODULE_IMPORTS
from model_discovery.records import Design, ScaleConfig

DESIGN_CHECKS: tuple[str, ...] = ("build", "export")


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
    from torch.fx.experimental.proxy_tensor import make_fx

    make_fx(lambda t: (lin(t) * 2).sum(-1), pre_dispatch=True)(torch.randn(2, 8))
    import safetensors.torch  # noqa: F401 - the weights writer


# --------------------------------------------------------------------------------------------



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


def _trace(exc: BaseException, source: str, limit: int = 6) -> list[str]:
    """The last ``limit`` frames in the compiled design module: 'line N in fn (unit U): code'."""
    lines = source.splitlines()
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(UNTRUSTED_FILENAME_PREFIX)]
    out = []
    for f in frames[-limit:]:
        n = f.lineno or 0
        marker = next((lines[i] for i in range(min(n, len(lines)) - 1, -1, -1) if lines[i].startswith("# ---- ")), "")
        unit = f" (unit {marker[len('# ---- unit '):].split(' ')[0]})" if marker.startswith("# ---- unit ") else ""
        code = lines[n - 1].strip()[:120] if 0 < n <= len(lines) else ""
        out.append(f"line {n} in {f.name}{unit}: {code}")
    return out


def _exc_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def export_design(payload: dict[str, Any]) -> dict[str, Any]:
    """Sandbox target: build one design and export its graph bundle (see module docstring).

    payload: ``design`` (Design JSON dict), ``source`` (compiled module), ``scale`` (ScaleConfig
    dict), ``allowed_imports``, ``seed``, ``shapes`` (``[mode, batch, length]`` per graph) and
    ``graph_dir`` (writable). Returns ``{"checks": [CheckResult dicts]}``.
    """
    design = Design.model_validate(payload["design"])
    scale = ScaleConfig.model_validate(payload["scale"])
    source: str = payload["source"]
    def describe(exc: BaseException) -> tuple[str, dict[str, Any]]:
        where = _locate(exc, source)
        trace = _trace(exc, source)
        return (f"{where}: {_exc_line(exc)}" if where else _exc_line(exc)), ({"traceback": trace} if trace else {})

    runner = CheckRunner(describe)
    state: dict[str, Any] = {}

    def build() -> dict[str, Any]:
        start = time.perf_counter()
        module = load_untrusted_module(source, f"gau_{design.name.replace('-', '_')}",
                                       [*(payload.get("allowed_imports") or []), *MODULE_IMPORTS])
        torch.manual_seed(int(payload.get("seed", 0)))
        model = module.build_lm(scale.d_model, scale.n_block, scale.vocab_size, scale.context_len)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"build_lm returned {type(model).__name__}, not a module")
        state["model"] = model
        return {"build_s": round(time.perf_counter() - start, 4),
                "total_params": int(sum(p.numel() for p in model.parameters()))}

    def export() -> dict[str, Any]:
        shapes = [(str(m), int(b), int(t)) for m, b, t in payload["shapes"]]
        bundle = export_lm(state["model"], shapes, payload["graph_dir"])
        return {"graphs": [[g.mode, g.batch, g.seq_len, len(g.nodes)] for g in bundle.graphs]}

    if runner.run("build", build):
        runner.run("export", export)
    report({"phase": "done"})
    return {"checks": [r.model_dump() for r in runner.results]}
