"""The ladder of scales: named model sizes with their training recipe and verify budget.

A rung fixes everything about the LM around a design (d_model, n_block, context, vocab) so that
designs are compared at equal size; designs never choose their own scale.
"""

from __future__ import annotations

from model_discovery.records import ScaleConfig

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
