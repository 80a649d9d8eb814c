"""What every page shares: the run directory, cached access to its evolution tree, empty states.

A page calls :func:`run_dir` for the run directory picked in the sidebar and :func:`open_tree`
for its :class:`~model_discovery.evolution.tree.EvolutionTree` (None while the run has no tree
yet). The tree object is cached per URL for the life of the server (``st.cache_resource``);
query results are cached for a few seconds (``st.cache_data``) so that a rerun of a page does
not query the store again, while a running discovery still shows up within seconds.

Every cached query is ONE call of the tree's public API; pages never query per design in a
loop over the whole tree, so they stay responsive with thousands of designs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st
import yaml

from model_discovery.app import tables
from model_discovery.evolution import EvolutionTree

#: seconds a cached query result stays fresh
QUERY_TTL_S = 5
#: seconds between refreshes of the sidebar's run summary
SUMMARY_REFRESH_S = 10
DEFAULT_RUN_DIR = "runs/default"
RUN_DIR_KEY = "modis_run_dir"
DESIGN_KEY = "modis_design"

#: page scripts, relative to ``main.py`` (used by ``st.switch_page``)
PAGE_DESIGN = "pages/design.py"
PAGE_EVOLVE = "pages/evolve.py"
PAGE_COMPARE = "pages/compare.py"


# -- run directory ------------------------------------------------------------------------------
def default_run_dir() -> str:
    """``$MODIS_RUN_DIR`` (set by ``modis gui``) or ``runs/default``."""
    return os.environ.get("MODIS_RUN_DIR") or DEFAULT_RUN_DIR


def run_dir() -> Path:
    """The run directory picked in the sidebar (absolute)."""
    return Path(st.session_state.get(RUN_DIR_KEY) or default_run_dir()).expanduser().resolve()


def sidebar() -> Path:
    """The sidebar: run-directory picker, a refresh button and a one-line summary of the run."""
    if RUN_DIR_KEY not in st.session_state:
        st.session_state[RUN_DIR_KEY] = default_run_dir()
    with st.sidebar:
        st.text_input("Run directory", key=RUN_DIR_KEY,
                      help="Folder of a discovery run (tree.sqlite, config.yaml, logs). "
                           "Default: $MODIS_RUN_DIR or runs/default.")
        path = run_dir()
        if st.button("Refresh data", icon=":material/refresh:", width="stretch"):
            clear_query_caches()
        run_summary(path)
    return path


@st.fragment(run_every=SUMMARY_REFRESH_S)
def run_summary(path: Path) -> None:
    """One line on the run (refreshed on its own, so it stays current while a run goes on)."""
    url = tree_url(path)
    stats = tree_stats(url) if url else None
    if stats is None:
        st.caption(f"`{path}`: no tree yet")
    else:
        live = sum(stats["leases_by_scale"].values())
        st.caption(f"`{path}`: {stats['designs']} designs, {sum(stats['results_by_scale'].values())} "
                   f"verifications" + (f", {live} in progress" if live else ""))


# -- tree access --------------------------------------------------------------------------------
def run_config(path: Path) -> dict[str, Any]:
    """The run's ``config.yaml`` as a mapping (empty when absent or unreadable)."""
    cfg = path / "config.yaml"
    try:
        data = yaml.safe_load(cfg.read_text()) if cfg.is_file() else None
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def tree_url(path: Path) -> str | None:
    """SQLAlchemy URL of the run's tree, or None when the run has no tree yet.

    A ``tree_url`` in the run's ``config.yaml`` wins (e.g. a PostgreSQL tree shared by many
    machines); otherwise the SQLite file ``tree.sqlite`` in the run directory, only if it exists,
    so that looking at an empty run directory never creates anything in it.
    """
    url = run_config(path).get("tree_url")
    if isinstance(url, str) and url:
        return url
    db = path / "tree.sqlite"
    return f"sqlite:///{db}" if db.is_file() else None


@st.cache_resource(show_spinner=False)
def _tree_for(url: str) -> EvolutionTree:
    return EvolutionTree(url)


def open_tree(path: Path | None = None) -> EvolutionTree | None:
    """The (cached) tree of the run directory, or None when the run has none yet."""
    url = tree_url(path or run_dir())
    return _tree_for(url) if url else None


def clear_query_caches() -> None:
    """Forget cached query results (the tree connections stay)."""
    st.cache_data.clear()


# -- cached queries (one store query each; keyed by URL) ----------------------------------------
@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def tree_stats(url: str) -> dict[str, Any]:
    """``tree.stats()`` as a plain dict."""
    return _tree_for(url).stats().model_dump()


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def graph_data(url: str) -> dict[str, Any]:
    """``tree.graph()`` as plain nodes and edges."""
    return _tree_for(url).graph().model_dump(mode="json")


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def design_names(url: str) -> list[str]:
    """Every design name in insertion order (from the graph query)."""
    return [n["name"] for n in graph_data(url)["nodes"]]


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def leaderboard_frame(url: str) -> pd.DataFrame:
    """One row per (design, scale) result: rank, fitness, status and every numeric metric."""
    tree = _tree_for(url)
    return tables.leaderboard_frame(tree.leaderboard(), tree.results())


def no_designs_yet() -> None:
    """The friendly empty state shown by pages that need designs."""
    st.info("No designs yet — start a run on the evolve page.", icon=":material/info:")
    st.page_link(PAGE_EVOLVE, label="Go to evolve", icon=":material/play_arrow:")


def designs_or_stop() -> tuple[str, EvolutionTree, list[str]]:
    """(tree URL, tree, design names) of the run; shows the empty state and stops the page when
    the run has no designs yet."""
    url = tree_url(run_dir())
    names = design_names(url) if url else []
    tree = open_tree()
    if not names or url is None or tree is None:
        no_designs_yet()
        st.stop()
    return url, tree, names  # type: ignore[return-value]


def show_result(record: dict[str, Any], key: str, title: str | None = None, height: int = 360) -> None:
    """A result record's headline metrics in a row, then its training and validation loss curves."""
    metrics = tables.flatten_metrics(record)
    shown = {k: metrics[k] for k in tables.PREFERRED_METRICS if k in metrics}
    for col, (k, v) in zip(st.columns(len(shown)) if shown else [], shown.items()):
        col.metric(k, tables.human(v, k))
    curves = tables.curves_frame(record)
    if curves.empty:
        st.caption("This result has no loss curves.")
        return
    fig = px.line(curves, x="step", y="loss", color="curve", markers=True, hover_data=["tokens"], title=title)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40 if title else 20, "b": 10})
    st.plotly_chart(fig, width="stretch", key=key)


def open_design(name: str) -> None:
    """Show ``name`` in the design viewer (switches page)."""
    st.session_state[DESIGN_KEY] = name
    st.switch_page(PAGE_DESIGN)
