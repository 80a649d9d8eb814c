"""A trusted sandbox target that asks the kernel directly what a sandboxed child may do.

Its module sets ``SANDBOX_HOOKS = False``, so the child skips the Python audit hook for it and
every attempt below meets only the kernel layer (namespaces, mounts, seccomp, tmpfs quota), as
code that defeated the hook would. Used by the escape tests and ``benchmarks/check_time.py``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

SANDBOX_HOOKS = False


def _errno(fn: Any) -> str:
    try:
        fn()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "ok"


def _write(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)


def _fill(mib: int) -> None:
    chunk = b"\0" * 2**20
    for name in ("a", "b"):
        with open(name, "wb") as fh:
            for _ in range(mib):
                fh.write(chunk)


def probe(payload: dict[str, Any]) -> dict[str, Any]:
    """Try each forbidden thing once and return the errno name (or "ok") for each."""
    out: dict[str, Any] = {"uid": os.getuid()}
    out["pids"] = len([p for p in os.listdir("/proc") if p.isdigit()])
    out["env"] = sorted(os.environ)
    out["parent_pid_visible"] = os.getppid() > 1 and Path(f"/proc/{os.getppid()}/environ").exists() and any(
        b"OPENAI_API_KEY" in Path(f"/proc/{p}/environ").read_bytes()
        for p in os.listdir("/proc") if p.isdigit() and os.access(f"/proc/{p}/environ", os.R_OK))

    def fork() -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    out["fork"] = _errno(fork)
    out["clone_process"] = _errno(lambda: os.posix_spawn("/bin/true", ["true"], {}))
    out["execve"] = _errno(lambda: os.execv("/bin/true", ["true"]))
    out["pidfd_open"] = _errno(lambda: os.close(os.pidfd_open(1)))

    libc = ctypes.CDLL(None, use_errno=True)

    def ptrace() -> None:
        if libc.ptrace(16, 1, 0, 0) != 0:  # PTRACE_ATTACH to pid 1
            raise OSError(ctypes.get_errno(), "ptrace")

    def unshare() -> None:
        if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "unshare")

    out["ptrace"] = _errno(ptrace)
    out["unshare"] = _errno(unshare)
    out["kill_init"] = _errno(lambda: os.kill(1, 0))
    out["kill_self"] = _errno(lambda: os.kill(os.getpid(), 0))
    out["socket"] = _errno(lambda: socket.socket().close())
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append("ok"))
    t.start()
    t.join()
    out["thread"] = box[0] if box else "failed"
    if payload.get("kill_parent"):
        out["kill_parent"] = _errno(lambda: os.kill(os.getppid(), signal.SIGKILL) if os.getppid() > 1
                                    else os.kill(2**22 - 1, signal.SIGKILL))
    if payload.get("target"):
        out["write_target"] = _errno(lambda: _write(os.path.join(payload["target"], "leak")))
    out["write_root"] = _errno(lambda: _write("/leak"))
    out["write_package"] = _errno(lambda: _write(os.path.join(os.path.dirname(__file__), "leak.py")))
    if payload.get("fill_mib"):
        out["fill"] = _errno(lambda: _fill(int(payload["fill_mib"])))
    return out
