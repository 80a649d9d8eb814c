"""Tree: the lineage graph, one row per generation, nodes coloured by fitness.

The whole graph comes from ONE store query (``tree.graph()``); selecting a node opens the design
in the design viewer.
"""

from __future__ import annotations

import time

import streamlit as st

from model_discovery.app import common
from model_discovery.app.layout import tree_figure

st.title("Evolution tree")
url = common.tree_url(common.run_dir())
graph = common.graph_data(url) if url else {"nodes": [], "edges": []}
if not graph["nodes"]:
    common.no_designs_yet()
    st.stop()

t0 = time.perf_counter()
nodes, edges = graph["nodes"], graph["edges"]
statuses = sorted({n["status"] for n in nodes})
c1, c2, c3 = st.columns([3, 1, 1])
keep = c1.multiselect("Statuses", statuses, default=statuses)
show_refs = c2.toggle("Reference edges", value=False)
c3.metric("Designs shown", sum(n["status"] in keep for n in nodes))
if set(keep) != set(statuses):
    shown = {n["name"] for n in nodes if n["status"] in keep}
    nodes = [n for n in nodes if n["name"] in shown]
    edges = [e for e in edges if e["child"] in shown and e["parent"] in shown]

verified = sum(n["fitness"] is not None for n in nodes)
n_parent_edges = sum(e["kind"] == "parent" for e in edges)
st.caption(f"{len(nodes)} designs · {n_parent_edges} parent edges · {verified} with fitness · "
           f"{max((n['generation'] for n in nodes), default=0) + 1} generations. "
           "Hover a node for its name, operator and fitness; click it to open it in the design viewer. "
           "Colours span the 5–95 % range of fitness (an outlier does not wash the others out); grey: no "
           "fitness yet, or verified under other settings than its rung's (see the leaderboard's footing).")

fig = tree_figure(nodes, edges, show_references=show_refs,
                  highlight=st.session_state.get(common.DESIGN_KEY))
event = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode="points",
                        key="tree_chart", config={"scrollZoom": True, "displaylogo": False})
try:
    points = list(event["selection"]["points"])
except (KeyError, TypeError):
    points = []
picked = [p.get("customdata", [None])[0] for p in points if p.get("customdata")]
if picked and picked[0] != st.session_state.get("tree_last_pick"):
    st.session_state["tree_last_pick"] = picked[0]
    common.open_design(picked[0])

names = [n["name"] for n in nodes]
c4, c5 = st.columns([3, 1])
choice = c4.selectbox("Open a design", names, index=None, placeholder="type to search a design name")
c5.write("")
if c5.button("Open in design viewer", disabled=choice is None, icon=":material/open_in_new:") and choice:
    common.open_design(choice)
st.caption(f"laid out and drawn in {time.perf_counter() - t0:.2f} s")
