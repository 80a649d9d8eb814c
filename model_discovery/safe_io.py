"""Writes by trusted code into directories that sandboxed code could once reach.

:func:`write_text` never follows a symlink: it writes a fresh temporary file created with
``O_CREAT | O_EXCL`` (``tempfile.mkstemp``) beside the target and renames it over the target;
``rename`` replaces a symlink planted at the target instead of writing through it.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from pathlib import Path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically replace ``path`` with ``text`` (UTF-8) without following symlinks; returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return target
