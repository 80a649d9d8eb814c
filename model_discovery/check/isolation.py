"""Kernel-enforced isolation of sandboxed children: bubblewrap namespaces and a seccomp filter.

The parent (:func:`model_discovery.check.sandbox.run_sandboxed`) starts every child under
`bubblewrap <https://github.com/containers/bubblewrap>`_ (Debian package ``bubblewrap``) with
:func:`bwrap_command`: new user, PID, network, IPC, UTS and cgroup namespaces; user 65534 inside
(no capabilities, no further user namespaces); a read-only view of only the system libraries, the
Python installation, this package and the run's input files; a fresh ``/proc`` (the parent's
processes and their environments are invisible) and a minimal ``/dev``; a size-limited tmpfs as
the work directory (the total disk quota); the output directories (if any) as the only writable
host paths; a clean environment; its own session; and death with the parent.

Inside, the child calls :func:`lock_syscalls` after its trusted warm-up and before any design code
runs: a seccomp filter (libseccomp through ``pyseccomp``) that refuses process creation beyond
threads, ``ptrace``, ``process_vm_*``, ``pidfd_*``, signals to other processes, namespace and
mount calls, ``bpf``, ``perf_event_open``, ``io_uring``, kernel keyrings and module loading, and
sockets when the network is off. A seccomp filter cannot be removed once loaded.

Where the kernel or the machine refuses a piece of this, the run fails closed with a one-line
reason (:class:`IsolationUnavailable`). ``MODIS_SANDBOX=hooks-only`` turns the kernel layer off
explicitly, for machines where it cannot work and the designs are trusted; it is never implicit.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

SANDBOX_UID = 65534
ENV_SWITCH = "MODIS_SANDBOX"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf",
                 "/etc/passwd", "/etc/group")
_GPU_DEVICES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")

# syscalls refused to every sandboxed child (EPERM)
ALWAYS_DENIED: tuple[str, ...] = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
    "kcmp", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsmount", "fsconfig", "fspick", "bpf", "perf_event_open", "keyctl", "add_key", "request_key",
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl",
    "open_by_handle_at", "name_to_handle_at", "setsid", "setpgid", "tkill", "personality",
)
# refused unless the run lets trusted code start a compiler toolchain (torch.compile)
PROCESS_CREATION: tuple[str, ...] = ("fork", "vfork", "execve", "execveat")
_CLONE_THREAD = 0x00010000


class IsolationUnavailable(RuntimeError):
    """The kernel sandbox cannot be set up here; the message is the one-line reason."""


def kernel_isolation_enabled() -> bool:
    """False only when ``MODIS_SANDBOX=hooks-only`` explicitly turns the kernel layer off."""
    value = os.environ.get(ENV_SWITCH, "kernel").strip().lower()
    if value not in ("kernel", "hooks-only"):
        raise IsolationUnavailable(f"{ENV_SWITCH}={value!r} is not valid: use 'kernel' (default) or 'hooks-only'")
    return value == "kernel"


@functools.lru_cache(maxsize=1)
def _probe(exe: str) -> str | None:
    """None when bwrap can create the namespaces here, else the reason it cannot."""
    try:
        run = subprocess.run([exe, "--unshare-all", "--die-with-parent", "--uid", str(SANDBOX_UID),
                              "--gid", str(SANDBOX_UID), "--ro-bind", "/", "/", "--proc", "/proc", "--",
                              "/bin/true"], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap could not start: {exc}"
    if run.returncode != 0:
        detail = run.stderr.decode("utf-8", "replace").strip().splitlines()
        return ("the kernel refused bubblewrap's namespaces"
                + (f" ({detail[-1][:200]})" if detail else f" (exit {run.returncode})")
                + "; enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)")
    return None


def bwrap_executable() -> str:
    """Path of a working ``bwrap``; raises :class:`IsolationUnavailable` with the reason."""
    exe = shutil.which("bwrap")
    if exe is None:
        raise IsolationUnavailable("bubblewrap (bwrap) is not installed: apt-get install bubblewrap "
                                   f"(or set {ENV_SWITCH}=hooks-only for trusted designs only)")
    reason = _probe(exe)
    if reason is not None:
        raise IsolationUnavailable(reason)
    return exe


def _python_roots() -> list[Path]:
    """The Python installation, the environment and this package: what the child must read."""
    roots = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent.parent,
             Path(__file__).resolve().parents[1]}
    for entry in sys.path:
        if entry and Path(entry).is_dir() and "site-packages" in entry:
            roots.add(Path(entry).resolve())
    return sorted(roots)


def _bind(flag: str, path: Path) -> list[str]:
    """Bind ``path`` at the same place; symlinked system dirs (``/lib -> usr/lib``) stay symlinks."""
    if path.is_symlink() and str(path) in _SYSTEM_DIRS:
        return ["--symlink", os.readlink(path), str(path)]
    return [flag, str(path), str(path)]


def bwrap_command(*, work: Path, disk_bytes: int, readable: Iterable[Path], writable: Iterable[Path],
                  env: dict[str, str], allow_network: bool, gpu: bool) -> list[str]:
    """The ``bwrap ... --`` prefix that isolates one child (see the module docstring).

    ``work`` becomes a tmpfs of ``disk_bytes`` at the same path (cwd, ``HOME`` and ``TMPDIR``);
    ``readable`` paths are bound read-only, ``writable`` ones read-write, each at its own path.
    """
    cmd = [bwrap_executable(), "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--disable-userns",
           "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox", "--clearenv",
           "--cap-drop", "ALL"]
    if allow_network:
        cmd.append("--share-net")
    for d in _SYSTEM_DIRS:
        if os.path.lexists(d):
            cmd += _bind("--ro-bind", Path(d))
    for f in _SYSTEM_FILES:
        if os.path.exists(f):
            cmd += ["--ro-bind", f, f]
    seen: set[Path] = set()
    for p in [*_python_roots(), *readable]:
        p = Path(p).resolve()
        if p in seen or not p.exists() or any(p.is_relative_to(s) for s in seen if s.is_dir()):
            continue
        seen.add(p)
        cmd += ["--ro-bind", str(p), str(p)]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    if gpu:
        for name in _GPU_DEVICES:
            if os.path.exists(f"/dev/{name}"):
                cmd += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
        for dev in sorted(Path("/dev").glob("nvidia[0-9]*")):
            cmd += ["--dev-bind", str(dev), str(dev)]
        for d in ("/sys", "/proc/driver/nvidia"):
            if os.path.exists(d):
                cmd += ["--ro-bind", d, d]
    cmd += ["--size", str(int(disk_bytes)), "--tmpfs", str(work)]
    for p in writable:
        p = Path(p).resolve()
        cmd += ["--bind", str(p), str(p)]
    cmd += ["--remount-ro", "/"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    cmd += ["--chdir", str(work), "--"]
    return cmd


def lock_syscalls(*, allow_processes: bool, allow_network: bool) -> None:
    """Load the child's seccomp filter (see the module docstring); irreversible.

    Raises :class:`IsolationUnavailable` when libseccomp cannot be loaded or the kernel refuses.
    """
    try:
        import pyseccomp as seccomp
    except Exception as exc:  # noqa: BLE001 - missing package or missing libseccomp.so
        raise IsolationUnavailable(f"seccomp is unavailable (pyseccomp/libseccomp): {exc}") from exc
    pid = os.getpid()
    deny = seccomp.ERRNO(errno.EPERM)
    try:
        rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        for name in ALWAYS_DENIED:
            rules.add_rule(deny, name)
        # signals only to this very process (its threads included through tgkill)
        rules.add_rule(deny, "kill", seccomp.Arg(0, seccomp.NE, pid))
        rules.add_rule(deny, "tgkill", seccomp.Arg(0, seccomp.NE, pid))
        rules.add_rule(deny, "rt_sigqueueinfo", seccomp.Arg(0, seccomp.NE, pid))
        rules.add_rule(deny, "rt_tgsigqueueinfo", seccomp.Arg(0, seccomp.NE, pid))
        if not allow_network:
            rules.add_rule(seccomp.ERRNO(errno.EACCES), "socket")
        if not allow_processes:
            for name in PROCESS_CREATION:
                rules.add_rule(deny, name)
            # threads (CLONE_THREAD) only; clone3 is answered ENOSYS so libc falls back to clone
            rules.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, _CLONE_THREAD, 0))
            rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        rules.load()
    except Exception as exc:  # noqa: BLE001 - the kernel refused: fail closed
        raise IsolationUnavailable(f"the kernel refused the seccomp filter: {exc}") from exc
