"""Causal multi-head softmax attention with rotary position embedding (Llama)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class RoPEAttention(GAUBase):
    """Softmax attention where queries and keys are rotated by position-dependent angles."""

    def __init__(self, d_model, block_loc, ctx=None, n_head: int = 4, rope_base: float = 10000.0):
        super().__init__(d_model, block_loc, ctx)
        if d_model % n_head or (d_model // n_head) % 2:
            raise ValueError(f"d_model {d_model} must split into {n_head} heads of even size")
        self.n_head = n_head
        self.head_dim = d_model // n_head
        self.rope_base = rope_base
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.proj = nn.Linear(d_model, d_model, bias=False)

    def rotary(self, T: int, device: torch.device, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables of shape (T, head_dim // 2) for positions start .. start + T - 1 (no buffers)."""
        half = self.head_dim // 2
        inv_freq = self.rope_base ** (-torch.arange(half, device=device, dtype=torch.float32) / half)
        pos = torch.arange(start, start + T, device=device, dtype=torch.float32)
        ang = pos[:, None] * inv_freq[None, :]
        return ang.cos(), ang.sin()

    @staticmethod
    def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)

    def _forward(self, X, state=None, **Z):
        """Causal attention over X; decoding passes its ``state`` (a dict, see :meth:`_step`),
        and X then holds only the new positions."""
        B, T, C = X.shape
        start = state["k"].size(2) if state is not None and "k" in state else 0
        q, k, v = self.qkv(X).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, self.head_dim).transpose(1, 2) for t in (q, k, v))
        cos, sin = self.rotary(T, X.device, start)
        q, k = self.rotate(q, cos, sin), self.rotate(k, cos, sin)
        if state is not None:
            if start:
                k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)
            state["k"], state["v"] = k, v
        S = k.size(2)
        mask = None if S == T else torch.ones(T, S, dtype=torch.bool, device=X.device).tril(S - T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=S == T)
        return self.proj(y.transpose(1, 2).reshape(B, T, C)), {}

    def _step(self, X, state, **Z):
        """KV cache: rotated keys and values of every earlier position."""
        return self._forward(X, state, **Z)
