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
    (:meth:`chunked`) with :meth:`recurrent` as the step-by-step reference; both continue from a
    state and return the last one, which decoding keeps with the last input (:meth:`_step`).
    Output is group-normed per head and gated by ``silu(W_g x_g)``.
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

    def chunked(self, r, k, v, log_w, u, state=None):
        """r, k, v (b,h,t,s); log_w, u (h,s); state (b,h,s,s) or None (zeros)
        -> outputs (b,h,t,s) and the state after the last position."""
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
        state = r.new_zeros(b, h, s, s) if state is None else state
        inter = []
        for c in range(n):
            inter.append((r[:, :, c] * decay_in) @ state)
            real = min(cs, T - c * cs)  # the padded tail must not decay the state
            state = self.advance(state, k[:, :, c, :real], v[:, :, c, :real], log_w)
        out = out + torch.stack(inter, dim=2)
        return out.reshape(b, h, n * cs, s)[:, :, :T], state

    @staticmethod
    def advance(state, k, v, log_w):
        """The state after the L positions of k, v (b,h,L,s): ``w^L S + sum_j w^(L-1-j) k_j^T v_j``."""
        L = k.size(2)
        ago = torch.arange(L - 1, -1, -1, device=k.device, dtype=torch.float32)
        decay_out = torch.exp(ago[:, None] * log_w[:, None, :])  # (h, j, s): w^(L-1-j)
        return torch.exp(L * log_w)[:, :, None] * state + (k * decay_out).transpose(-1, -2) @ v

    @staticmethod
    def recurrent(r, k, v, log_w, u, state=None):
        """Step-by-step reference of :meth:`chunked` (same arguments and results)."""
        b, h, T, s = r.shape
        state = r.new_zeros(b, h, s, s) if state is None else state
        w = torch.exp(log_w)[..., None]
        outs = []
        for t in range(T):
            kv = k[:, :, t, :, None] * v[:, :, t, None, :]
            outs.append((r[:, :, t, None, :] @ (state + u[..., None] * kv)).squeeze(-2))
            state = w * state + kv
        return torch.stack(outs, dim=2), state

    def _forward(self, X, state=None, **Z):
        """Outputs at the positions of X; decoding passes its ``state`` (a dict, see
        :meth:`_step`), which this continues and updates."""
        B, T, C = X.shape
        H = self.n_head
        if state is None:
            shifted = F.pad(X, (0, 0, 1, -1))  # x_{t-1}, zeros before the first token
        else:
            shifted = torch.cat([state.get("last", X.new_zeros(B, 1, C)), X[:, :-1]], dim=1)
            state["last"] = X[:, -1:]
        delta = shifted - X

        def heads(t):
            return t.view(B, T, H, -1).transpose(1, 2).float()

        r = heads(self.r(X + delta * self.mix_r))
        k = heads(self.k(X + delta * self.mix_k))
        v = heads(self.v(X + delta * self.mix_v))
        g = F.silu(self.g(X + delta * self.mix_g))
        log_w = -torch.exp(self.time_decay.float())
        if state is None:
            y, _ = self.chunked(r, k, v, log_w, self.time_first.float())
        else:  # one new position: the recurrence; a chunk: the chunked form from the state
            scan = self.recurrent if T == 1 else self.chunked
            y, state["S"] = scan(r, k, v, log_w, self.time_first.float(), state.get("S"))
        y = (y - y.mean(-1, keepdim=True)) * torch.rsqrt(y.var(-1, keepdim=True, unbiased=False) + self.eps)
        y = y.transpose(1, 2).reshape(B, T, C) * self.ln_weight + self.ln_bias
        return self.o(y.to(X.dtype) * g), {}

    def _step(self, X, state, **Z):
        """State: the last input (token shift) and the (b, h, s, s) matrix S."""
        return self._forward(X, state, **Z)
