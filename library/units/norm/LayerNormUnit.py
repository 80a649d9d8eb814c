"""LayerNorm over the model dimension (GPT-2)."""

import torch.nn as nn

from model_discovery.gau.runtime import GAUBase


class LayerNormUnit(GAUBase):
    positionwise = True  # decoding feeds it the new positions alone

    def __init__(self, d_model, block_loc, ctx=None, eps: float = 1e-5):
        super().__init__(d_model, block_loc, ctx)
        self.ln = nn.LayerNorm(d_model, eps=eps)

    def _forward(self, X, **Z):
        return self.ln(X), {}
