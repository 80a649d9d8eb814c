"""Root-mean-square norm over the model dimension with a learned gain (Llama, Mamba2, ...)."""

import torch
import torch.nn as nn

from model_discovery.gau.runtime import GAUBase


class RMSNormUnit(GAUBase):
    """``x / rms(x) * weight``, computed in float32."""

    positionwise = True  # decoding feeds it the new positions alone

    def __init__(self, d_model, block_loc, ctx=None, eps: float = 1e-5):
        super().__init__(d_model, block_loc, ctx)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def _forward(self, X, **Z):
        x = X.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * self.weight.float()).to(X.dtype), {}
