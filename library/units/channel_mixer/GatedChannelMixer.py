"""A sigmoid gate around a channel mixer: ``sigmoid(W x) * mlp(x)`` (GLU-style gating of any MLP)."""

import torch
import torch.nn as nn

from model_discovery.gau.runtime import GAUBase

SLOT_ROLES = {"mlp": "channel_mixer"}


class GatedChannelMixer(GAUBase):
    positionwise = True  # decoding feeds it the new positions alone

    def __init__(self, d_model, block_loc, ctx=None, gate_bias: bool = True):
        super().__init__(d_model, block_loc, ctx)
        self.gate = nn.Linear(d_model, d_model, bias=gate_bias)
        self.mlp = self.build_child("mlp")

    def _forward(self, X, **Z):
        h, Z = self.mlp(X, **Z)
        return torch.sigmoid(self.gate(X)) * h, Z
