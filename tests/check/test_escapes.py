"""Escape classes against the kernel layer of the sandbox.

Each hostile snippet first does what a design written to defeat the Python audit hook can do:
it reaches ``os`` without an import (``torch.os``) and, where it needs to, neutralises the hook
by swapping the guarded functions back. What must hold is the kernel's part: namespaces, the
read-only mount view, the seccomp filter, the tmpfs quota and the parent's watchdog.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from model_discovery.check import isolation
from model_discovery.check.sandbox import SandboxLimits, SandboxOutcome, run_sandboxed

RUN = "model_discovery.check.probe:run_untrusted"
pytestmark = pytest.mark.skipif(not isolation.kernel_isolation_enabled(), reason="MODIS_SANDBOX=hooks-only")

def hostile(body: str, **limits: object) -> SandboxOutcome:
    source = "import torch\n\ndef main():\n" + "".join(f"    {ln}\n" for ln in body.splitlines())
    return run_sandboxed(RUN, {"source": source}, SandboxLimits(**{"wall_time_s": 60.0, **limits}))


def value(out: SandboxOutcome) -> str:
    assert out.ok, out.error
    return out.result["value"]


def test_the_python_hook_cannot_be_switched_off() -> None:
    # the attack that worked: find the policy object through the guarded torch writer and turn it off
    out = hostile("pol = [c.cell_contents for c in torch._C.PyTorchFileWriter.__closure__\n"
                  "       if type(c.cell_contents).__name__ == 'Policy'][0]\n"
                  "pol.active = False\n"
                  "torch.os.system('id')\n"
                  "return 1")
    assert not out.ok and out.kind == "violation" and "process creation" in out.error


def test_seccomp_refuses_processes_pidfds_and_signals() -> None:
    # ask the kernel directly: this runs as trusted code, so the hook does not interfere
    out = run_sandboxed("model_discovery.check.kernel_probe:probe", {}, SandboxLimits(wall_time_s=60))
    assert out.ok, out.error
    r = out.result
    assert r["fork"] == "EPERM" and r["clone_process"] == "EPERM" and r["execve"] == "EPERM"
    assert r["pidfd_open"] == "EPERM" and r["ptrace"] == "EPERM" and r["kill_init"] == "EPERM"
    assert r["socket"] == "EACCES" and r["unshare"] == "EPERM"
    assert r["thread"] == "ok" and r["kill_self"] == "ok"


def test_parent_processes_and_their_environments_are_invisible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    out = run_sandboxed("model_discovery.check.kernel_probe:probe", {}, SandboxLimits(wall_time_s=60))
    r = out.result
    assert "sk-test-secret-123" not in out.model_dump_json()
    assert r["uid"] == isolation.SANDBOX_UID and r["pids"] <= 3 and "OPENAI_API_KEY" not in r["env"]
    assert r["parent_pid_visible"] is False


def test_writes_outside_need_a_writable_mount(tmp_path: Path) -> None:
    out = run_sandboxed("model_discovery.check.kernel_probe:probe", {"target": str(tmp_path)},
                        SandboxLimits(wall_time_s=60))
    r = out.result
    assert r["write_target"] in ("ENOENT", "EROFS", "EACCES") and r["write_root"] in ("EROFS", "EACCES")
    assert r["write_package"] in ("EROFS", "EACCES")
    assert list(tmp_path.iterdir()) == []


def test_total_disk_quota_in_the_work_dir() -> None:
    out = run_sandboxed("model_discovery.check.kernel_probe:probe", {"fill_mib": 48},
                        SandboxLimits(wall_time_s=60, disk_bytes=64 * 2**20))
    assert out.result["fill"] == "ENOSPC"


def test_the_caller_survives_and_nothing_outlives_the_run(tmp_path: Path) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    out = run_sandboxed("model_discovery.check.kernel_probe:probe", {"kill_parent": True},
                        SandboxLimits(wall_time_s=60))
    assert out.ok and out.result["kill_parent"] in ("EPERM", "ESRCH")
    time.sleep(0.2)
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before
    assert os.getpid() == psutil.Process().pid


def test_a_hung_child_dies_with_its_whole_namespace() -> None:
    out = hostile("import time\nwhile True:\n    time.sleep(0.05)", wall_time_s=3)
    assert out.kind in ("timeout", "violation")
    left = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "model_discovery.check._child" in " ".join(p.cmdline()):
                left.append(p)
        except psutil.Error:
            continue
    assert not left


def test_writes_by_dir_fd_and_torchscript_save_cannot_leave_the_sandbox(tmp_path: Path) -> None:
    # the two routes around the hook's path check: a relative path with dir_fd, and ScriptModule.save
    body = (f"fd = torch.os.open({str(tmp_path)!r}, torch.os.O_RDONLY)\n"
            "torch.os.open('leak', torch.os.O_WRONLY | torch.os.O_CREAT, dir_fd=fd)\n")
    out = hostile(body)
    assert not out.ok and "No such file or directory" in out.error
    body = (f"m = torch.jit.script(torch.nn.Linear(2, 2))\nm.save({str(tmp_path / 'leak.pt')!r})\nreturn 1")
    out = hostile(body)
    assert not out.ok
    assert list(tmp_path.iterdir()) == []


def test_the_writable_dirs_share_the_total_quota(tmp_path: Path) -> None:
    body = (f"for i in range(3):\n"
            f"    torch.save(torch.zeros(10 * 2**20 // 4 * 4), {str(tmp_path)!r} + f'/part{{i}}.pt')\n"
            "x = 0\nfor _ in range(10**8):\n    x += 1\nreturn x")
    out = hostile(body, writable_dirs=[tmp_path], disk_bytes=64 * 2**20, wall_time_s=120)
    assert out.kind == "violation" and "disk quota exceeded" in out.error
