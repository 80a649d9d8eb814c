"""Fixtures for selector tests: a SQLite tree of gpt2 variants with a known true quality."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from model_discovery.evolution import EvolutionTree
from model_discovery.gau import Design, load_seed


@pytest.fixture(scope="session")
def seed() -> Design:
    return load_seed("gpt2")


@pytest.fixture
def make_tree(tmp_path, seed: Design) -> Callable[..., EvolutionTree]:  # noqa: ANN001
    """``make_tree(mults)``: gpt2 plus one checked child per MLP width in ``mults``."""

    def build(mults: list[int], name: str = "tree.db") -> EvolutionTree:
        tree = EvolutionTree(tmp_path / name)
        tree.add_design(seed, check={"passed": True})
        for m in mults:
            d = seed.model_copy(deep=True)
            d.name, d.parents = f"m{m}", ["gpt2"]
            d.units["GeluMLP"].hparams["mult"] = m
            tree.add_design(d, check={"passed": True}, operator="hparam")
        return tree

    return build

