"""Run trusted code that executes untrusted design code inside a locked-down subprocess.

:func:`run_sandboxed` spawns ``python -I -m model_discovery.check._child`` in its own process
group, with a fresh environment, ``cwd``/``HOME``/``TMPDIR`` set to a fresh temporary directory
and stdin closed. The child sets resource limits (address space, CPU time, file size, no core
dumps), imports the trusted target module (``torch`` and friends) and lets it warm up, then
installs an audit hook (:mod:`model_discovery.check.policy`) that denies network access, process
creation, ``ctypes``, signals to other processes, raising resource limits, writes outside the
writable directories, and imports/exec/compile from untrusted code outside the allowlist. Only
then does it call the target with the payload. Results and progress events travel back as JSON
lines over an inherited pipe.

The parent enforces the wall-clock limit and an RSS watchdog (``psutil``), kills the whole
process group on timeout or memory overrun, and never raises for child misbehaviour: it returns
a :class:`SandboxOutcome` whose ``kind`` says what happened.

When running as root with ``unshare`` available, the child also gets an empty network namespace.

Threat model: the process boundary, the network namespace, the OS resource limits and the parent's
watchdog hold against any code; the audit hook and the restricted builtins (:func:`load_untrusted_module`) stop the
accidental and the naive (a design that opens a socket, forks, writes files, shells out). Python
audit hooks are not a boundary against code written to defeat them; run the checker inside a
container or VM when designs come from an adversary. Files written from C/C++ code raise no audit
event; torch's serialization writer and shared ``from_file`` are path-checked in Python, and
``RLIMIT_FSIZE`` caps every file. ``SandboxLimits.allow_compilers`` (set by verifications that
use ``torch.compile``) lets trusted code start a vetted compiler toolchain
(:mod:`model_discovery.check.toolchain`).
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

import psutil
from pydantic import BaseModel, ConfigDict, Field

from model_discovery.check import isolation, policy
from model_discovery.check.channel import UNTRUSTED_FILENAME_PREFIX, send
from model_discovery.gau.compose import module_name

# Import roots that design (untrusted) code may use. Trusted code may import anything.
DEFAULT_ALLOWED_IMPORTS: tuple[str, ...] = (
    "torch", "math", "typing", "functools", "itertools", "collections", "dataclasses",
    "operator", "abc", "enum", "numbers", "__future__",
)
_RESULT_CAP_BYTES = 32 * 1024 * 1024
_STDERR_TAIL_CHARS = 2000

#: process group ids of the sandboxed children running now (each leads its own session)
_LIVE: set[int] = set()
_LIVE_LOCK = threading.Lock()

OutcomeKind = Literal["ok", "timeout", "memory", "crash", "violation", "exception"]


class SandboxLimits(BaseModel):
    """Resources and permissions of one sandboxed run."""

    model_config = ConfigDict(extra="forbid")

    wall_time_s: float = Field(120.0, gt=0, description="wall-clock limit; the process group is killed after it")
    cpu_time_s: float | None = Field(None, gt=0, description="RLIMIT_CPU; None: 2 x wall_time_s x threads")
    memory_bytes: int = Field(4 * 2**30, gt=0, description="RSS limit enforced by the parent's watchdog")
    address_space_bytes: int | None = Field(
        None, gt=0, description="RLIMIT_AS (torch reserves much address space); None: 4 x memory_bytes + 8 GiB")
    max_file_bytes: int = Field(1 * 2**30, gt=0, description="RLIMIT_FSIZE: largest file the child may write")
    disk_bytes: int = Field(2 * 2**30, gt=0, description="total the child may write: the size of its tmpfs work "
                                                          "dir (kernel), and of the writable dirs (watchdog)")
    writable_dirs: list[Path] = Field(
        default_factory=list, description="extra writable directories; the fresh work dir is always writable")
    readable_paths: list[Path] = Field(
        default_factory=list, description="input files and directories the child may read (besides Python, "
                                          "the system libraries and this package)")
    allowed_imports: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_IMPORTS),
        description="import roots allowed to untrusted code (trusted modules may import anything)")
    allow_network: bool = False
    allow_compilers: bool = Field(False, description="let torch.compile start its compiler toolchain "
                                                     "(model_discovery.check.toolchain)")
    init_cuda: bool = Field(False, description="initialise CUDA before the lockdown (runs that train on a GPU)")
    threads: int = Field(1, gt=0, description="OMP/MKL threads and torch intra-op threads")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment variables for the child")
    poll_interval_s: float = Field(0.05, gt=0, description="watchdog sampling period")

    def effective_cpu_time_s(self) -> float:
        return self.cpu_time_s if self.cpu_time_s is not None else 2.0 * self.wall_time_s * self.threads + 30.0

    def effective_address_space(self) -> int:
        return self.address_space_bytes or (4 * self.memory_bytes + 8 * 2**30)


class SandboxOutcome(BaseModel):
    """What happened in one sandboxed run (never an exception for child misbehaviour)."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    kind: OutcomeKind
    result: dict[str, Any] | None = None
    error: str | None = Field(None, description="one line: what went wrong")
    wall_s: float
    peak_rss_bytes: int = 0
    returncode: int | None = None
    phase: str | None = Field(None, description="last progress phase the child reported")
    events: list[dict[str, Any]] = Field(default_factory=list, description="progress events, in order")
    stderr_tail: str = ""


