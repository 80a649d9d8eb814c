"""The compiler toolchain torch.compile may start inside the sandbox, and nothing more."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from model_discovery.check.sandbox import SandboxLimits, run_sandboxed
from model_discovery.check.toolchain import refusal, tool_name

CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("cc")
needs_cxx = pytest.mark.skipif(CXX is None, reason="no C/C++ compiler on PATH")
ENV = {"PATH": "/usr/bin:/bin"}


def test_tool_names_drop_paths_and_versions() -> None:
    assert tool_name("/usr/bin/g++-12") == "g++" and tool_name("clang++") == "clang++"
    assert tool_name("/opt/triton/bin/ptxas") == "ptxas" and tool_name("python3") == "python3"


@needs_cxx
def test_compiler_commands_that_stay_in_the_work_dir_are_allowed(tmp_path: Path) -> None:
    writable = (str(tmp_path) + os.sep,)
    assert refusal(CXX, [CXX, "--version"], ENV, writable) is None
    assert refusal(None, [CXX, "-O2", "-shared", "k.cpp", "-o", str(tmp_path / "k.so")], ENV, writable) is None
    assert refusal(CXX, [CXX, f"-o{tmp_path / 'k.so'}", "k.cpp"], ENV, writable) is None


@needs_cxx
@pytest.mark.parametrize(("argv", "env", "why"), [
    (["/bin/sh", "-c", "true"], ENV, "not a compiler toolchain program"),
    (["python3", "-c", "pass"], ENV, "not a compiler toolchain program"),
    (["CXX", "-fplugin=/tmp/evil.so", "k.cpp"], ENV, "'-fplugin' is not allowed"),
    (["CXX", "-wrapper", "sh,-c,id", "k.cpp"], ENV, "'-wrapper' is not allowed"),
    (["CXX", "@flags.txt"], ENV, "'@flags.txt' is not allowed"),
    (["CXX", "k.cpp", "-o", "/etc/evil.so"], ENV, "outside the writable directories"),
    (["CXX", "--version"], {**ENV, "LD_PRELOAD": "/tmp/x.so"}, "LD_PRELOAD"),
    (["ldconfig", "-X"], ENV, "ldconfig may only run"),
    (["openssl", "s_client", "-connect", "example.com:443"], ENV, "openssl may only run"),
])
def test_anything_else_is_refused(argv: list[str], env: dict[str, str], why: str, tmp_path: Path) -> None:
    argv = [CXX if a == "CXX" else a for a in argv]
    reason = refusal(argv[0], argv, env, (str(tmp_path) + os.sep,))
    assert reason is not None and why in reason


@needs_cxx
def test_a_compiler_planted_in_a_writable_dir_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "g++"
    fake.write_text("#!/bin/sh\nid\n")
    fake.chmod(0o755)
    reason = refusal("g++", ["g++", "--version"], {"PATH": str(tmp_path)}, (str(tmp_path) + os.sep,))
    assert reason is not None and "writable directory" in reason


@needs_cxx
def test_trusted_code_may_start_the_compiler_only_when_allowed() -> None:
    target = "model_discovery.check.probe:run_tool"
    out = run_sandboxed(target, {"argv": [CXX, "--version"]}, SandboxLimits(wall_time_s=60, allow_compilers=True))
    assert out.ok, out.error
    assert out.result["returncode"] == 0 and out.result["stdout"]
    out = run_sandboxed(target, {"argv": [CXX, "--version"]}, SandboxLimits(wall_time_s=60))
    assert out.kind == "violation" and "process creation is not allowed" in out.error
    out = run_sandboxed(target, {"argv": ["/bin/sh", "-c", "true"]},
                        SandboxLimits(wall_time_s=60, allow_compilers=True))
    assert out.kind == "violation" and "not a compiler toolchain program" in out.error


def _untrusted(body: str) -> object:
    source = "import torch\n\ndef main():\n" + "".join(f"    {ln}\n" for ln in body.splitlines())
    return run_sandboxed("model_discovery.check.probe:run_untrusted", {"source": source},
                         SandboxLimits(wall_time_s=60, allow_compilers=True))


@needs_cxx
def test_design_code_may_not_start_the_compiler() -> None:
    spawn = ("imp = torch.nn.Module.__init__.__globals__['__builtins__']['__import__']\n"
             f"try:\n    imp('subprocess').run([{CXX!r}, '--version'])\nexcept PermissionError:\n    pass\n"
             "return 1")
    out = _untrusted(spawn)
    assert out.kind == "violation" and "from design code" in out.error
