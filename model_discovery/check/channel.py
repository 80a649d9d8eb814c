"""What a sandboxed child, its audit hook and the trusted code inside it share.

The child's channel to the parent: :func:`send` writes one JSON line to the descriptor that
:mod:`model_discovery.check._child` opened with :func:`connect` (outside a sandbox child it does
nothing); :class:`SandboxViolation`, raised when code does something the sandbox forbids; and
:data:`UNTRUSTED_FILENAME_PREFIX`, the filename prefix that marks code compiled from a design.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

UNTRUSTED_FILENAME_PREFIX = "<untrusted:"

_FD: int | None = None
_LOCK = threading.Lock()


class SandboxViolation(PermissionError):
    """Raised inside the child when code does something the sandbox forbids."""


def connect(fd: int) -> None:
    """Send every later message to the inherited descriptor ``fd`` (called once, by the child)."""
    global _FD
    _FD = fd


def send(message: dict[str, Any]) -> None:
    """Write one JSON line to the parent (no-op when not running as the sandbox child)."""
    if _FD is None:
        return
    data = (json.dumps(message, default=str) + "\n").encode()
    with _LOCK:
        view = memoryview(data)
        while view:
            written = os.write(_FD, view)
            view = view[written:]
