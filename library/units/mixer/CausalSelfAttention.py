"""Causal multi-head softmax self-attention with learned absolute positions (GPT-2)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class CausalSelfAttention(GAUBase):
    def __init__(self, d_model, block_loc, ctx=None, n_head: int = 4, learned_pos: bool = True):
        super().__init__(d_model, block_loc, ctx)
        if d_model % n_head:
            raise ValueError(f"d_model {d_model} not divisible by n_head {n_head}")
        self.n_head = n_head
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)
        self.pos = nn.Parameter(torch.zeros(self.max_seq_len, d_model)) if learned_pos else None

    def _forward(self, X, state=None, **Z):
        """Causal attention over X; decoding passes its ``state`` (a dict, see :meth:`_step`),
        and X then holds only the new positions."""
        B, T, C = X.shape
        start = state["k"].size(2) if state is not None and "k" in state else 0
        h = X if self.pos is None else X + self.pos[start:start + T]
        q, k, v = self.qkv(h).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if state is not None:
            if start:
                k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)
            state["k"], state["v"] = k, v
        S = k.size(2)
        mask = None if S == T else torch.ones(T, S, dtype=torch.bool, device=X.device).tril(S - T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=S == T)
        return self.proj(y.transpose(1, 2).reshape(B, T, C)), {}

    def _step(self, X, state, **Z):
        """KV cache: keys and values of every earlier position."""
        return self._forward(X, state, **Z)
