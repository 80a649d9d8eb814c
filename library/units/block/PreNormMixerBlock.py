"""Pre-norm residual block with a single sublayer: x + mixer(norm(x)) (Mamba / Mamba2 layout)."""

import torch

from model_discovery.gau.runtime import GAUBase


class PreNormMixerBlock(GAUBase):
    """One residual branch; the mixer carries all of the block's parameters."""

    positionwise = True  # decoding feeds it the new positions alone

    def __init__(self, d_model, block_loc, ctx=None):
        super().__init__(d_model, block_loc, ctx)
        self.norm = self.build_child("norm")
        self.mixer = self.build_child("mixer")

    def _forward(self, X: torch.Tensor, **Z):
        h, Z = self.norm(X, **Z)
        h, Z = self.mixer(h, **Z)
        return X + h, Z
