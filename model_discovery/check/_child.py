"""Entry point of the sandboxed child: ``python -I -m model_discovery.check._child JOB FD``.

Order matters: limits -> import and warm up the trusted target -> lock down -> call the target.
Every message to the parent is one JSON line on the inherited descriptor ``FD``; the last one is
``{"event": "final", "kind": ..., "result": ..., "error": ...}``.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import traceback
from typing import Any

import torch

from model_discovery.check import isolation, policy, toolchain
from model_discovery.check.channel import SandboxViolation, connect, send
from model_discovery.errors import one_line


def _set_limits(job: dict[str, Any]) -> None:
    def lower(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        new_hard = value if hard == resource.RLIM_INFINITY else min(hard, value)
        resource.setrlimit(which, (min(value, new_hard), new_hard))

    lower(resource.RLIMIT_AS, int(job["address_space_bytes"]))
    cpu = int(job["cpu_time_s"]) + 1
    # soft limit sends SIGXCPU, the hard limit a few seconds later SIGKILL
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    lower(resource.RLIMIT_FSIZE, int(job["max_file_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _is_memory_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text


def main(argv: list[str]) -> int:
    job_path, fd = argv[1], int(argv[2])
    connect(fd)
    sys.dont_write_bytecode = True
    with open(job_path) as fh:
        job = json.load(fh)
    _set_limits(job)
    module_name, func_name = job["target"].split(":", 1)
    try:
        module = importlib.import_module(module_name)
        func = getattr(module, func_name)
        warmup = getattr(module, "sandbox_warmup", None)
        if callable(warmup):
            warmup(job["threads"])
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        send({"event": "final", "kind": "exception", "result": None,
              "error": f"sandbox target {job['target']} failed to load: {one_line(exc, limit=None)}"})
        traceback.print_exc()
        return 1

    try:
        if job.get("allow_compilers"):
            toolchain.warm_up()
        if job.get("init_cuda"):
            if torch.cuda.is_available():
                torch.cuda.init()  # the driver and its libraries load before the audit hook is in place
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        send({"event": "final", "kind": "exception", "result": None,
              "error": f"sandbox warm-up failed: {one_line(exc, limit=None)}"})
        traceback.print_exc()
        return 1
    if job.get("kernel"):
        try:
            isolation.lock_syscalls(allow_processes=bool(job.get("allow_compilers")),
                                    allow_network=bool(job.get("allow_network")))
        except isolation.IsolationUnavailable as exc:
            send({"event": "final", "kind": "exception", "result": None, "error": f"sandbox unavailable: {exc}"})
            return 1
    if getattr(module, "SANDBOX_HOOKS", True):
        policy.install(job["writable_dirs"], job["allowed_imports"], job["allow_network"],
                       bool(job.get("allow_compilers")), job.get("code_dirs"))
    kind, result, error = "ok", None, None
    try:
        result = func(job["payload"])
        if not isinstance(result, dict):
            kind, error = "exception", f"sandbox target returned {type(result).__name__}, expected dict"
            result = None
    except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
        traceback.print_exc()
        if isinstance(exc, SandboxViolation):
            kind, error = "violation", str(exc)
        elif _is_memory_error(exc):
            kind, error = "memory", f"memory allocation failed: {one_line(exc, limit=None)}"
        else:
            kind, error = "exception", one_line(exc, limit=None)
    if policy.VIOLATIONS:
        kind, error = "violation", policy.VIOLATIONS[0]
    try:
        send({"event": "final", "kind": kind, "result": result, "error": error})
    except (TypeError, ValueError) as exc:
        send({"event": "final", "kind": "exception", "result": None,
              "error": f"sandbox target result is not JSON-serialisable: {one_line(exc, limit=None)}"})
    return 0


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
