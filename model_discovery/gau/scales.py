"""The ladder of scales: named model sizes with their training recipe and verify budget.

A rung fixes everything about the LM around a design (d_model, n_block, context, vocab) so that
designs are compared at equal size; designs never choose their own scale.
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


LADDER: dict[str, ScaleConfig] = {
    s.name: s
    for s in [
        ScaleConfig(name="micro", d_model=64, n_block=2, context_len=128, vocab_size=2048,
                    train_tokens=300_000, batch_size=16, lr=3e-3, verify_budget=1000, device="cpu"),
        ScaleConfig(name="14M", d_model=256, n_block=12, context_len=512, vocab_size=16384,
                    batch_size=32, lr=1.5e-3, verify_budget=50),
        ScaleConfig(name="31M", d_model=384, n_block=14, context_len=1024, vocab_size=16384,
                    batch_size=32, lr=1e-3, verify_budget=25),
        ScaleConfig(name="70M", d_model=512, n_block=20, context_len=1024, vocab_size=16384,
                    batch_size=64, lr=8e-4, verify_budget=12),
        ScaleConfig(name="125M", d_model=768, n_block=16, context_len=2048, vocab_size=16384,
                    batch_size=64, lr=6e-4, verify_budget=6),
        ScaleConfig(name="350M", d_model=1024, n_block=26, context_len=2048, vocab_size=16384,
                    batch_size=128, lr=3e-4, verify_budget=3),
    ]
}


def get_scale(name: str) -> ScaleConfig:
    """The named rung; a clear error lists the known names."""
    try:
        return LADDER[name]
    except KeyError:
        raise KeyError(f"unknown scale {name!r}; known scales: {', '.join(LADDER)}") from None
