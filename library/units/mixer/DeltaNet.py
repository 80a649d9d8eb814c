"""DeltaNet: linear attention whose state is updated by the delta rule, computed chunk-wise."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class DeltaNet(GAUBase):
    """Per head: ``S_t = S_{t-1} + beta_t (v_t - S_{t-1}^T k_t) k_t^T`` (one step of online
    regression of v on k), ``o_t = S_t^T q_t``. q, k, v pass through the ``conv`` child (a short
    causal conv, SiLU), q and k are L2-normalised; beta_t = sigmoid(W_b x_t) per head.

    :meth:`chunked` uses the WY/UT form: inside a chunk the coupled updates become one
    triangular solve; :meth:`recurrent` is the step-by-step reference. Both continue from a state
    and return the last one, which decoding keeps (:meth:`_step`; the ``conv`` child keeps its
    own tail).
    """

    def __init__(self, d_model, block_loc, ctx=None, n_head: int = 4, chunk_size: int = 32,
                 eps: float = 1e-5):
        super().__init__(d_model, block_loc, ctx)
        if d_model % n_head:
            raise ValueError(f"d_model {d_model} not divisible by n_head {n_head}")
        self.n_head, self.chunk_size, self.eps = n_head, chunk_size, eps
        self.head_dim = d_model // n_head
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.conv = self.build_child("conv", d_model=3 * d_model)
        self.beta = nn.Linear(d_model, n_head, bias=False)
        self.o = nn.Linear(d_model, d_model, bias=False)
        self.norm_weight = nn.Parameter(torch.ones(self.head_dim))

    def chunked(self, q, k, v, beta, state=None):
        """q, k, v (b,h,t,d) with q, k unit-norm; beta (b,h,t); state (b,h,d,d) or None (zeros)
        -> outputs (b,h,t,d) and the state after the last position."""
        b, h, T, d = q.shape
        cs = self.chunk_size
        pad = (-T) % cs
        if pad:
            q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
            beta = F.pad(beta, (0, pad))
        n = q.size(2) // cs
        q, k, v = (t.reshape(b, h, n, cs, d) for t in (q, k, v))
        beta = beta.reshape(b, h, n, cs, 1)
        k_beta, v_beta = k * beta, v * beta
        strict = torch.tril(torch.ones(cs, cs, dtype=torch.bool, device=q.device), diagonal=-1)
        eye = torch.eye(cs, device=q.device, dtype=q.dtype)
        lower = eye + (k_beta @ k.transpose(-1, -2)).masked_fill(~strict, 0.0)
        inv = torch.linalg.solve_triangular(lower, eye.expand_as(lower).contiguous(), upper=False)
        w, u = inv @ k_beta, inv @ v_beta
        causal = torch.tril(torch.ones(cs, cs, dtype=torch.bool, device=q.device))
        state = q.new_zeros(b, h, d, d) if state is None else state
        outs = []
        for c in range(n):
            q_c, k_c = q[:, :, c], k[:, :, c]
            u_c = u[:, :, c] - w[:, :, c] @ state
            attn = (q_c @ k_c.transpose(-1, -2)).masked_fill(~causal, 0.0)
            outs.append(q_c @ state + attn @ u_c)
            state = state + k_c.transpose(-1, -2) @ u_c
        return torch.stack(outs, dim=2).reshape(b, h, n * cs, d)[:, :, :T], state  # padded k = 0

    @staticmethod
    def recurrent(q, k, v, beta, state=None):
        """Step-by-step reference of :meth:`chunked` (same arguments and results)."""
        b, h, T, d = q.shape
        state = q.new_zeros(b, h, d, d) if state is None else state
        outs = []
        for t in range(T):
            k_t, v_t = k[:, :, t], v[:, :, t]
            err = v_t - (k_t[..., None, :] @ state).squeeze(-2)
            state = state + beta[:, :, t, None, None] * k_t[..., :, None] * err[..., None, :]
            outs.append((q[:, :, t, None, :] @ state).squeeze(-2))
        return torch.stack(outs, dim=2), state

    def _forward(self, X, state=None, **Z):
        """Outputs at the positions of X; decoding passes its ``state`` (a dict, see
        :meth:`_step`), which this continues and updates."""
        B, T, C = X.shape
        H = self.n_head
        qkv, _ = self.conv(self.qkv(X))

        def heads(t):
            return t.reshape(B, T, H, -1).transpose(1, 2).float()

        q, k, v = (heads(t) for t in qkv.split(C, dim=-1))
        q = F.normalize(q, dim=-1) * self.head_dim ** -0.5
        k = F.normalize(k, dim=-1)
        beta = torch.sigmoid(self.beta(X)).transpose(1, 2).float()
        if state is None:
            y, _ = self.chunked(q, k, v, beta)
        else:  # one new position: the recurrence; a chunk: the chunked form from the state
            scan = self.recurrent if T == 1 else self.chunked
            y, state["S"] = scan(q, k, v, beta, state.get("S"))
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.norm_weight
        return self.o(y.transpose(1, 2).reshape(B, T, C).to(X.dtype)), {}

    def _step(self, X, state, **Z):
        """Recurrent state: the (b, h, d, d) matrix S after the last position."""
        return self._forward(X, state, **Z)
