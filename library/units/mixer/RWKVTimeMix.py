"""RWKV time-mix (RWKV-5 style): token shift + multi-head linear recurrence with learned static decay."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class RWKVTimeMix(GAUBase):
    """Per head: ``S_t = diag(w) S_{t-1} + k_t^T v_t``, ``o_t = r_t (S_{t-1} + diag(u) k_t^T v_t)``.

    r, k, v, g read a per-channel interpolation of x_t and x_{t-1} (token shift); w in (0, 1) is a
    learned per-channel decay and u a "bonus" for the current token. Computed chunk-wise
    (:meth:`chunked`) with :meth:`recurrent` as the step-by-step reference; output is group-normed
    per head and gated by ``silu(W_g x_g)``.
    """

    def __init__(self, d_model, block_loc, ctx=None, head_size: int = 32, chunk_size: int = 16,
                 eps: float = 1e-5):
        super().__init__(d_model, block_loc, ctx)
        if d_model % head_size:
            raise ValueError(f"d_model {d_model} not divisible by head_size {head_size}")
        self.head_size, self.chunk_size, self.eps = head_size, chunk_size, eps
        self.n_head = d_model // head_size
        layer, n_layer = self.block_loc
        r01 = layer / max(n_layer - 1, 1)
        r10 = 1.0 - layer / max(n_layer, 1)
        ddd = torch.arange(d_model, dtype=torch.float32) / d_model
        self.mix_k = nn.Parameter(1.0 - ddd.pow(r10))
        self.mix_v = nn.Parameter(1.0 - (ddd.pow(r10) + 0.3 * r01))
        self.mix_r = nn.Parameter(1.0 - ddd.pow(0.5 * r10))
        self.mix_g = nn.Parameter(1.0 - ddd.pow(0.5 * r10))
        pos = torch.arange(d_model, dtype=torch.float32) / max(d_model - 1, 1)
        self.time_decay = nn.Parameter((-6.0 + 5.0 * pos.pow(0.7 + 1.3 * r01)).view(self.n_head, head_size))
        zigzag = ((torch.arange(d_model) + 1) % 3 - 1).float() * 0.1
        self.time_first = nn.Parameter((r01 * (1.0 - pos) + zigzag).view(self.n_head, head_size))
        self.r = nn.Linear(d_model, d_model, bias=False)
        self.k = nn.Linear(d_model, d_model, bias=False)
        self.v = nn.Linear(d_model, d_model, bias=False)
        self.g = nn.Linear(d_model, d_model, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)
        self.ln_weight = nn.Parameter(torch.ones(d_model))
        self.ln_bias = nn.Parameter(torch.zeros(d_model))

    def chunked(self, r, k, v, log_w, u):
        """r, k, v (b,h,t,s); log_w, u (h,s) -> (b,h,t,s)."""
        b, h, T, s = r.shape
        cs = self.chunk_size
        pad = (-T) % cs
        if pad:
            r, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (r, k, v))
        n = r.size(2) // cs
        r, k, v = (t.reshape(b, h, n, cs, s) for t in (r, k, v))
        idx = torch.arange(cs, device=r.device)
        gap = (idx[:, None] - idx[None, :] - 1).float()  # i - 1 - j
        expo = gap[None, :, :, None] * log_w[:, None, None, :]  # (h, i, j, s)
        expo = expo.masked_fill((gap < 0)[None, :, :, None], -math.inf)
        attn = torch.einsum("bhnid,bhnjd,hijd->bhnij", r, k, torch.exp(expo))
        out = attn @ v + (r * u[:, None, None, :] * k).sum(-1, keepdim=True) * v
        decay_in = torch.exp(idx.float()[:, None] * log_w[:, None, :])  # (h, i, s): w^i
        decay_out = torch.exp((cs - 1 - idx).float()[:, None] * log_w[:, None, :])  # w^(cs-1-j)
        decay_chunk = torch.exp(cs * log_w)[:, :, None]  # (h, s, 1)
        state = r.new_zeros(b, h, s, s)
        inter = []
        for c in range(n):
            inter.append((r[:, :, c] * decay_in) @ state)
            state = decay_chunk * state + (k[:, :, c] * decay_out).transpose(-1, -2) @ v[:, :, c]
        out = out + torch.stack(inter, dim=2)
        return out.reshape(b, h, n * cs, s)[:, :, :T]

    @staticmethod
    def recurrent(r, k, v, log_w, u):
        """Step-by-step reference of :meth:`chunked`."""
        b, h, T, s = r.shape
        state = r.new_zeros(b, h, s, s)
        w = torch.exp(log_w)[..., None]
        outs = []
        for t in range(T):
            kv = k[:, :, t, :, None] * v[:, :, t, None, :]
            outs.append((r[:, :, t, None, :] @ (state + u[..., None] * kv)).squeeze(-2))
            state = w * state + kv
        return torch.stack(outs, dim=2)

    def _forward(self, X, **Z):
        B, T, C = X.shape
        H = self.n_head
        delta = F.pad(X, (0, 0, 1, -1)) - X  # x_{t-1} - x_t, zeros before the first token

        def heads(t):
            return t.view(B, T, H, -1).transpose(1, 2).float()

        r = heads(self.r(X + delta * self.mix_r))
        k = heads(self.k(X + delta * self.mix_k))
        v = heads(self.v(X + delta * self.mix_v))
        g = F.silu(self.g(X + delta * self.mix_g))
        log_w = -torch.exp(self.time_decay.float())
        y = self.chunked(r, k, v, log_w, self.time_first.float())
        y = (y - y.mean(-1, keepdim=True)) * torch.rsqrt(y.var(-1, keepdim=True, unbiased=False) + self.eps)
        y = y.transpose(1, 2).reshape(B, T, C) * self.ln_weight + self.ln_bias
        return self.o(y.to(X.dtype) * g), {}
