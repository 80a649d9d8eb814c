"""Hyena operator: data-controlled gating interleaved with implicit long convolutions (FFT, causal)."""

import math

import torch
import torch.nn as nn

from model_discovery.gau.runtime import GAUBase


class HyenaOperator(GAUBase):
    """``order + 1`` projections (after the ``conv`` child, a short causal conv) give gates
    x_1..x_order and a value v; for each of the ``order - 1`` long filters, v <- conv(h_i, v * x_i)
    and finally y = v * x_1. Filters are implicit: a small sine-activated MLP of positional
    features, times an exponential decay window, evaluated up to the context length; the long
    convolution is an FFT over 2T points, so it is exactly causal.
    """

    def __init__(self, d_model, block_loc, ctx=None, order: int = 2, filter_emb: int = 33,
                 filter_hidden: int = 64, sin_freq: float = 1.0, decay_fast: float = 0.3,
                 decay_slow: float = 1.5, decay_shift: float = 0.05):
        super().__init__(d_model, block_loc, ctx)
        if order < 2 or filter_emb < 3 or filter_emb % 2 == 0:
            raise ValueError("HyenaOperator needs order >= 2 and an odd filter_emb >= 3")
        self.order, self.filter_emb, self.decay_shift = order, filter_emb, decay_shift
        self.decay_fast, self.decay_slow = decay_fast, decay_slow
        self.in_proj = nn.Linear(d_model, (order + 1) * d_model, bias=False)
        self.conv = self.build_child("conv", d_model=(order + 1) * d_model)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        self.filter_in = nn.Linear(filter_emb, filter_hidden)
        self.filter_mid = nn.Linear(filter_hidden, filter_hidden)
        self.filter_out = nn.Linear(filter_hidden, (order - 1) * d_model, bias=False)
        self.sin_freq = nn.Parameter(sin_freq * torch.ones(1, filter_hidden))
        self.filter_bias = nn.Parameter(torch.randn(order - 1, d_model) * 0.02)

    def filters(self, T: int, device: torch.device) -> torch.Tensor:
        """Long filters for positions 0..T-1: (order - 1, T, d_model). Features use the full
        context length, so the filter at position t does not depend on T."""
        L = self.max_seq_len
        t = torch.arange(T, device=device, dtype=torch.float32)[:, None]
        bands = (self.filter_emb - 1) // 2
        freqs = torch.linspace(1e-4, bands - 1, bands, device=device)[None, :]
        ang = 2 * math.pi * t * freqs / L
        feats = torch.cat([t / max(L - 1, 1), torch.cos(ang), -torch.sin(ang)], dim=-1)
        h = torch.sin(self.sin_freq * self.filter_in(feats))
        h = torch.sin(self.sin_freq * self.filter_mid(h))
        h = self.filter_out(h)  # (T, (order-1) * d)
        target = math.log(1e-2)  # each channel's window decays to 1% at rate fast..slow
        rates = torch.linspace(target / self.decay_fast, target / self.decay_slow, self.d_model, device=device)
        window = torch.exp(-(t / max(L - 1, 1)) * rates.abs()[None, :]) + self.decay_shift  # (T, d)
        h = h.view(T, self.order - 1, self.d_model) * window[:, None, :]
        return h.transpose(0, 1)

    @staticmethod
    def long_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Causal convolution of u (b, T, d) with filter h (T, d) via FFT of length 2T."""
        T = u.size(1)
        n = 2 * T
        spec = torch.fft.rfft(u.float(), n=n, dim=1) * torch.fft.rfft(h.float(), n=n, dim=0)
        return torch.fft.irfft(spec, n=n, dim=1)[:, :T]

    def _forward(self, X, **Z):
        T = X.size(1)
        u, _ = self.conv(self.in_proj(X))
        *gates, v = u.float().split(self.d_model, dim=-1)
        h = self.filters(T, X.device)
        for i, x_i in enumerate(reversed(gates[1:])):
            v = v * x_i
            v = self.long_conv(v, h[i]) + v * self.filter_bias[i]
        y = v * gates[0]
        return self.out_proj(y.to(X.dtype)), {}
