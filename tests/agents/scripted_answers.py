"""Scripted model answers for LLM-driven tests (a GPT-2 parent whose MLP becomes a gated SiLU MLP).

``UNIT_GOOD`` is a correct unit; ``UNIT_BROKEN`` returns the hidden width instead of ``d_model``
(the checker rejects it), so a design flow can exercise its debug loop with the same unit name.
"""

from __future__ import annotations

from typing import Any

GATED_SOURCE = '''"""Gated SiLU MLP: w2(silu(w1 x) * w3 x)."""

import torch.nn as nn
import torch.nn.functional as F

from model_discovery.gau.runtime import GAUBase


class GatedSiluMLP(GAUBase):
    def __init__(self, d_model, block_loc, ctx=None, mult: float = 2.5):
        super().__init__(d_model, block_loc, ctx)
        hidden = int(mult * d_model)
        self.w1 = nn.Linear(d_model, hidden, bias=False)
        self.w3 = nn.Linear(d_model, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d_model, bias=False)

    def _forward(self, X, **Z):
        return self.w2(F.silu(self.w1(X)) * self.w3(X)), {}
'''

BROKEN_SOURCE = GATED_SOURCE.replace("return self.w2(F.silu(self.w1(X)) * self.w3(X)), {}",
                                     "return F.silu(self.w1(X)) * self.w3(X), {}")

UNIT_PLAN: dict[str, Any] = {
    "name": "GatedSiluMLP", "role": "channel_mixer",
    "description": "y = w2(silu(w1 x) * w3 x) with hidden width mult * d_model, no bias",
    "children": {}, "replaces": "GeluMLP",
}

PROPOSAL: dict[str, Any] = {
    "title": "Gated SiLU channel mixer",
    "motivation": "Gated linear units improve perplexity over GELU MLPs at equal parameters.",
    "change": "Replace GeluMLP in slot mlp of PreNormBlock by GatedSiluMLP (mult 2.5).",
    "operator": "llm",
    "parents": ["gpt2"],
    "references": ["GLU Variants Improve Transformer (arXiv 2002.05202)"],
    "units": [UNIT_PLAN],
}

REVIEW: dict[str, Any] = {
    "rating": 4, "accept": True, "novelty": 0.4,
    "reasons": ["sound, causal, per-token", "well supported by the literature"],
    "suggestions": ["keep the parameter count equal to the parent"],
}

PLAN: dict[str, Any] = {"root": None, "units": [UNIT_PLAN], "notes": "one leaf unit"}

UNIT_GOOD: dict[str, Any] = {
    "name": "GatedSiluMLP", "role": "channel_mixer", "source": GATED_SOURCE,
    "children": {}, "hparams": {"mult": 2.5}, "rationale": "standard gated MLP",
}

UNIT_BROKEN: dict[str, Any] = {**UNIT_GOOD, "source": BROKEN_SOURCE, "rationale": "first attempt"}

NOTE = ("GatedSiluMLP lowers validation loss from 5.10 to 4.95 versus gpt2 at equal parameters; "
        "try gating in the mixer next.")
