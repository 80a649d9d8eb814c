"""Trusted sandbox targets for exercising the sandbox itself (used by its tests and by
``modis`` diagnostics): a torch workout that must keep working after lockdown, and a runner for
an untrusted snippet loaded with restricted builtins."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from model_discovery.check.dynamic import sandbox_warmup
from model_discovery.check.sandbox import DEFAULT_ALLOWED_IMPORTS, load_untrusted_module, report

__all__ = ["sandbox_warmup", "torch_workout", "run_untrusted", "run_tool", "echo"]


def echo(payload: dict[str, Any]) -> dict[str, Any]:
    """Return the payload (round-trip test of the channel)."""
    report({"phase": "echo"})
    return {"payload": payload}


def torch_workout(payload: dict[str, Any]) -> dict[str, Any]:
    """Legitimate torch use after lockdown: threads, lazy torch modules, training, save/load in
    the work dir, reading torch's own files."""
    torch.set_num_threads(int(payload.get("threads", 2)))
    out: dict[str, Any] = {"threads": torch.get_num_threads()}
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x = torch.randn(64, 16)
    first = last = 0.0
    for step in range(20):
        loss = F.mse_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = loss.item()
        first = value if step == 0 else first
        last = value
    out["loss_fell"] = last < first
    q = torch.randn(2, 2, 8, 4)
    out["sdpa"] = list(F.scaled_dot_product_attention(q, q, q, is_causal=True).shape)
    out["fft"] = float(torch.fft.irfft(torch.fft.rfft(torch.arange(8.0)), n=8)[3])
    out["eigh"] = float(torch.linalg.eigvalsh(torch.eye(3) * 2)[0])
    import torch.distributions as dist  # lazy torch submodule import after lockdown

    out["normal"] = float(dist.Normal(0.0, 1.0).log_prob(torch.tensor(0.0)))
    results: list[float] = []
    worker = threading.Thread(target=lambda: results.append(float(torch.ones(4).sum())))
    worker.start()
    worker.join()
    out["thread"] = results[0]
    path = Path.cwd() / "ckpt.pt"
    torch.save(model.state_dict(), path)
    out["reloaded"] = len(torch.load(path, weights_only=True))
    out["read_own_file"] = len(Path(torch.__file__).read_text()) > 0
    return out


def run_untrusted(payload: dict[str, Any]) -> dict[str, Any]:
    """Load ``payload['source']`` as untrusted code and return ``repr(main())``."""
    report({"phase": "untrusted"})
    module = load_untrusted_module(payload["source"], "snippet",
                                   payload.get("allowed_imports") or list(DEFAULT_ALLOWED_IMPORTS))
    return {"value": repr(module.main())}


def run_tool(payload: dict[str, Any]) -> dict[str, Any]:
    """Start ``payload['argv']`` from trusted code (as torch.compile's toolchain would)."""
    done = subprocess.run(payload["argv"], capture_output=True, text=True, timeout=60, check=False)
    return {"returncode": done.returncode, "stdout": done.stdout[:2000]}
