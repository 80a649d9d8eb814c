"""Leaderboard: designs × scales × metrics, sortable, downloadable as CSV."""

from __future__ import annotations

import streamlit as st

from model_discovery.app import common, tables

st.title("Leaderboard")
url = common.tree_url(common.run_dir())
if url is None or not common.tree_stats(url)["designs"]:
    common.no_designs_yet()
    st.stop()

frame = common.leaderboard_frame(url)
if frame.empty:
    st.info("No verified designs yet: results appear here as the run verifies designs.",
            icon=":material/hourglass_empty:")
    st.stop()

metrics = [c for c in frame.columns if c not in tables.BASE_COLUMNS]
c1, c2 = st.columns([1, 3])
scales = list(dict.fromkeys(frame["scale"]))
scale = c1.selectbox("Rung", ["all rungs", *scales])
default = [m for m in tables.PREFERRED_METRICS if m in metrics][:4]
chosen = c2.multiselect("Metrics", metrics, default=default)
view = st.radio("View", ["one row per design and rung", "designs × rungs"], horizontal=True,
                label_visibility="collapsed")

shown = frame if scale == "all rungs" else frame[frame["scale"] == scale]
if view == "designs × rungs":
    table = tables.wide_frame(shown, ["fitness", *chosen])
else:
    table = shown[tables.BASE_COLUMNS + chosen]

st.caption(f"{len(shown)} results over {shown['design'].nunique()} designs · click a column header to sort")
st.dataframe(table, width="stretch", hide_index=True, height=min(700, 38 + 35 * len(table)))
st.download_button("Download CSV", table.to_csv(index=False).encode(), file_name="leaderboard.csv",
                   mime="text/csv", icon=":material/download:")

c3, c4 = st.columns([3, 1])
pick = c3.selectbox("Open a design", list(dict.fromkeys(shown["design"])), index=None,
                    placeholder="pick a design to view")
c4.write("")
if c4.button("Open in design viewer", disabled=pick is None, icon=":material/open_in_new:") and pick:
    common.open_design(pick)
