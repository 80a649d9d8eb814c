"""Compare: a child against its parent unit by unit, loss curves of chosen designs and the
baseline on one chart, and their metrics side by side."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from model_discovery.app import charts, common, tables

BASELINE = "gpt2"

st.title("Compare designs")
url, tree, names = common.designs_or_stop()

current = st.session_state.get(common.DESIGN_KEY)
child_default = current if current in names else names[-1]

# -- parent vs child -----------------------------------------------------------------------------
st.subheader("Parent → child: what changed")
c1, c2 = st.columns(2)
child_name = c1.selectbox("Child", names, index=names.index(child_default), key="compare_child")
child = tree.get_design(child_name)
parent_options = child.parents or [n for n in names if n != child_name]
parent_name = c2.selectbox("Parent (or any design)", parent_options + [n for n in names if n not in parent_options],
                           index=0, key="compare_parent")
parent = tree.get_design(parent_name)
diff = charts.unit_diff(parent.design, child.design)
changed = diff[diff["change"] != "unchanged"]
st.caption(f"{len(changed)} of {len(diff)} units changed from `{parent_name}` to `{child_name}` "
           f"(operator: {child.operator or '—'}).")


def _highlight(row: pd.Series) -> list[str]:
    colour = {"added": "#dcfce7", "removed": "#fee2e2"}.get(row["change"], "" if row["change"] == "unchanged"
                                                               else "#fef9c3")
    return [f"background-color: {colour}" if colour else ""] * len(row)


st.dataframe(diff.style.apply(_highlight, axis=1), hide_index=True, width="stretch", key="unit_diff",
             height=38 + 35 * len(diff))
for unit in changed["unit"]:
    with st.expander(f"{unit}: {diff.set_index('unit').loc[unit, 'change']}", expanded=len(changed) <= 2):
        st.code(charts.source_diff(parent.design, child.design, unit) or "(no source change)", language="diff")

# -- curves and metrics ------------------------------------------------------------------------
st.subheader("Loss curves and metrics")
frame = common.leaderboard_frame(url)
verified = list(dict.fromkeys(frame["design"])) if not frame.empty else []
if not verified:
    st.info("No verified designs yet: curves and metrics appear once designs are verified.")
    st.stop()
rungs = list(dict.fromkeys(frame["scale"]))
c3, c4 = st.columns([3, 1])
default = [n for n in dict.fromkeys([child_name, parent_name]) if n in verified] or verified[:2]
chosen = c3.multiselect("Designs", verified, default=default, key="compare_designs")
rung = c4.selectbox("Rung", rungs, key="compare_rung")
shown = list(dict.fromkeys([*chosen, *([BASELINE] if BASELINE in verified else [])]))

curves = []
for name in shown:
    for res in tree.results(name, rung):
        c = tables.curves_frame(res.record)
        c = c[c["curve"] == "val"]
        curves.append(c.assign(design=name + (" (baseline)" if name == BASELINE else "")))
data = pd.concat(curves) if curves else pd.DataFrame()
if data.empty:
    st.caption(f"No validation curves at {rung} for these designs.")
else:
    fig = px.line(data, x="tokens", y="loss", color="design", markers=True,
                  title=f"validation loss at {rung} (the baseline {BASELINE} included)")
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    st.plotly_chart(fig, width="stretch", key="compare_curves")

rows = frame[(frame["scale"] == rung) & frame["design"].isin(shown)]
cols = ["fitness", "fitness_se", "seeds", "footing", *tables.default_metrics(frame.columns),
        *[m for m in ("tokens_per_s", "train.n_params", "train.tokens") if m in frame.columns]]
side = rows.set_index("design")[list(dict.fromkeys(cols))].T
st.dataframe(side.astype(str), width="stretch", key="compare_metrics", height=38 + 35 * len(side))
