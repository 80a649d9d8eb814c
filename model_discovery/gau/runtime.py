"""Runtime of the GAU code construct: the unit base class and the LM wrapper.

This file is self-contained (it imports only ``torch`` and the standard library) because its
source is inlined verbatim into every compiled design module and every Hugging Face export.

Calling convention shared by every unit::

    Y, Z = unit(X, **Z)     # X, Y: (batch, seq, d_model); Z: dict of side state

A unit builds its children through :meth:`GAUBase.build_child` with a *slot* name
(``self.mixer = self.build_child("mixer")``); the design decides which unit fills each slot and
with which hyperparameters, so any unit can be swapped for another of the same role.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


class UnitContext:
    """The design's wiring as seen by one unit: which class fills each child slot.

    ``wiring`` maps unit name -> {"children": {slot: unit name}, "hparams": {...}};
    ``classes`` maps unit name -> class; ``scale`` carries read-only scale facts
    (``context_len``, ``vocab_size``, ``n_block``) that some units need (e.g. position tables).
    """

    def __init__(self, name: str, wiring: dict[str, dict[str, Any]], classes: dict[str, type],
                 scale: dict[str, Any] | None = None) -> None:
        if name not in wiring:
            raise KeyError(f"unit {name!r} is not in the design")
        if name not in classes:
            raise KeyError(f"unit {name!r} has no class of that name in its source")
        self.name = name
        self.wiring = wiring
        self.classes = classes
        self.scale = dict(scale or {})

    def child(self, slot: str) -> "UnitContext":
        children = self.wiring[self.name].get("children", {})
        if slot not in children:
            raise KeyError(f"unit {self.name!r} builds child slot {slot!r} but the design "
                           f"declares only {sorted(children)}")
        return UnitContext(children[slot], self.wiring, self.classes, self.scale)

    def build(self, d_model: int, block_loc: tuple[int, int]) -> "GAUBase":
        cls = self.classes[self.name]
        hparams = dict(self.wiring[self.name].get("hparams", {}))
        unit = cls(d_model, block_loc, self, **hparams)
        if not isinstance(unit, GAUBase):
            raise TypeError(f"unit {self.name!r} is not a GAUBase subclass")
        return unit


class GAUBase(nn.Module):
    """Base class of every Generalized Autoregressive Unit.

    Subclasses implement ``_forward(self, X, **Z) -> (Y, Z_new)`` and must be causal: the
    output at position t may depend only on inputs at positions <= t.
    """

    def __init__(self, d_model: int, block_loc: tuple[int, int], ctx: UnitContext | None = None) -> None:
        super().__init__()
        self.d_model = int(d_model)
        self.block_loc = (int(block_loc[0]), int(block_loc[1]))
        self._gau_ctx = ctx
        self.max_seq_len = int((ctx.scale if ctx else {}).get("context_len", 2048))

    def build_child(self, slot: str, d_model: int | None = None) -> "GAUBase":
        """Instantiate the unit the design puts in ``slot``."""
        if self._gau_ctx is None:
            raise RuntimeError(f"{type(self).__name__} was built without a design context")
        return self._gau_ctx.child(slot).build(d_model or self.d_model, self.block_loc)

    def _forward(self, X: torch.Tensor, **Z: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    def forward(self, X: torch.Tensor, **Z: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        out = self._forward(X, **Z)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{type(self).__name__}._forward must return (Y, Z), got {type(out).__name__}")
        Y, Z_new = out
        if not isinstance(Y, torch.Tensor) or Y.shape != X.shape:
            shape = tuple(Y.shape) if isinstance(Y, torch.Tensor) else type(Y).__name__
            raise ValueError(f"{type(self).__name__} returned Y of shape {shape}, expected {tuple(X.shape)}")
        merged = dict(Z)
        merged.update(Z_new or {})
        return Y, merged


class RMSNorm(nn.Module):
    """Root-mean-square norm used as the LM wrapper's final norm."""

    def __init__(self, d_model: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * self.weight.float()).to(dtype)


class DesignLM(nn.Module):
    """The LM around a design's block, shared by every design.

    token embedding -> ``n_block`` copies of the root unit (side state ``Z`` flows from block to
    block) -> final RMSNorm -> head tied to the embedding. ``forward(idx)`` returns logits.
    """

    def __init__(self, root: str, wiring: dict[str, dict[str, Any]], classes: dict[str, type],
                 d_model: int, n_block: int, vocab_size: int, context_len: int) -> None:
        super().__init__()
        self.d_model, self.n_block = int(d_model), int(n_block)
        self.vocab_size, self.context_len = int(vocab_size), int(context_len)
        scale = {"context_len": self.context_len, "vocab_size": self.vocab_size, "n_block": self.n_block}
        ctx = UnitContext(root, wiring, classes, scale)
        self.wte = nn.Embedding(self.vocab_size, self.d_model)
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)
        self.blocks = nn.ModuleList(ctx.build(self.d_model, (i, self.n_block)) for i in range(self.n_block))
        self.ln_f = RMSNorm(self.d_model)
        self.lm_head = nn.Linear(self.d_model, self.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx)
        z: dict[str, Any] = {}
        for block in self.blocks:
            x, z = block(x, **z)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.hidden_states(idx))

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self(idx)
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() if non_embedding else n

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None) -> torch.Tensor:
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.context_len:])[:, -1, :] / max(temperature, 1e-5)
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -math.inf
            nxt = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat([idx, nxt], dim=1)
        return idx
