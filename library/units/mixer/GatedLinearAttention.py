"""Gated linear attention (GLA): linear attention with a data-dependent per-key-channel forget gate."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class GatedLinearAttention(GAUBase):
    """State ``S_t = diag(a_t) S_{t-1} + k_t^T v_t``, output ``o_t = q_t S_t`` per head.

    The forget gate ``a_t = sigmoid(W2 W1 x_t)^(1/gate_norm)`` is low-rank; keys are
    ``expand_k`` times the model width. Computed chunk-wise (:meth:`chunked`), with
    :meth:`recurrent` as the step-by-step reference; both continue from a state and return the
    last one, which decoding keeps (:meth:`_step`). Output is RMS-normed per head and gated by
    ``silu(W_g x)``.
    """

    def __init__(self, d_model, block_loc, ctx=None, n_head: int = 4, expand_k: float = 0.5,
                 expand_v: float = 1.0, gate_rank: int = 16, gate_norm: float = 16.0,
                 chunk_size: int = 16, eps: float = 1e-5):
        super().__init__(d_model, block_loc, ctx)
        self.key_dim, self.value_dim = int(d_model * expand_k), int(d_model * expand_v)
        if self.key_dim % n_head or self.value_dim % n_head:
            raise ValueError(f"key/value widths {self.key_dim}/{self.value_dim} not divisible by {n_head} heads")
        self.n_head, self.gate_norm, self.chunk_size, self.eps = n_head, gate_norm, chunk_size, eps
        self.q = nn.Linear(d_model, self.key_dim, bias=False)
        self.k = nn.Linear(d_model, self.key_dim, bias=False)
        self.v = nn.Linear(d_model, self.value_dim, bias=False)
        self.g = nn.Linear(d_model, self.value_dim, bias=False)
        self.gk_down = nn.Linear(d_model, gate_rank, bias=False)
        self.gk_up = nn.Linear(gate_rank, self.key_dim, bias=True)
        self.o = nn.Linear(self.value_dim, d_model, bias=False)
        self.norm_weight = nn.Parameter(torch.ones(self.value_dim // n_head))

    def chunked(self, q, k, v, log_a, state=None):
        """q, k, log_a (b,h,t,dk); v (b,h,t,dv); state (b,h,dk,dv) or None (zeros)
        -> outputs (b,h,t,dv) and the state after the last position."""
        b, h, T, dk = q.shape
        cs = self.chunk_size
        pad = (-T) % cs
        if pad:
            q, k, v, log_a = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v, log_a))
        n = q.size(2) // cs
        q, k, v, log_a = (t.reshape(b, h, n, cs, t.size(-1)) for t in (q, k, v, log_a))
        cum = torch.cumsum(log_a, dim=-2)  # inclusive log decay from chunk start
        diff = cum[..., :, None, :] - cum[..., None, :, :]  # (b,h,n,i,j,dk)
        causal = torch.tril(torch.ones(cs, cs, dtype=torch.bool, device=q.device))
        diff = diff.masked_fill(~causal[:, :, None], -math.inf)
        attn = torch.einsum("bhnid,bhnjd,bhnijd->bhnij", q, k, torch.exp(diff))
        out = attn @ v
        state = q.new_zeros(b, h, dk, v.size(-1)) if state is None else state
        inter = []
        for c in range(n):
            inter.append((q[:, :, c] * torch.exp(cum[:, :, c])) @ state)
            last = cum[:, :, c, -1:]  # (b,h,1,dk)
            kd = k[:, :, c] * torch.exp(last - cum[:, :, c])
            state = torch.exp(last).transpose(-1, -2) * state + kd.transpose(-1, -2) @ v[:, :, c]
        out = out + torch.stack(inter, dim=2)
        return out.reshape(b, h, n * cs, -1)[:, :, :T], state  # padded steps have a = 1, k = 0

    @staticmethod
    def recurrent(q, k, v, log_a, state=None):
        """Step-by-step reference of :meth:`chunked` (same arguments and results)."""
        b, h, T, dk = q.shape
        state = q.new_zeros(b, h, dk, v.size(-1)) if state is None else state
        outs = []
        for t in range(T):
            state = torch.exp(log_a[:, :, t])[..., None] * state + k[:, :, t, :, None] * v[:, :, t, None, :]
            outs.append((q[:, :, t, None, :] @ state).squeeze(-2))
        return torch.stack(outs, dim=2), state

    def _forward(self, X, state=None, **Z):
        """Outputs at the positions of X; decoding passes its ``state`` (a dict, see
        :meth:`_step`), which this continues and updates."""
        B, T, _ = X.shape
        H = self.n_head

        def heads(t):
            return t.view(B, T, H, -1).transpose(1, 2).float()

        q = heads(self.q(X)) * (self.key_dim // H) ** -0.5
        k, v = heads(self.k(X)), heads(self.v(X))
        log_a = heads(F.logsigmoid(self.gk_up(self.gk_down(X))) / self.gate_norm)
        if state is None:
            y, _ = self.chunked(q, k, v, log_a)
        else:  # one new position: the recurrence; a chunk: the chunked form from the state
            scan = self.recurrent if T == 1 else self.chunked
            y, state["S"] = scan(q, k, v, log_a, state.get("S"))
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.norm_weight
        y = y.transpose(1, 2).reshape(B, T, self.value_dim).to(X.dtype)
        return self.o(F.silu(self.g(X)) * y), {}

    def _step(self, X, state, **Z):
        """Recurrent state: the (b, h, dk, dv) matrix S after the last position."""
        return self._forward(X, state, **Z)
