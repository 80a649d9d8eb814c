"""RWKV channel-mix: token shift, squared-ReLU key MLP, sigmoid receptance gate."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class RWKVChannelMix(GAUBase):
    """``sigmoid(W_r x_r) * W_v relu(W_k x_k)^2`` where x_k, x_r interpolate x_t and x_{t-1}."""

    def __init__(self, d_model, block_loc, ctx=None, mult: float = 3.5, multiple_of: int = 32):
        super().__init__(d_model, block_loc, ctx)
        layer, n_layer = self.block_loc
        ratio = 1.0 - layer / max(n_layer, 1)
        ddd = torch.arange(d_model, dtype=torch.float32) / d_model
        self.mix_k = nn.Parameter(1.0 - ddd.pow(ratio))
        self.mix_r = nn.Parameter(1.0 - ddd.pow(ratio))
        hidden = multiple_of * math.ceil(mult * d_model / multiple_of)
        self.key = nn.Linear(d_model, hidden, bias=False)
        self.value = nn.Linear(hidden, d_model, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)

    def _forward(self, X, state=None, **Z):
        """Outputs at the positions of X; decoding passes its ``state`` (a dict, see :meth:`_step`)."""
        if state is None:
            shifted = F.pad(X, (0, 0, 1, -1))  # x_{t-1}, zeros at t = 0
        else:
            shifted = torch.cat([state.get("last", X.new_zeros(X.size(0), 1, X.size(2))), X[:, :-1]], dim=1)
            state["last"] = X[:, -1:]
        delta = shifted - X
        xk = X + delta * self.mix_k
        xr = X + delta * self.mix_r
        k = torch.relu(self.key(xk)).square()
        return torch.sigmoid(self.receptance(xr)) * self.value(k), {}

    def _step(self, X, state, **Z):
        """Token-shift state: the last input."""
        return self._forward(X, state, **Z)
