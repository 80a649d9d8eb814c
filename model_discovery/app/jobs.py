"""Background jobs started from the GUI: ``modis discover`` and ``modis verify`` processes.

A job lives in a folder: ``<name>.log`` (stdout and stderr), ``<name>.pid``, ``<name>.json``
(command, start time, what the page needs to show progress) and ``<name>.exit`` (the exit status,
written by a tiny shell wrapper when the command ends). The process runs in its own process
group (its own session), so the server can stop it and every process it started with one
signal, and it keeps running when the page is closed; its state is read back from the folder,
so a restarted server still sees it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

import psutil
from pydantic import BaseModel, ConfigDict, Field

from model_discovery.evolution import EvolutionTree
from model_discovery.safe_io import write_text

#: name prefixes of a sandbox's temporary folders (model_discovery.check.sandbox)
SANDBOX_CONTROL_PREFIX = "modis-sbx-ctl-"
SANDBOX_WORK_PREFIX = "modis-sbx-work-"

JobState = Literal["idle", "running", "finished", "failed", "stopped"]

#: Popen objects of the jobs this server started (polled to reap them when they end)
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class JobStatus(BaseModel):
    """What a job folder says about its job."""

    model_config = ConfigDict(extra="forbid")
    name: str
    state: JobState
    pid: int | None = None
    returncode: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    command: list[str] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def elapsed_s(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at


def modis_command() -> list[str]:
    """How to call ``modis`` with this interpreter (the venv's script, else ``python -m``)."""
    script = Path(sys.executable).with_name("modis")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "model_discovery.cli"]


def _paths(job_dir: Path, name: str) -> dict[str, Path]:
    return {k: job_dir / f"{name}.{k}" for k in ("log", "pid", "json", "exit")}


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (non-zombie) process; reaps it when it is a job of this server."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2))


def start_job(job_dir: Path, name: str, args: list[str], *, meta: dict[str, Any] | None = None,
              cwd: Path | None = None, env: dict[str, str] | None = None) -> JobStatus:
    """Start ``args`` in the background as job ``name`` in ``job_dir``; refuses a second one."""
    current = job_status(job_dir, name)
    if current.running:
        raise RuntimeError(f"{name} is already running (pid {current.pid})")
    job_dir.mkdir(parents=True, exist_ok=True)
    p = _paths(job_dir, name)
    p["exit"].unlink(missing_ok=True)
    # `sh -c SCRIPT EXITFILE ARGS...`: run ARGS, then record their exit status in EXITFILE.
    wrapped = ["/bin/sh", "-c", '"$@"; echo $? > "$0"', str(p["exit"]), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with p["log"].open("ab") as log:
        log.write(f"$ {' '.join(args)}\n".encode())
        log.flush()
        proc = subprocess.Popen(wrapped, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(cwd) if cwd else None, env=full_env, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    p["pid"].write_text(str(proc.pid))
    _write_json(p["json"], {"command": args, "started_at": time.time(), "pid": proc.pid, "meta": meta or {}})
    return job_status(job_dir, name)


def job_status(job_dir: Path, name: str) -> JobStatus:
    """The job's state: idle (never started here), running, finished, failed or stopped."""
    p = _paths(job_dir, name)
    info = _read_json(p["json"])
    if not info:
        return JobStatus(name=name, state="idle")
    pid = int(info.get("pid") or 0) or None
    base = dict(name=name, pid=pid, started_at=info.get("started_at"), ended_at=info.get("ended_at"),
                command=list(info.get("command") or []), meta=dict(info.get("meta") or {}))
    if pid is not None and pid_alive(pid):
        return JobStatus(state="running", **base)
    if info.get("stopped"):
        return JobStatus(state="stopped", **base)
    try:
        code: int | None = int(p["exit"].read_text().strip())
    except (OSError, ValueError):
        code = None
    if base["ended_at"] is None:
        ended = p["exit"].stat().st_mtime if p["exit"].exists() else time.time()
        _write_json(p["json"], {**info, "ended_at": ended})
        base["ended_at"] = ended
    return JobStatus(state="finished" if code == 0 else "failed", returncode=code, **base)


def job_processes(pid: int) -> list[psutil.Process]:
    """The job's process and every descendant, also those in sessions of their own (sandboxes)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def sandbox_folders(procs: list[psutil.Process]) -> set[Path]:
    """Temporary folders of the sandboxed processes among ``procs``: the control folder named in
    the child's command line (``modis-sbx-ctl-*/job.json``) and its work folder (its cwd)."""
    found: set[Path] = set()
    for proc in procs:
        try:
            cmd = proc.cmdline()
            cwd = Path(proc.cwd())
        except psutil.Error:
            continue
        for arg in cmd:
            if SANDBOX_CONTROL_PREFIX in arg and arg.endswith("job.json"):
                found.add(Path(arg).parent)
                if cwd.name.startswith(SANDBOX_WORK_PREFIX):
                    found.add(cwd)
    return found


def stop_job(job_dir: Path, name: str, timeout_s: float = 10.0) -> JobStatus:
    """Stop the job and every process it started.

    SIGTERM goes to the job's process group; ``modis`` then ends like on Ctrl-C (the scheduler
    releases its leases, the sandboxed children are killed and remove their folders). After
    ``timeout_s`` the group gets SIGKILL. Whatever is left then (sandboxed children run in
    sessions of their own) is killed one by one and their temporary folders removed. The pids
    of the job's processes are kept in the job's JSON (``stopped_pids``), so that the leases
    they held can be released (:func:`stopped_owner_pids`).
    """
    status = job_status(job_dir, name)
    if not status.running or status.pid is None:
        return status
    pgid = status.pid  # the job leads its own session, so its pid is its group id
    procs = job_processes(pgid)
    folders = sandbox_folders(procs)
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    _wait_gone(pgid, procs, timeout_s)
    for proc in job_processes(pgid) + procs:  # late children too
        with suppress(psutil.Error):
            proc.kill()
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    _wait_gone(pgid, procs, 5.0)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    p = _paths(job_dir, name)
    _write_json(p["json"], {**_read_json(p["json"]), "stopped": True, "ended_at": time.time(),
                            "stopped_pids": sorted(proc.pid for proc in procs)})
    return job_status(job_dir, name)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(pgid: int, procs: list[psutil.Process], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (group_alive(pgid) or any(_alive(p) for p in procs)):
        time.sleep(0.1)


def stopped_owner_pids(job_dir: Path, name: str) -> set[int]:
    """Pids of the processes a stopped job had (lease owners are ``host:pid``)."""
    return {int(p) for p in _read_json(_paths(job_dir, name)["json"]).get("stopped_pids") or []}


def release_leases(tree: EvolutionTree, pids: set[int]) -> list[str]:
    """Release the verification leases held by processes ``pids`` of this host (a stopped job's);
    returns the ``design@rung`` pairs freed."""
    owners = {f"{socket.gethostname()}:{pid}" for pid in pids}
    return [f"{lease.design}@{lease.scale}" for lease in tree.leases()
            if lease.owner in owners and tree.release(lease.design, lease.scale, lease.owner)]


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in the group."""
    pid_alive(pgid)  # reaps our own child when it ended
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return False


def tail(path: Path, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of a log; progress-bar redraws (``\\r``) keep only their last state."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            raw = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    out = [line.rstrip("\r").split("\r")[-1] for line in raw.split("\n")]
    if size > max_bytes:
        out = out[1:]  # the first line is probably cut
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out[-lines:])


def count_lines(path: Path) -> int:
    """Number of non-empty lines of a file (0 when absent)."""
    try:
        with path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return 0
