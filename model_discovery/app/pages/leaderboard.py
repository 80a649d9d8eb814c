"""Leaderboard: designs × scales × metrics, sortable, downloadable as CSV; a row opens its design."""

from __future__ import annotations

import pandas as pd
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
chosen = c2.multiselect("Metrics", metrics, default=tables.default_metrics(metrics))
view = st.radio("View", ["one row per design and rung", "designs × rungs"], horizontal=True,
                label_visibility="collapsed")

shown = frame if scale == "all rungs" else frame[frame["scale"] == scale]
for rung in dict.fromkeys(shown["scale"]):
    rows = shown[shown["scale"] == rung]
    ranked = rows[rows["fitness"].notna()]["footing"].dropna().unique()
    apart = rows[rows["fitness"].isna() & (rows["status"] == "ok")]
    if len(ranked):
        line = f"**{rung}** ranked on one footing: {ranked[0]}"
        if len(apart):
            others = ", ".join(f"{f} ({n})" for f, n in apart["footing"].value_counts().items())
            line += f" · kept apart, not ranked (verified under other settings): {others}"
        st.markdown(line, help=tables.FITNESS_HELP)

if view == "designs × rungs":
    table = tables.wide_frame(shown, ["fitness", *chosen])
else:
    table = shown[tables.BASE_COLUMNS + chosen]

st.caption(f"{len(shown)} results over {shown['design'].nunique()} designs · click a column header to sort · "
           "click a row to open its design")
event = st.dataframe(
    table, width="stretch", hide_index=True, height=min(700, 38 + 35 * len(table)), key="leaderboard_table",
    on_select="rerun", selection_mode="single-row",
    column_config={"fitness": st.column_config.NumberColumn("fitness", help=tables.FITNESS_HELP, format="%+.4f"),
                   "footing": st.column_config.TextColumn("footing", help="training tokens, lm-eval and probes "
                                                          "the result was verified with"),
                   tables.BPB_METRIC: st.column_config.NumberColumn("bits per byte", format="%.4f",
                                                                    help="held-out bits per byte (lower is better)")})
st.download_button("Download CSV", table.to_csv(index=False).encode(), file_name="leaderboard.csv",
                   mime="text/csv", icon=":material/download:")
picked = list(getattr(getattr(event, "selection", None), "rows", []) or [])
if picked:
    row = table.iloc[picked[0]]
    if isinstance(row, pd.Series) and "design" in row:
        common.open_design(str(row["design"]))

c3, c4 = st.columns([3, 1])
pick = c3.selectbox("Open a design", list(dict.fromkeys(shown["design"])), index=None,
                    placeholder="pick a design to view")
c4.write("")
if c4.button("Open in design viewer", disabled=pick is None, icon=":material/open_in_new:") and pick:
    common.open_design(pick)
