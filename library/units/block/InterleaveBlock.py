"""Hybrid stack: even layers use the ``even`` block, odd layers the ``odd`` block.

Only the block this layer needs is built (chosen by ``block_loc[0] % 2``), so an interleave of
two designs has about the average size of the two.
"""

from model_discovery.gau.runtime import GAUBase

SLOT_ROLES = {"even": "block", "odd": "block"}


class InterleaveBlock(GAUBase):
    positionwise = True  # decoding feeds it the new positions alone

    def __init__(self, d_model, block_loc, ctx=None):
        super().__init__(d_model, block_loc, ctx)
        if block_loc[0] % 2 == 0:
            self.inner = self.build_child("even")
        else:
            self.inner = self.build_child("odd")

    def _forward(self, X, **Z):
        return self.inner(X, **Z)
