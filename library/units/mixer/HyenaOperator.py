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

    Decoding (:meth:`_step`) keeps the sequence each long convolution reads and computes only
    the new outputs (a dot product over the past per new position); the ``conv`` child keeps
    its own tail.
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
        h = torch.sin(self.sin_freq * self.filter_in(feats.to(self.filter_in.weight.dtype)))
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

    def conv_tail(self, u: torch.Tensor, h: torch.Tensor, T: int) -> torch.Tensor:
        """The last T outputs of the causal convolution of u (b, S, d) with h (>= S, d): for a
        few new positions a dot product with the reversed filter each (O(S) per position), for
        more the FFT of the whole sequence."""
        S = u.size(1)
        if T > 16:
            return self.long_conv(u, h[:S])[:, S - T:]
        lag = torch.arange(S - T, S, device=u.device)[:, None] - torch.arange(S, device=u.device)[None, :]
        taps = h[lag.clamp(min=0)] * (lag >= 0)[..., None]  # (T, S, d): h[t - s] for s <= t, else 0
        return torch.einsum("tsd,bsd->btd", taps, u.float())

    def _forward(self, X, state=None, **Z):
        """Outputs at the positions of X; decoding passes its ``state`` (a dict, see
        :meth:`_step`), which this continues and updates."""
        B, T, _ = X.shape
        u, _ = self.conv(self.in_proj(X))
        *gates, v = u.float().split(self.d_model, dim=-1)
        past = state["u0"].size(1) if state is not None and "u0" in state else 0
        if not past:  # the whole sequence, or the first chunk of a decode: the FFT
            h = self.filters(T, X.device)
        elif "h" not in state or state["h"].size(2) < past + T:
            state["h"] = self.filters(max(past + T, self.max_seq_len), X.device).expand(B, -1, -1, -1)
        for i, x_i in enumerate(reversed(gates[1:])):
            v = v * x_i
            if past:
                seq = state[f"u{i}"] = torch.cat([state[f"u{i}"], v], dim=1)
                conv = self.conv_tail(seq, state["h"][0, i], T)
            else:
                if state is not None:
                    state[f"u{i}"] = v
                conv = self.long_conv(v, h[i])
            v = conv + v * self.filter_bias[i]
        y = v * gates[0]
        return self.out_proj(y.to(X.dtype)), {}

    def _step(self, X, state, **Z):
        """State: the inputs of each long convolution so far, ``u0`` .. (b, S, d), and the filters
        up to the context length (computed once, kept as a batch-first view)."""
        return self._forward(X, state, **Z)
