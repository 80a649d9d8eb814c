"""The sandbox child's lockdown: an audit hook that denies what untrusted code may not do.

Installed by :mod:`model_discovery.check._child` after trusted modules are imported and warmed
up. Denied for everyone after lockdown: sockets, process creation (fork, exec, spawn, system,
``subprocess``), ``ctypes``, signals to other processes, raising resource limits, and writes or
file-system mutations outside the writable directories. Denied only when the nearest non-import
frame is untrusted code (compiled from a ``<untrusted:...>`` filename or living in a writable
directory): imports outside the allowlist, ``exec``/``eval``/``compile``. Every denial is recorded
and sent to the parent at once, so a design that swallows the exception or clears the record is
still reported.

With ``allow_compilers``, trusted code may start the compiler toolchain of ``torch.compile``
(:mod:`model_discovery.check.toolchain`), unless design code starts it itself (through the
standard library only), and code the compilers generate in their cache directories
(``code_dirs``) counts as trusted. This widens what code written to defeat the hook can reach
(Inductor's code cache loads native code), so it is off unless a run asks for ``torch.compile``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from model_discovery.check import toolchain
from model_discovery.check.channel import UNTRUSTED_FILENAME_PREFIX, SandboxViolation, send

VIOLATIONS: list[str] = []

_PROCESS_EVENTS = ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                   "subprocess.Popen", "pty.spawn", "os.startfile", "_posixsubprocess", "os.setsid",
                   "os.setpgid", "os.setuid", "os.setgid", "os.chroot")
_PATH_EVENTS = {"os.remove": (0,), "os.unlink": (0,), "os.rmdir": (0,), "os.mkdir": (0,),
                "os.rename": (0, 1), "os.replace": (0, 1), "os.link": (0, 1), "os.symlink": (1,),
                "os.chmod": (0,), "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,),
                "os.chdir": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.move": (1,),
                "os.mkfifo": (0,), "os.mknod": (0,), "os.setxattr": (0,), "os.removexattr": (0,)}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_STDLIB = os.path.dirname(os.__file__) + os.sep
_PACKAGE_DIRS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)
_IMPORT_MACHINERY = ("<frozen importlib", _STDLIB + "importlib" + os.sep)


def _in_stdlib(filename: str) -> bool:
    """Standard-library (or frozen) code, not third-party packages installed beside it."""
    return filename.startswith("<frozen ") or (
        filename.startswith(_STDLIB) and not any(d in filename for d in _PACKAGE_DIRS))


def violation(message: str) -> None:
    """Record a sandbox violation and raise :class:`SandboxViolation`."""
    msg = f"sandbox violation: {message}"
    VIOLATIONS.append(msg)
    send({"event": "violation", "error": msg})  # the parent records it now: nothing can take it back
    raise SandboxViolation(msg)


class Policy:
    """Audit-hook policy for one sandboxed child."""

    def __init__(self, writable_dirs: list[str], allowed_imports: list[str], allow_network: bool,
                 allow_compilers: bool = False, code_dirs: list[str] | None = None) -> None:
        self.writable = tuple(os.path.realpath(d).rstrip(os.sep) + os.sep for d in writable_dirs)
        self.code_dirs = tuple(os.path.realpath(d).rstrip(os.sep) + os.sep for d in code_dirs or ())
        self.allowed = frozenset(allowed_imports)
        self.allow_network = allow_network
        self.allow_compilers = allow_compilers
        self.own_file = __file__

    # -- helpers ------------------------------------------------------------------------------
    def _is_writable(self, path: Any) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return False
        real = os.path.realpath(os.fspath(path))
        if real in ("/dev/null",):
            return True
        return (real + os.sep).startswith(self.writable)

    def _nearest_file(self, passed_over: Callable[[str], bool]) -> str | None:
        """Filename of the nearest frame outside this module that ``passed_over`` does not skip."""
        frame = sys._getframe(1)
        while frame is not None:
            fname = frame.f_code.co_filename
            if fname != self.own_file and not passed_over(fname):
                return fname
            frame = frame.f_back
        return None

    def _untrusted_caller(self) -> str | None:
        """Filename of the nearest non-import-machinery frame if it is untrusted code."""
        fname = self._nearest_file(lambda f: f.startswith(_IMPORT_MACHINERY))
        if fname is None or (self.code_dirs and fname.startswith(self.code_dirs)):
            return None  # nothing, or code generated by the compiler toolchain
        if fname.startswith(UNTRUSTED_FILENAME_PREFIX) or (fname + os.sep).startswith(self.writable):
            return fname
        return None

    def _untrusted_starter(self) -> bool:
        """Whether the nearest frame outside the standard library is untrusted code."""
        fname = self._nearest_file(_in_stdlib)
        return fname is not None and fname.startswith(UNTRUSTED_FILENAME_PREFIX)

    def _toolchain(self, event: str, args: tuple[Any, ...]) -> None:
        """Allow a compiler toolchain command that trusted code starts, else record a violation."""
        padded = tuple(args) + (None,) * 4
        # subprocess.Popen(executable, args, cwd, env); os.posix_spawn(path, argv, env)
        executable, argv, env = padded[0], padded[1], padded[3 if event == "subprocess.Popen" else 2]
        if self._untrusted_starter():
            violation(f"process creation is not allowed ({event} from design code)")
        reason = toolchain.refusal(executable, argv, env, self.writable)
        if reason is not None:
            violation(f"process creation is not allowed ({event}: {reason})")

    # -- the hook -------------------------------------------------------------------------------
    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and bool(flags & _WRITE_FLAGS))
            if writing and not self._is_writable(path):
                violation(f"write outside the writable directories: {os.fsdecode(path) if isinstance(path, (str, bytes)) else path!r}")
            return
        if event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and args[i] is not None and not self._is_writable(args[i]):
                    target = args[i]
                    violation(f"{event} outside the writable directories: "
                              f"{os.fsdecode(target) if isinstance(target, (str, bytes)) else target!r}")
            return
        if event.startswith("socket."):
            if not self.allow_network:
                violation(f"network access is not allowed ({event})")
            return
        if event.startswith(_PROCESS_EVENTS):
            if self.allow_compilers and event in ("subprocess.Popen", "os.posix_spawn"):
                self._toolchain(event, args)
                return
            violation(f"process creation is not allowed ({event})")
        if event.startswith("ctypes."):
            violation(f"ctypes is not allowed ({event})")
        if event in ("os.kill", "os.killpg", "signal.pthread_kill"):
            target = args[0] if args else None
            if event == "os.kill" and target == os.getpid():
                return
            violation(f"signals to other processes are not allowed ({event} {target})")
        if event == "resource.setrlimit":
            violation("changing resource limits is not allowed")
        if event == "import":
            module = args[0] if args else ""
            root = str(module).split(".")[0]
            if root not in self.allowed:
                caller = self._untrusted_caller()
                if caller is not None:
                    violation(f"import of {module!r} is not allowed (allowed: {', '.join(sorted(self.allowed))})")
            return
        if event in ("exec", "compile", "builtins.input", "sys.settrace", "sys.setprofile", "code.__new__",
                     "function.__new__", "sys.addaudithook"):
            caller = self._untrusted_caller()
            if caller is not None:
                violation(f"{event} is not allowed in design code")


def _guard_torch_writers(policy: Policy) -> None:
    """torch writes some files from C++ (no audit event): check their paths in Python first."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    writer = torch._C.PyTorchFileWriter

    def checked_writer(*args: Any, **kwargs: Any) -> Any:
        target = args[0] if args else kwargs.get("file_name")
        if isinstance(target, (str, bytes, os.PathLike)) and not policy._is_writable(target):
            violation(f"write outside the writable directories: {os.fsdecode(target)}")
        return writer(*args, **kwargs)

    from_file = torch.from_file

    def checked_from_file(filename: Any, shared: Any = None, *args: Any, **kwargs: Any) -> Any:
        if (shared or kwargs.get("shared")) and not policy._is_writable(filename):
            violation(f"shared file mapping outside the writable directories: {filename}")
        return from_file(filename, shared, *args, **kwargs)

    torch._C.PyTorchFileWriter = checked_writer
    torch.from_file = checked_from_file


def install(writable_dirs: list[str], allowed_imports: list[str], allow_network: bool,
            allow_compilers: bool = False, code_dirs: list[str] | None = None) -> Policy:
    """Install the lockdown hook (irreversible for the life of the process)."""
    policy = Policy(writable_dirs, allowed_imports, allow_network, allow_compilers, code_dirs)
    _guard_torch_writers(policy)
    sys.addaudithook(policy)
    return policy
