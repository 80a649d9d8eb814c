"""The compiler toolchain ``torch.compile`` may run inside the sandbox, when a run allows it.

Inductor builds kernels with a C++ compiler (CPU) or Triton, which runs ``ptxas`` and builds a
small launcher with a C compiler (CUDA). With :attr:`SandboxLimits.allow_compilers` the sandbox
lets trusted code start these tools and nothing else:

- the program is one of :data:`TOOLS` (by base name, version suffixes allowed), found outside the
  writable directories;
- no argument is a flag that loads or runs other programs (:data:`FORBIDDEN_FLAGS`), and every
  output (``-o``) lands in a writable directory;
- the environment preloads nothing and does not redirect the compiler's helper programs
  (:data:`FORBIDDEN_ENV`);
- no untrusted (design) frame is on the Python stack: see :mod:`model_discovery.check.policy`.

:func:`warm_up` runs the probes Inductor makes once per process (the CPU vector ISA, which it
checks by loading a test library in a Python subprocess) before the sandbox locks down, so the
locked-down child never needs to start Python.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

#: Programs torch.compile's toolchains run (C/C++ compilers and linkers, the CUDA assembler and
#: its helpers, ``ldconfig -p`` to find libcuda, ``openssl sha512`` to hash precompiled headers).
TOOLS: frozenset[str] = frozenset({
    "cc", "c++", "gcc", "g++", "clang", "clang++", "ld", "ld.gold", "ld.lld",
    "ptxas", "nvcc", "nvdisasm", "cuobjdump", "fatbinary", "nvlink", "ldconfig", "openssl",
})
#: Arguments a tool may be given, where it is more than a compiler.
_ONLY_ARGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "ldconfig": (("-p",),),
}
_OPENSSL_SUBCOMMANDS = ("sha512", "sha256", "version")
#: Flags that load plug-ins, run helper programs or read more flags from a file.
FORBIDDEN_FLAGS: tuple[str, ...] = ("-fplugin", "-wrapper", "-B", "-specs", "--specs", "@", "--plugin",
                                    "-Wl,--plugin", "-Wl,-plugin", "-print-prog-name", "-fuse-ld=")
#: Environment variables that would make a tool load or run something else.
FORBIDDEN_ENV: tuple[str, ...] = ("LD_PRELOAD", "LD_AUDIT", "GCC_EXEC_PREFIX", "COMPILER_PATH",
                                  "GCONV_PATH", "OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES")
_VERSIONED = re.compile(r"^(?P<name>[A-Za-z+._]+?)(-\d+(\.\d+)*)?$")


def tool_name(program: str) -> str:
    """Base name of ``program`` without a version suffix (``/usr/bin/g++-12`` -> ``g++``)."""
    base = os.path.basename(program)
    m = _VERSIONED.match(base)
    return m.group("name") if m else base


def _resolve(program: str, env: Mapping[str, str]) -> str | None:
    if os.sep in program:
        return os.path.realpath(program) if os.path.isfile(program) else None
    found = shutil.which(program, path=env.get("PATH", os.defpath))
    return os.path.realpath(found) if found else None


def refusal(executable: Any, argv: Sequence[Any] | None, env: Mapping[str, str] | None,
            writable: tuple[str, ...]) -> str | None:
    """Why this process may not start as a toolchain command, or ``None`` when it may.

    ``writable`` holds the writable directories, each ending with ``os.sep``.
    """
    args = [os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in (argv or ())]
    program = os.fsdecode(executable) if isinstance(executable, (str, bytes, os.PathLike)) else (
        args[0] if args else "")
    env = dict(os.environ) if env is None else {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}
    name = tool_name(program)
    if name not in TOOLS:
        return f"{program or '?'} is not a compiler toolchain program"
    rest = args[1:]
    if name in _ONLY_ARGS and tuple(rest) not in _ONLY_ARGS[name]:
        return f"{name} may only run as '{name} {' '.join(_ONLY_ARGS[name][0])}'"
    if name == "openssl" and (not rest or rest[0] not in _OPENSSL_SUBCOMMANDS):
        return f"openssl may only run {', '.join(_OPENSSL_SUBCOMMANDS)}"
    for arg in rest:
        if arg.startswith(FORBIDDEN_FLAGS):
            return f"{name} flag {arg.split('=')[0]!r} is not allowed"
    for i, arg in enumerate(rest):
        target = rest[i + 1] if arg == "-o" and i + 1 < len(rest) else (arg[2:] if arg.startswith("-o") and
                                                                           len(arg) > 2 else None)
        if target is not None:
            real = os.path.realpath(target)
            if not (real + os.sep).startswith(writable):
                return f"{name} output {target} is outside the writable directories"
    for key in FORBIDDEN_ENV:
        if env.get(key):
            return f"environment variable {key} is set"
    path = _resolve(program, env)
    if path is None:
        return f"{program} was not found"
    if (path + os.sep).startswith(writable):
        return f"{program} lives in a writable directory"
    return None


def warm_up() -> None:
    """Run Inductor's once-per-process CPU probes now (before the sandbox locks down)."""
    try:
        from torch._inductor import cpu_vec_isa
    except Exception:  # noqa: BLE001 - torch without inductor: compile falls back to eager
        return
    cpu_vec_isa.pick_vec_isa()
