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

    Decoding (:meth:`_step`) keeps the recurrent state ``S = sum_m gamma^(t-m) k_m^T v_m`` per
    head for the output and the past keys for the row norm ``sum_m |q_t k_m| gamma^(t-m)``,
    which has no fixed-size form.
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

    def decay_mask(self, T: int, device: torch.device, start: int = 0) -> torch.Tensor:
        """(H, T, start + T) causal decay matrix of positions start .. start + T - 1 over
        positions 0 .. start + T - 1, each row scaled by 1/sqrt(row sum)."""
        rows = torch.arange(start, start + T, device=device)
        diff = (rows[:, None] - torch.arange(start + T, device=device)[None, :]).float()
        expo = self.log_gammas(device)[:, None, None] * diff
        expo = expo.masked_fill(diff < 0, -math.inf)
        mask = torch.exp(expo)
        return mask / mask.sum(-1, keepdim=True).sqrt()

    def rotate(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """x (..., T, head_dim) rotated by the angles of positions start .. start + T - 1."""
        T, half = x.size(-2), self.head_dim // 2
        inv_freq = self.rope_base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
        pos = torch.arange(start, start + T, device=x.device, dtype=torch.float32)
        ang = pos[:, None] * inv_freq[None, :]
        cos, sin = ang.cos(), ang.sin()
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)

    def _forward(self, X, state=None, **Z):
        """Outputs at the positions of X; decoding passes its ``state`` (a dict, see
        :meth:`_step`), which this continues and updates."""
        B, T, _ = X.shape
        H = self.n_head
        P = state.get("pos", 0) if state is not None else 0
        q = self.rotate(self.q(X).view(B, T, H, -1).transpose(1, 2), P)
        k = self.rotate(self.k(X).view(B, T, H, -1).transpose(1, 2), P) * self.head_dim ** -0.5
        v = self.v(X).view(B, T, H, -1).transpose(1, 2)
        mask = self.decay_mask(T, X.device, P).to(q.dtype)  # (H, T, P + T)
        scores = (q @ k.transpose(-1, -2)) * mask[:, :, P:]
        norm = scores.abs().sum(-1, keepdim=True)
        if P:  # the earlier positions: their keys for the row norm, the state for the output
            norm = norm + ((q @ state["k"].transpose(-1, -2)) * mask[:, :, :P]).abs().sum(-1, keepdim=True)
        scores = scores / norm.clamp(min=1.0)
        y = scores @ v
        if P:  # row t's weight on S (sum over m < P of gamma^(P-1-m) k_m^T v_m) is its mask at P - 1
            y = y + (q @ state["S"]) * (mask[:, :, P - 1:P] / norm.clamp(min=1.0))
        if state is not None:
            ago = torch.arange(T - 1, -1, -1, device=X.device, dtype=torch.float32)
            log_g = self.log_gammas(X.device)[:, None]  # (H, 1)
            S = (k * torch.exp(log_g * ago)[..., None].to(k.dtype)).transpose(-1, -2) @ v
            if P:
                S = S + torch.exp(log_g * T)[..., None].to(k.dtype) * state["S"]
                k = torch.cat([state["k"], k], dim=2)
            state["S"], state["k"], state["pos"] = S, k, P + T
        y = y.float()  # (B, H, T, v_dim / H)
        y = (y - y.mean(-1, keepdim=True)) * torch.rsqrt(y.var(-1, keepdim=True, unbiased=False) + self.eps)
        y = y.transpose(1, 2).reshape(B, T, self.v_dim).to(X.dtype) * self.norm_weight
        return self.o(F.silu(self.g(X)) * y), {}

    def _step(self, X, state, **Z):
        """State: the position, the (b, h, head_dim, v_dim / h) matrix S and the past keys."""
        return self._forward(X, state, **Z)
