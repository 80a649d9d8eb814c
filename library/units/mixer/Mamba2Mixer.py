"""Mamba2 selective state-space mixer (SSD): scalar-decay SSM per head, chunked pure-PyTorch scan."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class Mamba2Mixer(GAUBase):
    """Input-dependent SSM ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t``, ``y_t = C_t h_t + D x_t``.

    One projection yields the gate z, the SSM input x, shared B and C, and per-head step sizes dt;
    x, B, C pass through the ``conv`` child (a short causal conv). The scan runs chunk-wise
    (quadratic inside a chunk, a state recurrence across chunks); :meth:`scan_recurrent` is the
    step-by-step reference. Both continue from an SSM state and return the last one, which
    decoding keeps (:meth:`_step`; the ``conv`` child keeps its own tail). Output is RMS-normed
    after gating with silu(z).
    """

    def __init__(self, d_model, block_loc, ctx=None, expand: int = 2, d_state: int = 64,
                 head_dim: int = 32, chunk_size: int = 32, dt_min: float = 0.001, dt_max: float = 0.1,
                 eps: float = 1e-5):
        super().__init__(d_model, block_loc, ctx)
        self.d_inner = expand * d_model
        if self.d_inner % head_dim:
            raise ValueError(f"expand * d_model = {self.d_inner} not divisible by head_dim {head_dim}")
        self.d_state, self.head_dim, self.chunk_size, self.eps = d_state, head_dim, chunk_size, eps
        self.n_head = self.d_inner // head_dim
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * d_state + self.n_head, bias=False)
        self.conv = self.build_child("conv", d_model=self.d_inner + 2 * d_state)
        dt = torch.exp(torch.rand(self.n_head) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(self.n_head).uniform_(1.0, 16.0)))
        self.D = nn.Parameter(torch.ones(self.n_head))
        self.norm_weight = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    @staticmethod
    def segsum(x: torch.Tensor) -> torch.Tensor:
        """(..., T) -> (..., T, T) with out[i, j] = sum(x[j+1 : i+1]) for j <= i, -inf above."""
        T = x.size(-1)
        x = x[..., None].expand(*x.shape, T)
        below = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=-1)
        x = x.masked_fill(~below, 0.0)
        out = torch.cumsum(x, dim=-2)
        keep = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), diagonal=0)
        return out.masked_fill(~keep, -math.inf)

    def scan_chunked(self, x, a, B, C, state=None):
        """x (b,l,h,p) already times dt; a (b,l,h) = dt*A; B, C (b,l,n) shared by heads; state
        (b,h,p,n) or None (zeros) -> outputs (b,l,h,p) and the state after the last position."""
        b, L, h, p = x.shape
        cs = self.chunk_size
        pad = (-L) % cs
        if pad:
            x, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, B, C))
            a = F.pad(a, (0, 0, 0, pad))
        nc = x.size(1) // cs
        x = x.reshape(b, nc, cs, h, p)
        B = B.reshape(b, nc, cs, -1)
        C = C.reshape(b, nc, cs, -1)
        a = a.reshape(b, nc, cs, h).permute(0, 3, 1, 2)  # (b, h, c, l)
        a_cum = torch.cumsum(a, dim=-1)
        # 1. within-chunk outputs (quadratic form)
        Lmat = torch.exp(self.segsum(a))  # (b, h, c, l, s)
        y_diag = torch.einsum("bcln,bcsn,bhcls,bcshp->bclhp", C, B, Lmat, x)
        # 2. state at the end of each chunk from its own inputs
        decay_states = torch.exp(a_cum[..., -1:] - a_cum)  # (b, h, c, l)
        states = torch.einsum("bcln,bhcl,bclhp->bchpn", B, decay_states, x)
        # 3. carry states across chunks, from the initial one (padded steps have a = 0, B = 0)
        initial = torch.zeros_like(states[:, :1]) if state is None else state[:, None]
        states = torch.cat([initial, states], dim=1)
        decay_chunk = torch.exp(self.segsum(F.pad(a_cum[..., -1], (1, 0))))  # (b, h, c+1, c+1)
        states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
        states, final = states[:, :-1], states[:, -1]
        # 4. contribution of carried state to each position
        y_off = torch.einsum("bcln,bchpn,bhcl->bclhp", C, states, torch.exp(a_cum))
        y = (y_diag + y_off).reshape(b, nc * cs, h, p)
        return y[:, :L], final

    @staticmethod
    def scan_recurrent(x, a, B, C, state=None):
        """Step-by-step reference of :meth:`scan_chunked` (same arguments and results)."""
        b, L, h, p = x.shape
        state = x.new_zeros(b, h, p, B.size(-1)) if state is None else state
        ys = []
        for t in range(L):
            state = torch.exp(a[:, t])[:, :, None, None] * state + x[:, t, :, :, None] * B[:, t, None, None, :]
            ys.append(torch.einsum("bhpn,bn->bhp", state, C[:, t]))
        return torch.stack(ys, dim=1), state

    def _forward(self, X, state=None, **Z):
        """Outputs at the positions of X; decoding passes its ``state`` (a dict, see
        :meth:`_step`), which this continues and updates."""
        b, L, _ = X.shape
        z, xBC, dt = self.in_proj(X).split([self.d_inner, self.d_inner + 2 * self.d_state, self.n_head], dim=-1)
        xBC, _ = self.conv(xBC)
        x, B, C = xBC.split([self.d_inner, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(dt + self.dt_bias)  # (b, l, h)
        A = -torch.exp(self.A_log.float())
        x = x.reshape(b, L, self.n_head, self.head_dim)
        args = ((x * dt[..., None]).float(), (dt * A).float(), B.float(), C.float())
        if state is None:
            y, _ = self.scan_chunked(*args)
        else:  # one new position: the recurrence; a chunk: the chunked scan from the state
            scan = self.scan_recurrent if L == 1 else self.scan_chunked
            y, state["ssm"] = scan(*args, state.get("ssm"))
        y = y + x.float() * self.D[:, None]
        y = y.reshape(b, L, self.d_inner) * F.silu(z.float())
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.norm_weight
        return self.out_proj(y.to(X.dtype)), {}

    def _step(self, X, state, **Z):
        """SSM state: the (b, h, head_dim, d_state) matrix after the last position."""
        return self._forward(X, state, **Z)
