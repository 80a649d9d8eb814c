"""Real text tokens for the effectiveness check, prepared by the parent (trusted) process.

Uses :func:`model_discovery.verify.data.load_token_data` when that module is available; otherwise
falls back to byte-level tokens (one token per UTF-8 byte, ids 0-255) of the Python standard
library's own sources, which every install has. The child only ever reads the resulting files.
"""

from __future__ import annotations

import sysconfig
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

N_TRAIN = 400_000
N_VAL = 40_000


class CheckTokens(BaseModel):
    """Train/validation token arrays for the checks and where they came from."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    train: np.ndarray
    val: np.ndarray
    source: str

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Save both arrays as ``.npy`` files in ``directory``; return (train, val) paths."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = directory / "train.npy", directory / "val.npy"
        np.save(paths[0], self.train)
        np.save(paths[1], self.val)
        return paths


def byte_tokens(text: bytes) -> np.ndarray:
    """Byte-level tokens: one ``uint16`` id per byte."""
    return np.frombuffer(text, dtype=np.uint8).astype(np.uint16)


def stdlib_text(n_bytes: int) -> bytes:
    """Deterministic text: the standard library's ``.py`` sources, in sorted order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out: list[bytes] = []
    total = 0
    for path in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        out.append(data)
        total += len(data)
        if total >= n_bytes:
            break
    return b"".join(out)[:n_bytes]


@lru_cache(maxsize=8)
def check_tokens(vocab_size: int, n_train: int = N_TRAIN, n_val: int = N_VAL,
                 cache_dir: str | None = None) -> CheckTokens:
    """Tokens for the checks at ``vocab_size`` (cached per process)."""
    try:
        from model_discovery.verify.data import load_token_data  # type: ignore[import-not-found]
    except ImportError:
        load_token_data = None
    if load_token_data is not None:
        try:
            data = load_token_data(vocab_size, cache_dir=cache_dir)
            train = np.asarray(data.train[:n_train], dtype=np.uint16)
            val = np.asarray(data.val[:n_val], dtype=np.uint16)
        except Exception:  # noqa: BLE001 - the byte-level fallback below always works
            train = val = np.zeros(0, dtype=np.uint16)
        if len(train) > 1000 and len(val) > 1000 and int(max(train.max(), val.max())) < vocab_size:
            return CheckTokens(train=train, val=val, source="verify.data")
    if vocab_size < 256:
        raise ValueError(f"byte-level check tokens need vocab_size >= 256, got {vocab_size}")
    tokens = byte_tokens(stdlib_text(n_train + n_val))
    return CheckTokens(train=tokens[:n_train].copy(), val=tokens[n_train:].copy(), source="bytes:stdlib")
