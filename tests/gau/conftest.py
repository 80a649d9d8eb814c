"""Shared harness of the GAU tests: every seed, built once per session at the micro rung."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from model_discovery.gau import build_lm, get_scale, load_seed

MICRO = get_scale("micro")


@pytest.fixture(scope="session")
def seed_models() -> dict[str, Any]:
    """name -> DesignLM built at micro with a fixed seed (built lazily by :func:`micro_lm`)."""
    return {}


@pytest.fixture
def micro_lm(seed_models: dict[str, Any]):
    """``micro_lm(name)`` returns the seed's micro LM in eval mode (cached per session)."""

    def get(name: str) -> Any:
        if name not in seed_models:
            torch.manual_seed(0)
            seed_models[name] = build_lm(load_seed(name), MICRO).eval()
        return seed_models[name]

    return get