# --------------------------------------------------------------------------------------------
# child-side helpers usable by trusted targets


def report(event: dict[str, Any]) -> None:
    """Send a progress event from inside the sandbox to the parent (no-op outside a sandbox)."""
    send({"event": "progress", **event})


def load_untrusted_module(source: str, name: str, allowed_imports: list[str] | tuple[str, ...]) -> Any:
    """Execute untrusted module source with restricted builtins; return the module.

    The module's code gets its own ``__builtins__``: ``exec``, ``eval``, ``compile``, ``open``,
    ``input`` and ``breakpoint`` are removed and ``__import__`` admits only ``allowed_imports``
    roots (also for modules already imported elsewhere). Code is compiled with a filename
    starting with :data:`UNTRUSTED_FILENAME_PREFIX`, which the child's audit hook uses to tell
    untrusted frames from trusted ones. Like :func:`~model_discovery.gau.compose.load_module`,
    the module is registered in ``sys.modules`` for ``torch.compile``. Call only inside the sandbox.
    """
    allowed = frozenset(allowed_imports)
    real_import = builtins.__import__

    def guarded_import(mod: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        root = mod.split(".")[0]
        if level != 0 or root not in allowed:
            policy.violation(f"import of {mod!r} is not allowed (allowed: {', '.join(sorted(allowed))})")
        return real_import(mod, globals, locals, fromlist, level)

    safe = dict(builtins.__dict__)
    for banned in ("exec", "eval", "compile", "open", "input", "breakpoint", "help", "exit", "quit"):
        safe.pop(banned, None)
    safe["__import__"] = guarded_import
    module = types.ModuleType(module_name(source, name))
    sys.modules[module.__name__] = module
    module.__dict__["__builtins__"] = safe
    filename = f"{UNTRUSTED_FILENAME_PREFIX}{name}>"
    module.__dict__["__file__"] = filename
    code = compile(source, filename, "exec")
    exec(code, module.__dict__)  # noqa: S102 - this is the sandbox
    return module


# --------------------------------------------------------------------------------------------
# parent side


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4 * _STDERR_TAIL_CHARS))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return text[-_STDERR_TAIL_CHARS:]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _group_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        with suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def _dir_bytes(root: Path) -> int:
    """Bytes allocated under ``root`` (symlinks not followed)."""
    total = 0
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for e in entries:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append(Path(e.path))
                        else:
                            total += e.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _kill_group(pid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def live_sandboxes() -> list[int]:
    """Process group ids of this process's sandboxed children that are running now."""
    with _LIVE_LOCK:
        return sorted(_LIVE)


def kill_sandboxes() -> int:
    """Kill every sandboxed child of this process now (a stopping process ends what it started).

    Each :func:`run_sandboxed` waiting on a killed child then returns a ``crash`` outcome and
    removes its temporary folders as usual. Returns how many process groups were signalled.
    """
    groups = live_sandboxes()
    for pgid in groups:
        _kill_group(pgid)
    return len(groups)


def _compiler_cache_dirs(work: Path) -> tuple[Path, Path]:
    """Where Inductor and Triton keep the code they generate, inside the child's work dir."""
    return work / "torchinductor", work / "triton"


def _child_env(limits: SandboxLimits, work: Path) -> dict[str, str]:
    inductor_cache, triton_cache = _compiler_cache_dirs(work)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "TMPDIR": str(work),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": str(limits.threads),
        "MKL_NUM_THREADS": str(limits.threads),
        "OPENBLAS_NUM_THREADS": str(limits.threads),
        "TORCHINDUCTOR_CACHE_DIR": str(inductor_cache),
        "TRITON_CACHE_DIR": str(triton_cache),
        "WANDB_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    for key in ("CUDA_VISIBLE_DEVICES", "MODIS_LIBRARY"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(limits.env)
    return env


def _command(limits: SandboxLimits, work: Path, control: Path, env: dict[str, str]) -> list[str]:
    """The isolation prefix (bubblewrap) for one child; raises IsolationUnavailable."""
    if not isolation.kernel_isolation_enabled():
        return []
    return isolation.bwrap_command(
        work=work, disk_bytes=limits.disk_bytes, readable=[control, *limits.readable_paths],
        writable=limits.writable_dirs, env=env, allow_network=limits.allow_network, gpu=limits.init_cuda)


def run_sandboxed(target: str, payload: dict[str, Any], limits: SandboxLimits | None = None) -> SandboxOutcome:
    """Call trusted ``target`` ("package.module:function") on ``payload`` in a sandboxed child.

    ``target`` is imported before lockdown (so it may import torch and any trusted module); the
    function then runs under the lockdown and must return a JSON-serialisable dict. A module-level
    ``sandbox_warmup()`` in the target's module, if present, runs before lockdown (to trigger
    lazy imports). Inside the target, :func:`report` streams progress events to the parent.

    Returns a :class:`SandboxOutcome`; misbehaviour of the child (timeout, memory, crash,
    violation, exception, garbage output) is reported in it, never raised.
    """
    limits = limits or SandboxLimits()
    if ":" not in target:
        raise ValueError(f"sandbox target {target!r} must look like 'package.module:function'")
    start = time.monotonic()
    control = Path(tempfile.mkdtemp(prefix="modis-sbx-ctl-"))
    work = Path(tempfile.mkdtemp(prefix="modis-sbx-work-"))
    events: list[dict[str, Any]] = []
    final: dict[str, Any] | None = None
    peak = 0
    proc: subprocess.Popen[bytes] | None = None
    read_fd = write_fd = -1
    try:
        writable = [str(work), *(str(Path(d).resolve()) for d in limits.writable_dirs)]
        job = {
            "target": target,
            "payload": payload,
            "work_dir": str(work),
            "writable_dirs": writable,
            "allowed_imports": list(limits.allowed_imports),
            "allow_network": limits.allow_network,
            "allow_compilers": limits.allow_compilers,
            "init_cuda": limits.init_cuda,
            "code_dirs": [str(d) for d in _compiler_cache_dirs(work)] if limits.allow_compilers else [],
            "threads": limits.threads,
            "address_space_bytes": limits.effective_address_space(),
            "cpu_time_s": limits.effective_cpu_time_s(),
            "max_file_bytes": limits.max_file_bytes,
            "kernel": isolation.kernel_isolation_enabled(),
        }
        job_path = control / "job.json"
        try:
            job_path.write_text(json.dumps(job))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sandbox payload for {target} is not JSON-serialisable: {exc}") from exc
        read_fd, write_fd = os.pipe()
        stderr_path = control / "stderr.txt"
        env = _child_env(limits, work)
        try:
            prefix = _command(limits, work, control, env)
        except isolation.IsolationUnavailable as exc:
            return SandboxOutcome(ok=False, kind="crash", error=f"sandbox unavailable: {exc}",
                                  wall_s=time.monotonic() - start)
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                [*prefix, sys.executable, "-I", "-m", "model_discovery.check._child", str(job_path), str(write_fd)],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=str(work),
                env=env, pass_fds=(write_fd,), start_new_session=True, close_fds=True)
        with _LIVE_LOCK:
            _LIVE.add(proc.pid)
        os.close(write_fd)
        write_fd = -1

        chunks: list[bytes] = []
        size = [0]

        def reader() -> None:
            while True:
                try:
                    data = os.read(read_fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                if size[0] < _RESULT_CAP_BYTES:
                    chunks.append(data)
                    size[0] += len(data)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        ps = psutil.Process(proc.pid)
        kind: OutcomeKind | None = None
        error: str | None = None
        next_disk_check = 0.0
        while True:
            rc = proc.poll()
            rss = _group_rss(ps) if rc is None else 0
            peak = max(peak, rss)
            if rc is not None:
                break
            elapsed = time.monotonic() - start
            if rss > limits.memory_bytes:
                kind = "memory"
                error = (f"memory limit exceeded: RSS {rss / 2**20:.0f} MiB > "
                         f"{limits.memory_bytes / 2**20:.0f} MiB")
                break
            if limits.writable_dirs and time.monotonic() >= next_disk_check:
                written = sum(_dir_bytes(Path(d)) for d in limits.writable_dirs)
                next_disk_check = time.monotonic() + 0.5
                if written > limits.disk_bytes:
                    kind = "violation"
                    error = (f"disk quota exceeded: {written / 2**20:.0f} MiB in the writable directories > "
                             f"{limits.disk_bytes / 2**20:.0f} MiB")
                    break
            if elapsed > limits.wall_time_s:
                kind = "timeout"
                error = f"timeout: no result after {limits.wall_time_s:g} s"
                break
            time.sleep(limits.poll_interval_s)
        _kill_group(proc.pid)
        rc = proc.wait()
        thread.join(timeout=5.0)
        # parse JSON lines from the channel
        violation: str | None = None
        for line in b"".join(chunks).splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("event") == "violation" and violation is None:
                violation = " ".join(str(msg.get("error")).split())[:500]
            elif msg.get("event") == "progress":
                events.append({k: v for k, v in msg.items() if k != "event"})
            elif msg.get("event") == "final":
                final = msg
        phase = next((e["phase"] for e in reversed(events) if isinstance(e.get("phase"), str)), None)
        stderr_tail = _tail(stderr_path)
        wall = time.monotonic() - start
        common = dict(wall_s=wall, peak_rss_bytes=peak, returncode=rc, phase=phase, events=events,
                      stderr_tail=stderr_tail)
        if kind is None and violation is not None:
            kind, error = "violation", violation
        if kind is not None:
            if phase:
                error = f"{error} (during {phase})"
            return SandboxOutcome(ok=False, kind=kind, error=error, **common)
        if final is None:
            if rc is not None and rc < 0:
                sig = -rc
                name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
                if sig == signal.SIGXCPU:
                    return SandboxOutcome(ok=False, kind="timeout", error=(
                        f"CPU time limit of {limits.effective_cpu_time_s():g} s exceeded"
                        + (f" (during {phase})" if phase else "")), **common)
                if sig == signal.SIGXFSZ:
                    return SandboxOutcome(ok=False, kind="violation", error=(
                        f"file size limit of {limits.max_file_bytes} bytes exceeded"), **common)
                error = f"child killed by {name}"
            else:
                error = f"child exited with code {rc} without a result"
            detail = _last_line(stderr_tail)
            if detail:
                error += f": {detail}"
            if phase:
                error += f" (during {phase})"
            return SandboxOutcome(ok=False, kind="crash", error=error, **common)
        result = final.get("result") if isinstance(final.get("result"), dict) else None
        fkind = final.get("kind", "exception")
        if fkind not in ("ok", "violation", "exception", "memory"):
            fkind = "exception"
        ferror = final.get("error")
        ferror = " ".join(str(ferror).split())[:500] if ferror else None
        if fkind == "ok":
            return SandboxOutcome(ok=True, kind="ok", result=result, **common)
        if phase and ferror:
            ferror = f"{ferror} (during {phase})"
        return SandboxOutcome(ok=False, kind=fkind, result=result, error=ferror, **common)
    finally:
        if proc is not None:
            if proc.poll() is None:
                _kill_group(proc.pid)
                proc.wait()
            with _LIVE_LOCK:
                _LIVE.discard(proc.pid)
        for fd in (read_fd, write_fd):
            if fd >= 0:
                with suppress(OSError):
                    os.close(fd)
        shutil.rmtree(control, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
