"""Shared helpers of the decoding tests: how a unit decodes, and decoded logits against the full forward.

Reusable from any test: ``from tests.gau.decoding import assert_decodes_exactly, decode_mode, greedy_uncached``.
"""

from __future__ import annotations

import ast
import sys

import torch

#: chunk patterns every decoding test feeds a sequence of 21 tokens in
CHUNK_PATTERNS: tuple[list[int], ...] = ([7] + [1] * 14, [1] * 5 + [3, 4, 9], [21])


def decode_mode(source: str, name: str) -> str:
    """How a unit decodes: ``positionwise``, its own ``step``, or the base class's ``replay``."""
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == name)
    for node in cls.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "positionwise" for t in node.targets):
            return "positionwise"
        if isinstance(node, ast.FunctionDef) and node.name == "_step":
            return "step"
    return "replay"


def cache_class(lm: torch.nn.Module) -> type:
    """The ``DecodeCache`` of the module ``lm`` was compiled into."""
    return sys.modules[type(lm).__module__].DecodeCache


def decoded(lm: torch.nn.Module, idx: torch.Tensor, chunks: list[int], cache: object | None = None) -> torch.Tensor:
    """Logits of ``idx`` fed through one cache (a new one unless given) in chunks of the given sizes."""
    cache, parts, start = cache or cache_class(lm)(), [], 0
    for size in chunks:
        parts.append(lm(idx[:, start:start + size], cache))
        start += size
    assert cache.length == start == idx.size(1)  # type: ignore[attr-defined]
    return torch.cat(parts, dim=1)


@torch.no_grad()
def greedy_uncached(lm: torch.nn.Module, idx: torch.Tensor, steps: int) -> torch.Tensor:
    """Greedy tokens of a DesignLM without a cache: the whole (context-clipped) prefix at every step."""
    for _ in range(steps):
        nxt = lm(idx[:, -lm.context_len:])[:, -1].argmax(-1, keepdim=True)
        idx = torch.cat([idx, nxt], dim=1)
    return idx


def assert_decodes_exactly(lm: torch.nn.Module, idx: torch.Tensor,
                           patterns: tuple[list[int], ...] = CHUNK_PATTERNS) -> None:
    """Chunked decoding of ``idx`` gives the full forward's logits (rtol 1e-4, atol 1e-5) for every pattern."""
    with torch.no_grad():
        full = lm(idx)
        for chunks in patterns:
            torch.testing.assert_close(decoded(lm, idx, chunks), full, rtol=1e-4, atol=1e-5,
                                       msg=lambda m, c=chunks: f"chunks {c}: {m}")
