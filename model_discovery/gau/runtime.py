"""Runtime of the GAU code construct: the unit base class and the LM wrapper.

This file is self-contained (it imports only ``torch`` and the standard library) because its
source is inlined verbatim into every compiled design module and every Hugging Face export.

Calling convention shared by every unit::

    Y, Z = unit(X, **Z)     # X, Y: (batch, seq, d_model); Z: dict of side state

A unit builds its children through :meth:`GAUBase.build_child` with a *slot* name
(``self.mixer = self.build_child("mixer")``); the design decides which unit fills each slot and
with which hyperparameters, so any unit can be swapped for another of the same role.

Incremental decoding: ``DesignLM(idx, cache=DecodeCache())`` consumes ``idx`` and keeps what each
unit needs to continue; the next call passes only the new positions. A unit takes part in one of
three ways: ``positionwise = True`` (its own work is per position, e.g. a norm, an MLP or a block
that only composes children), a ``_step(X, state, **Z)`` of its own (a KV cache or a recurrent
state in ``state``), or neither, and then :meth:`GAUBase._step` replays the unit's past inputs
(exact for any causal unit, but it recomputes that unit's prefix). The catalogue's stateful units
write one ``_forward(X, state=None, **Z)`` for both (``state`` is None for a whole sequence) and
their ``_step`` calls it, so an edit of ``_forward`` changes decoding alike.
"""

from __future__ import annotations

import contextvars
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


class DecodeCache:
    """What an incremental decode keeps: each unit's state and the positions consumed so far."""

    def __init__(self) -> None:
        self.length = 0
        self.units: dict[int, dict[str, Any]] = {}

    def state(self, unit: nn.Module) -> dict[str, Any]:
        """The state dict of ``unit`` (empty at the first call)."""
        return self.units.setdefault(id(unit), {})

    def reorder_cache(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (in that order) of every state tensor (beam search)."""
        for state in self.units.values():
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    state[key] = value.index_select(0, index.to(value.device))


_decoding: contextvars.ContextVar[DecodeCache | None] = contextvars.ContextVar("gau_decode", default=None)


class GAUBase(nn.Module):
    """Base class of every Generalized Autoregressive Unit.

    Subclasses implement ``_forward(self, X, **Z) -> (Y, Z_new)`` and must be causal: the
    output at position t may depend only on inputs at positions <= t. For decoding they set
    ``positionwise = True`` or implement ``_step`` (see the module docstring).
    """

    positionwise: bool = False

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

    def _step(self, X: torch.Tensor, state: dict[str, Any], **Z: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """Outputs at the new positions ``X``, given ``state`` kept from the earlier ones.

        This default keeps the unit's inputs and replays them with decoding off: exact for a
        causal unit, at the cost of recomputing its prefix. Units override it with a real cache.
        """
        full = X if "inputs" not in state else torch.cat([state["inputs"], X], dim=1)
        state["inputs"] = full
        token = _decoding.set(None)
        try:
            Y, Z_new = self._forward(full, **Z)
        finally:
            _decoding.reset(token)
        return Y[:, -X.size(1):], Z_new

    def forward(self, X: torch.Tensor, **Z: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        cache = _decoding.get()
        if cache is None or self.positionwise:
            out = self._forward(X, **Z)
        else:
            out = self._step(X, cache.state(self), **Z)
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

    def hidden_states(self, idx: torch.Tensor, cache: DecodeCache | None = None) -> torch.Tensor:
        """Final-norm states of ``idx``; with ``cache``, ``idx`` continues what the cache holds."""
        token = _decoding.set(cache)
        try:
            x = self.wte(idx)
            z: dict[str, Any] = {}
            for block in self.blocks:
                x, z = block(x, **z)
        finally:
            _decoding.reset(token)
        if cache is not None:
            cache.length += idx.size(1)
        return self.ln_f(x)

    def forward(self, idx: torch.Tensor, cache: DecodeCache | None = None) -> torch.Tensor:
        return self.lm_head(self.hidden_states(idx, cache))

    def next_inputs(self, idx: torch.Tensor, cache: DecodeCache | None) -> tuple[torch.Tensor, DecodeCache]:
        """The part of ``idx`` (the whole sequence so far) to feed next, and the cache to feed it to.

        While the sequence fits the context the cache continues; past it each step starts a new
        cache on the last ``context_len`` tokens, exactly as a model without a cache would.
        """
        T = idx.size(1)
        if cache is not None and cache.length < T <= self.context_len:
            return idx[:, cache.length:], cache
        return idx[:, -self.context_len:], DecodeCache()

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self(idx)
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() if non_embedding else n

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None) -> torch.Tensor:
        cache = None
        for _ in range(max_new_tokens):
            new, cache = self.next_inputs(idx, cache)
            logits = self(new, cache)[:, -1, :] / max(temperature, 1e-5)
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -math.inf
            nxt = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat([idx, nxt], dim=1)
        return idx
