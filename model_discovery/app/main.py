"""Entry point of the front-end: ``streamlit run model_discovery/app/main.py`` (or ``modis gui``).

Builds the sidebar (run-directory picker) and the page navigation; every page is a script in
``pages/`` that reads the run directory through :mod:`model_discovery.app.common`.
"""

from __future__ import annotations

import streamlit as st

from model_discovery.app.common import sidebar

st.set_page_config(page_title="model_discovery", page_icon=":material/account_tree:", layout="wide")

PAGES = [
    st.Page("pages/evolve.py", title="Evolve", icon=":material/play_circle:", url_path="evolve", default=True),
    st.Page("pages/tree.py", title="Tree", icon=":material/account_tree:", url_path="tree"),
    st.Page("pages/leaderboard.py", title="Leaderboard", icon=":material/leaderboard:", url_path="leaderboard"),
    st.Page("pages/design.py", title="Design viewer", icon=":material/schema:", url_path="design"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:", url_path="compare"),
    st.Page("pages/charts.py", title="Run charts", icon=":material/monitoring:", url_path="charts"),
    st.Page("pages/verify.py", title="Verify", icon=":material/fact_check:", url_path="verify"),
    st.Page("pages/knowledge.py", title="Knowledge", icon=":material/menu_book:", url_path="knowledge"),
    st.Page("pages/config.py", title="Config", icon=":material/settings:", url_path="config"),
]

page = st.navigation(PAGES)
with st.sidebar:
    st.markdown("### model_discovery")
sidebar()
page.run()
