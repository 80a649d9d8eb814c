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

    def heads(self, X, start: int = 0):
        """q, k, v of shape (B, n_head, T, head_dim) for positions start .. start + T - 1."""
        B, T, C = X.shape
        h = X if self.pos is None else X + self.pos[start:start + T]
        q, k, v = self.qkv(h).split(C, dim=2)
        return (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))

    def attend(self, q, k, v):
        """Causal attention of the last q.size(2) positions over all k.size(2) keys."""
        B, _, T, _ = q.shape
        S = k.size(2)
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if T == S else mask, is_causal=T == S)
        return self.proj(y.transpose(1, 2).reshape(B, T, -1))

    def _forward(self, X, **Z):
        return self.attend(*self.heads(X)), {}

    def _step(self, X, state, **Z):
        """KV cache: keys and values of every earlier position."""
        q, k, v = self.heads(X, state["k"].size(2) if "k" in state else 0)
        if "k" in state:
            k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)
        state["k"], state["v"] = k, v
        return self.attend(q, k, v), {}
