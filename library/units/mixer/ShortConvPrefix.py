"""Short causal depthwise convolution in front of a sequence mixer (as in Mamba, H3, RetNet variants).

The convolution mixes each channel over the last ``kernel_size`` positions (left padding only, so
it stays causal) and starts as the identity, so wrapping a mixer does not disturb it at init.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase

SLOT_ROLES = {"mixer": "mixer"}


class ShortConvPrefix(GAUBase):
    def __init__(self, d_model, block_loc, ctx=None, kernel_size: int = 4):
        super().__init__(d_model, block_loc, ctx)
        self.kernel_size = int(kernel_size)
        self.conv_weight = nn.Parameter(torch.zeros(d_model, 1, self.kernel_size))
        with torch.no_grad():
            self.conv_weight[:, 0, -1] = 1.0
        self.mixer = self.build_child("mixer")

    def _forward(self, X, state=None, **Z):
        """The mixer over the convolved X; decoding passes this unit's ``state`` (a dict, see
        :meth:`_step`); the mixer keeps its own."""
        h = X.transpose(1, 2)
        if state is None:
            h = F.pad(h, (self.kernel_size - 1, 0))
        else:
            h = torch.cat([state.get("tail", X.new_zeros(X.size(0), self.d_model, self.kernel_size - 1)), h], dim=2)
            state["tail"] = h[:, :, h.size(2) - self.kernel_size + 1:]
        h = F.conv1d(h, self.conv_weight, groups=self.d_model).transpose(1, 2)
        return self.mixer(h, **Z)

    def _step(self, X, state, **Z):
        """Conv state: the last kernel_size - 1 inputs."""
        return self._forward(X, state, **Z)
