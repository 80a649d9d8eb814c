"""Two sequence mixers side by side on the same input, summed or mixed by a learned gate.

``mode="sum"`` adds the branches; ``mode="gate"`` mixes them per channel with
``g = sigmoid(W x)``: ``g * a(x) + (1 - g) * b(x)`` (a hybrid of, e.g., attention and an SSM).
"""

import torch
import torch.nn as nn

from model_discovery.gau.runtime import GAUBase

SLOT_ROLES = {"a": "mixer", "b": "mixer"}


class ParallelMixer(GAUBase):
    positionwise = True  # decoding feeds it the new positions alone

    def __init__(self, d_model, block_loc, ctx=None, mode: str = "sum"):
        super().__init__(d_model, block_loc, ctx)
        if mode not in ("sum", "gate"):
            raise ValueError(f"ParallelMixer mode must be 'sum' or 'gate', got {mode!r}")
        self.mode = mode
        self.a = self.build_child("a")
        self.b = self.build_child("b")
        self.gate = nn.Linear(d_model, d_model, bias=True) if mode == "gate" else None

    def _forward(self, X, **Z):
        ya, Z = self.a(X, **Z)
        yb, Z = self.b(X, **Z)
        if self.mode == "gate":
            g = torch.sigmoid(self.gate(X))
            return g * ya + (1.0 - g) * yb, Z
        return ya + yb, Z
