"""Gated feed-forward with SiLU gate (SwiGLU, Llama); hidden = mult * d rounded up to multiple_of."""

import math

import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class SwiGLU(GAUBase):
    """``W_out(silu(W_gate x) * W_up x)``; mult 8/3 keeps parameters equal to a 4x GELU MLP."""

    positionwise = True  # decoding feeds it the new positions alone

    def __init__(self, d_model, block_loc, ctx=None, mult: float = 2.6667, multiple_of: int = 32):
        super().__init__(d_model, block_loc, ctx)
        hidden = multiple_of * math.ceil(mult * d_model / multiple_of)
        self.hidden = hidden
        self.w_in = nn.Linear(d_model, 2 * hidden, bias=False)
        self.w_out = nn.Linear(hidden, d_model, bias=False)

    def _forward(self, X, **Z):
        gate, up = self.w_in(X).split(self.hidden, dim=-1)
        return self.w_out(F.silu(gate) * up), {}
