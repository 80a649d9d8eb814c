"""Where the project keeps what it builds once and reuses (corpora, tokenizers, tokens, check
reference figures, the knowledge cache): one root for every part."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MODIS_CACHE"
"""Environment override of the cache root (``SystemConfig.cache_dir`` wins over it)."""


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$MODIS_CACHE``, else ``~/.cache/model_discovery`` (absolute)."""
    env = os.environ.get(CACHE_ENV)
    root = Path(cache_dir) if cache_dir is not None else Path(env) if env else Path.home() / ".cache" / "model_discovery"
    return root.expanduser().resolve()
