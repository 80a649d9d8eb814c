"""Multi-scale retention (RetNet), parallel form: per-head exponential decay mask instead of softmax."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class MultiScaleRetention(GAUBase):
    """Retention ``(Q K^T * D) V`` with ``D[n, m] = gamma_h^(n - m)`` for ``m <= n``, else 0.

    Head h decays at ``gamma_h = 1 - 2^(-5 - h)`` (spread over 2^-5..2^-12 beyond 8 heads), from
    short to long memory;
    queries/keys are rotated (xPos without the scale term), outputs are group-normed per head and
    gated by ``swish(W_g x)``. Values are ``v_mult`` times wider than the model.
    """

    def __init__(self, d_model, block_loc, ctx=None, n_head: int = 4, v_mult: int = 2,
                 rope_base: float = 10000.0, eps: float = 1e-5):
        super().__init__(d_model, block_loc, ctx)
        if d_model % n_head or (d_model // n_head) % 2:
            raise ValueError(f"d_model {d_model} must split into {n_head} heads of even size")
        self.n_head, self.eps, self.rope_base = n_head, eps, rope_base
        self.head_dim = d_model // n_head
        self.v_dim = v_mult * d_model
        self.q = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, self.v_dim, bias=False)
        self.g = nn.Linear(d_model, self.v_dim, bias=False)
        self.o = nn.Linear(self.v_dim, d_model, bias=False)
        self.norm_weight = nn.Parameter(torch.ones(self.v_dim))

    def log_gammas(self, device: torch.device) -> torch.Tensor:
        """log of the per-head decay rates, shortest memory first."""
        expo = -5.0 - torch.arange(self.n_head, device=device, dtype=torch.float32)
        if self.n_head > 8:  # keep the spread of decays within the paper's range
            expo = torch.linspace(-5.0, -12.0, self.n_head, device=device)
        return torch.log1p(-torch.exp2(expo))

    def decay_mask(self, T: int, device: torch.device) -> torch.Tensor:
        """(H, T, T) causal decay matrix, each row scaled by 1/sqrt(row sum)."""
        idx = torch.arange(T, device=device)
        diff = (idx[:, None] - idx[None, :]).float()
        expo = self.log_gammas(device)[:, None, None] * diff
        expo = expo.masked_fill(diff < 0, -math.inf)
        mask = torch.exp(expo)
        return mask / mask.sum(-1, keepdim=True).sqrt()

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        T, half = x.size(-2), self.head_dim // 2
        inv_freq = self.rope_base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
        ang = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * inv_freq[None, :]
        cos, sin = ang.cos(), ang.sin()
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)

    def _forward(self, X, **Z):
        B, T, _ = X.shape
        H = self.n_head
        q = self.rotate(self.q(X).view(B, T, H, -1).transpose(1, 2))
        k = self.rotate(self.k(X).view(B, T, H, -1).transpose(1, 2)) * self.head_dim ** -0.5
        v = self.v(X).view(B, T, H, -1).transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) * self.decay_mask(T, X.device).to(q.dtype)
        scores = scores / scores.abs().sum(-1, keepdim=True).clamp(min=1.0)
        y = (scores @ v).float()  # (B, H, T, v_dim / H)
        y = (y - y.mean(-1, keepdim=True)) * torch.rsqrt(y.var(-1, keepdim=True, unbiased=False) + self.eps)
        y = y.transpose(1, 2).reshape(B, T, self.v_dim).to(X.dtype) * self.norm_weight
        return self.o(F.silu(self.g(X)) * y), {}
