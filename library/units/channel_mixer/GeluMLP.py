"""Two-layer MLP with GELU, expansion ``mult`` (GPT-2)."""

import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class GeluMLP(GAUBase):
    positionwise = True  # decoding feeds it the new positions alone

    def __init__(self, d_model, block_loc, ctx=None, mult: int = 4):
        super().__init__(d_model, block_loc, ctx)
        self.fc = nn.Linear(d_model, mult * d_model, bias=False)
        self.out = nn.Linear(mult * d_model, d_model, bias=False)

    def _forward(self, X, **Z):
        return self.out(F.gelu(self.fc(X))), {}
