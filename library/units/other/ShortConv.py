"""Depthwise causal 1-D convolution over time with optional SiLU (Mamba2, Hyena, DeltaNet)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class ShortConv(GAUBase):
    """Per-channel causal conv of width ``kernel_size`` (left zero padding); any channel count.

    Parents build it at their inner width: ``self.build_child("conv", d_model=width)``.
    """

    def __init__(self, d_model, block_loc, ctx=None, kernel_size: int = 4, activation: str = "silu"):
        super().__init__(d_model, block_loc, ctx)
        if activation not in ("silu", "none"):
            raise ValueError(f"ShortConv activation must be 'silu' or 'none', got {activation!r}")
        self.kernel_size = kernel_size
        self.activation = activation
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, groups=d_model, bias=True)

    def _forward(self, X, state=None, **Z):
        """Outputs at the positions of X; decoding passes its ``state`` (a dict, see :meth:`_step`)."""
        x = X.transpose(1, 2)
        if state is None:
            x = F.pad(x, (self.kernel_size - 1, 0))
        else:
            x = torch.cat([state.get("tail", X.new_zeros(X.size(0), X.size(2), self.kernel_size - 1)), x], dim=2)
            state["tail"] = x[:, :, x.size(2) - self.kernel_size + 1:]
        y = self.conv(x).transpose(1, 2)
        return (F.silu(y) if self.activation == "silu" else y), {}

    def _step(self, X, state, **Z):
        """Conv state: the last kernel_size - 1 inputs."""
        return self._forward(X, state, **Z)
