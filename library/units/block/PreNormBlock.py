"""Pre-norm residual block: x + mixer(norm1(x)), then + mlp(norm2(x)) (GPT-2 / Llama layout)."""

import torch

from model_discovery.gau.runtime import GAUBase


class PreNormBlock(GAUBase):
    positionwise = True  # decoding feeds it the new positions alone

    def __init__(self, d_model, block_loc, ctx=None):
        super().__init__(d_model, block_loc, ctx)
        self.norm1 = self.build_child("norm1")
        self.mixer = self.build_child("mixer")
        self.norm2 = self.build_child("norm2")
        self.mlp = self.build_child("mlp")

    def _forward(self, X: torch.Tensor, **Z):
        h, Z = self.norm1(X, **Z)
        h, Z = self.mixer(h, **Z)
        X = X + h
        h, Z = self.norm2(X, **Z)
        h, Z = self.mlp(h, **Z)
        return X + h, Z
