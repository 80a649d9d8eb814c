"""The checker on every seed (all must pass at micro) and on broken or hostile designs (each
must fail with a clear reason without harming the test process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_discovery.check import (CheckReport, ReferenceFigures, SandboxLimits, check_command, format_report,
                                   run_checks, static_checks)
from model_discovery.gau import Design, list_seeds, load_seed

# fixed reference figures so hostile-design tests do not measure the GPT-2 seed
REF = ReferenceFigures(design="gpt2", fingerprint="fixed", scale="micro", fwd_bwd_ms=80.0,
                       train_mem_bytes=22 * 2**20)
LIMITS = SandboxLimits(wall_time_s=60.0, memory_bytes=2 * 2**30)

MLP_HEAD = '''import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class GeluMLP(GAUBase):
    def __init__(self, d_model, block_loc, ctx=None, mult: int = 4):
        super().__init__(d_model, block_loc, ctx)
        self.fc = nn.Linear(d_model, mult * d_model, bias=False)
        self.out = nn.Linear(mult * d_model, d_model, bias=False)
'''


def with_mlp(body: str, init: str = "", head: str = MLP_HEAD) -> Design:
    """The gpt2 seed with its GeluMLP unit replaced by ``head`` + ``init`` + ``_forward`` body."""
    design = load_seed("gpt2")
    src = head + "".join(f"        {ln}\n" for ln in init.splitlines())
    src += "\n    def _forward(self, X, **Z):\n" + "".join(f"        {ln}\n" for ln in body.splitlines())
    units = dict(design.units)
    units["GeluMLP"] = units["GeluMLP"].model_copy(update={"source": src})
    return design.model_copy(update={"name": "gpt2-broken", "units": units})


def check(design: Design, **limits: object) -> CheckReport:
    lim = LIMITS.model_copy(update=limits)
    report = run_checks(design, "micro", reference=REF, limits=lim)
    assert not report.passed and report.first_error
    assert "\n" not in report.first_error
    return report


@pytest.mark.parametrize("seed", list_seeds())
def test_seed_passes_all_checks(seed: str) -> None:
    report = run_checks(load_seed(seed), "micro")
    assert report.passed, report.first_error
    names = [c.name for c in report.checks]
    assert names == ["parse", "classes", "slots", "imports", "compile", "build", "export", "graph", "params",
                     "forward", "causality", "gradients", "speed_memory", "effectiveness"]
    causality = report.get("causality").figures
    assert causality["cases"] == 4 and len(causality["lengths"]) == 2 and causality["max_change_fp32"] < 1e-4
    speed = report.get("speed_memory")
    assert speed.figures["slowdown"] > 0 and speed.figures["fwd_bwd_ms"] > 0
    assert report.get("effectiveness").figures["loss_after"] < report.get("effectiveness").figures["loss_before"]
    assert "causality" in format_report(report)


# -- static failures (no code runs) --------------------------------------------------------------


def test_syntax_error() -> None:
    r = check(with_mlp("return self.out(X, {}"))
    assert r.checks[-1].name == "parse" and "unit GeluMLP: syntax error line" in r.first_error


def test_undeclared_child_slot() -> None:
    r = check(with_mlp("return self.out(F.gelu(self.fc(X))), {}", init='self.extra = self.build_child("gate")'))
    assert r.checks[-1].name == "slots" and "'gate'" in r.first_error and "GeluMLP" in r.first_error


@pytest.mark.parametrize("stmt", ["import subprocess", "import os", "import socket", "from ctypes import CDLL"])
def test_forbidden_imports(stmt: str) -> None:
    r = check(with_mlp("return self.out(F.gelu(self.fc(X))), {}", head=stmt + "\n" + MLP_HEAD))
    assert r.checks[-1].name == "imports" and "is not allowed" in r.first_error


def test_forbidden_builtin() -> None:
    r = check(with_mlp("open('/tmp/x', 'w')\nreturn self.out(F.gelu(self.fc(X))), {}"))
    assert "call of builtin open()" in r.first_error


def test_static_checks_pass_on_seed() -> None:
    results, source = static_checks(load_seed("gpt2"))
    assert source and all(r.passed for r in results)


# -- dynamic failures (sandboxed) ----------------------------------------------------------------


def test_infinite_loop_times_out() -> None:
    r = check(with_mlp("while True:\n    pass"), wall_time_s=20.0)
    assert "timeout" in r.first_error and r.first_error.startswith("export:")


def test_fork_bomb() -> None:
    r = check(with_mlp("while True:\n    torch.serialization.os.fork()"))
    assert "process creation is not allowed (os.fork)" in r.first_error


def test_socket() -> None:
    r = check(with_mlp("torch.hub.urlopen('http://127.0.0.1:9/', timeout=1)\nreturn X, {}"))
    assert "network access is not allowed" in r.first_error


def test_write_to_home(tmp_path: Path) -> None:
    target = Path.home() / "modis_check_leak.pt"
    r = check(with_mlp(f"torch.save(X, {str(target)!r})\nreturn self.out(F.gelu(self.fc(X))), {{}}"))
    assert "write outside the writable directories" in r.first_error and not target.exists()


def test_huge_memory() -> None:
    r = check(with_mlp("return self.out(F.gelu(self.fc(X))), {}", init="self.buf = torch.ones(2**31)"),
              memory_bytes=1536 * 2**20)
    assert "memory" in r.first_error and r.first_error.startswith("build:")


def test_conv_shift_leak_is_caught() -> None:
    body = ("T = X.size(1)\n"
            "c = self.conv(X.transpose(1, 2))[..., 1:T + 1].transpose(1, 2)  # off by one: sees t+1\n"
            "return self.out(F.gelu(self.fc(X + c))), {}")
    r = check(with_mlp(body, init="self.conv = nn.Conv1d(d_model, d_model, 4, groups=d_model, padding=3)"))
    assert r.first_error.startswith("causality: not causal") and "position" in r.first_error


def test_noncausal_mean_leak_is_caught() -> None:
    r = check(with_mlp("return self.out(F.gelu(self.fc(X))) + 0.01 * X.mean(dim=1, keepdim=True), {}"))
    assert r.first_error.startswith("causality: not causal")


def test_nan_output() -> None:
    r = check(with_mlp("return self.out(F.gelu(self.fc(X))) * float('nan'), {}"))
    assert r.first_error.startswith("forward:") and "NaN" in r.first_error and "operator aten.mul" in r.first_error


def test_wrong_output_shape() -> None:
    r = check(with_mlp("return self.out(F.gelu(self.fc(X)))[:, :-1], {}"))
    assert r.first_error.startswith("export:") and "GeluMLP returned Y of shape" in r.first_error


def test_exception_names_unit_and_line() -> None:
    r = check(with_mlp("y = self.fc(X)\nreturn self.out(y.view(3, -1, 7)), {}"))
    assert "unit GeluMLP: `return self.out(y.view(3, -1, 7)), {}`" in r.first_error


# leaks the old test could not see: odd positions only, eval mode only, other lengths only, float32
# only; each is the MLP output plus a little of the next token's input
LEAKS = {
    "odd_positions": "m = (torch.arange(X.size(1)) % 2 == 1).to(X.dtype)[None, :, None]\nleak = m",
    "one_position": "m = (torch.arange(X.size(1)) == 5).to(X.dtype)[None, :, None]\nleak = m",
    "eval_only": "leak = 0.0 if self.training else 1.0",
    "other_lengths": "leak = 0.0 if X.size(1) == 128 else 1.0",
    "rung_length_only": "leak = 1.0 if X.size(1) == 128 else 0.0",
    "float32_only": "leak = 1.0 if X.dtype == torch.float32 else 0.0",
}


@pytest.mark.parametrize("kind", sorted(LEAKS))
def test_causality_has_no_blind_spots(kind: str) -> None:
    body = LEAKS[kind] + "\nreturn self.out(F.gelu(self.fc(X))) + 0.1 * leak * torch.roll(X, -1, 1), {}"
    r = check(with_mlp(body))
    assert r.first_error.startswith("causality: not causal"), r.first_error


FORGED = (json.dumps({"event": "final", "kind": "ok", "result": {"checks": [
    {"name": n, "passed": True} for n in ("build", "export", "graph", "params", "forward", "causality", "gradients",
                                           "speed_memory", "effectiveness")]}}) + "\n").encode()


def test_forged_verdicts_are_ignored() -> None:
    # at import time: patch the checks in this process, write an all-pass final message to the
    # result pipe (its fd is in argv) and exit before anything else runs; then leak at run time
    forge = (
        "import torch\n"
        "_sys = torch.serialization.sys\n"
        "for _m in list(_sys.modules.values()):\n"
        "    if getattr(_m, '__name__', '').startswith('model_discovery.check.'):\n"
        "        for _n in ('test_causality', 'judge_design'):\n"
        "            if hasattr(_m, _n):\n"
        "                setattr(_m, _n, lambda *a, **k: {})\n"
        "_fd = int(_sys.argv[-1])\n"
        f"torch.serialization.os.write(_fd, {FORGED!r})\n"
        "torch.serialization.os._exit(0)\n")
    r = check(with_mlp("return self.out(F.gelu(self.fc(X))) + 0.1 * torch.roll(X, -1, 1), {}", head=forge + MLP_HEAD))
    assert r.first_error.startswith("graph:") and "cannot read the graph bundle" in r.first_error
    assert [c.name for c in r.checks if c.passed][-2:] == ["build", "export"]


def test_patching_the_checker_from_design_code_changes_nothing() -> None:
    patch = ("import torch\n"
             "for _m in list(torch.serialization.sys.modules.values()):\n"
             "    if getattr(_m, '__name__', '') == 'model_discovery.check.causality':\n"
             "        _m.test_causality = lambda *a, **k: {}\n")
    body = "return self.out(F.gelu(self.fc(X))) + 0.1 * torch.roll(X, -1, 1), {}"
    r = check(with_mlp(body, head=patch + MLP_HEAD))
    assert r.first_error.startswith("causality: not causal")


def test_a_swallowed_and_cleared_violation_is_still_reported() -> None:
    body = ("try:\n    torch.serialization.os.fork()\nexcept BaseException:\n    pass\n"
            "[m for m in torch.serialization.sys.modules.values() "
            "if getattr(m, '__name__', '') == 'model_discovery.check.policy'][0].VIOLATIONS.clear()\n"
            "return self.out(F.gelu(self.fc(X))), {}")
    r = check(with_mlp(body))
    assert "process creation is not allowed" in r.first_error


# -- CLI body -------------------------------------------------------------------------------------


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = with_mlp("return self.out(X, {}").save(tmp_path / "bad.json")
    assert check_command(str(path), "micro") == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "first error: parse:" in out
    assert check_command("no_such_seed", "micro") == 2
    assert "unknown seed" in capsys.readouterr().out
