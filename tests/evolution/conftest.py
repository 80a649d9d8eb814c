"""Fixtures for the evolution tree: every store test runs on SQLite and, when
``MODIS_TEST_PG_URL`` is set, on PostgreSQL too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from model_discovery.evolution import EvolutionTree
from model_discovery.evolution.schema import Base
from model_discovery.evolution.tree import database_url
from model_discovery.gau import Design, load_seed

PG_URL = os.environ.get("MODIS_TEST_PG_URL")
BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])


def _reset_pg(url: str) -> None:
    engine = create_engine(database_url(url))
    Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def tree_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty tree database on each backend."""
    if request.param == "sqlite":
        yield str(tmp_path / "tree.db")
    else:
        assert PG_URL is not None
        _reset_pg(PG_URL)
        yield PG_URL
        _reset_pg(PG_URL)


@pytest.fixture
def tree(tree_url: str) -> Iterator[EvolutionTree]:
    t = EvolutionTree(tree_url)
    yield t
    t.close()


@pytest.fixture(scope="session")
def seed() -> Design:
    return load_seed("gpt2")


@pytest.fixture(scope="session")
def variant():  # noqa: ANN201 - returns the helper below
    """``variant(base, name, parents, mult, n_head=None)``: a design with another fingerprint."""
    return make_variant


def make_variant(base: Design, name: str, parents: list[str], mult: int, n_head: int | None = None) -> Design:
    """A copy of ``base`` with a different MLP width (hence a different fingerprint)."""
    d = base.model_copy(deep=True)
    d.name, d.parents = name, list(parents)
    d.units["GeluMLP"].hparams["mult"] = mult
    if n_head is not None:
        d.units["CausalSelfAttention"].hparams["n_head"] = n_head
    return d
