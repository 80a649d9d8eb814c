"""A 1,000-design tree: the tree and leaderboard pages must render quickly (one query each)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from modis_app_fixtures import build_tree, load

from model_discovery.gau import list_seeds

N_DESIGNS = 1000


@pytest.fixture(scope="module")
def large_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("large_run")
    t0 = time.perf_counter()
    facts = build_tree(run_dir, N_DESIGNS - len(list_seeds()), n_results=400)
    print(f"\nbuilt a {len(facts['names'])}-design tree in {time.perf_counter() - t0:.1f} s")
    return run_dir, facts


@pytest.mark.slow
@pytest.mark.parametrize("page", ["tree", "leaderboard", "design", "evolve"])
def test_pages_load_fast_on_1000_designs(large_run: tuple[Path, dict], page: str) -> None:
    run_dir, facts = large_run
    assert len(facts["names"]) >= N_DESIGNS
    t0 = time.perf_counter()
    at = load(run_dir, page)
    seconds = time.perf_counter() - t0
    print(f"\n{page} page with {len(facts['names'])} designs: {seconds:.2f} s")
    if page == "tree":
        assert len(at.get("plotly_chart")) == 1
        assert any(c.value.startswith(f"{len(facts['names'])} designs") for c in at.caption)
    elif page == "leaderboard":
        assert len(at.dataframe[0].value) == 400 + 3
    elif page == "design":
        assert [h.value for h in at.header] == [facts["names"][-1]]
    assert seconds < 15, f"{page} page took {seconds:.1f} s with {len(facts['names'])} designs"
