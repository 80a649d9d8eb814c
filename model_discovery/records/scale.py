"""A rung of the ladder of scales: the LM's size, its training recipe and verify budget.

The named rungs (``LADDER``, ``get_scale``) live in :mod:`model_discovery.gau.scales`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ScaleConfig(BaseModel):
    """One rung of the ladder."""

    model_config = ConfigDict(extra="forbid")

    name: str
    d_model: int = Field(gt=0)
    n_block: int = Field(gt=0)
    context_len: int = Field(gt=0)
    vocab_size: int = Field(gt=0, description="tokenizer vocabulary trained for this rung")
    param_band: tuple[float, float] = Field(
        (0.5, 2.0), description="allowed non-embedding params as multiples of reference_params")
    train_tokens: int | None = Field(None, description="None: Chinchilla 20 tokens per parameter")
    batch_size: int = Field(8, gt=0, description="sequences per optimizer step")
    lr: float = Field(3e-3, gt=0)
    verify_budget: int = Field(10, ge=0, description="verifications allowed at this rung per run")
    device: str = Field("auto", description="'cpu', 'cuda' or 'auto'")

    @property
    def reference_params(self) -> int:
        """Non-embedding parameters of a GPT-2-style block stack of this shape (12·d²·L)."""
        return 12 * self.d_model * self.d_model * self.n_block

    def param_limits(self) -> tuple[int, int]:
        lo, hi = self.param_band
        return int(lo * self.reference_params), int(hi * self.reference_params)

    def tokens_for(self, n_params: int) -> int:
        return self.train_tokens if self.train_tokens is not None else 20 * n_params
