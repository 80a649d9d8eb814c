"""Run charts: fitness per design step and per generation, budget use per rung over time, LLM
tokens and cost per role."""

from __future__ import annotations

from pathlib import Path

import plotly.express as px
import streamlit as st

from model_discovery.agents.usage import USAGE_FILE, UsageLedger, UsageRecord
from model_discovery.app import charts, common, tables
from model_discovery.gau.scales import LADDER

st.title("Run charts")
run_dir = common.run_dir()
url = common.tree_url(run_dir)
if url is None or not common.tree_stats(url)["designs"]:
    common.no_designs_yet()
    st.stop()
tree = common.open_tree(run_dir)
assert tree is not None
graph = common.graph_data(url)
order = [n["name"] for n in graph["nodes"]]
generation = {n["name"]: int(n["generation"]) for n in graph["nodes"]}
results = tree.results()
st.caption("Fitness counts only results on their rung's footing (see the leaderboard).", help=tables.FITNESS_HELP)

c1, c2 = st.columns(2)
with c1:
    steps = charts.fitness_by_step(results, order)
    if steps.empty:
        st.info("No fitness yet.")
    else:
        long = steps.melt(id_vars=["rung", "step"], value_vars=["best", "mean"], var_name="stat", value_name="fitness")
        fig = px.line(long, x="step", y="fitness", color="rung", line_dash="stat", markers=True,
                      title="best and mean fitness per design step")
        fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10})
        st.plotly_chart(fig, width="stretch", key="fitness_steps")
with c2:
    gens = charts.fitness_by_generation(results, generation)
    if gens.empty:
        st.info("No fitness yet.")
    else:
        long = gens.melt(id_vars=["rung", "generation"], value_vars=["best", "mean"], var_name="stat",
                         value_name="fitness")
        fig = px.line(long, x="generation", y="fitness", color="rung", line_dash="stat", markers=True,
                      title="best and mean fitness per generation")
        fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10}, xaxis={"dtick": 1})
        st.plotly_chart(fig, width="stretch", key="fitness_generations")

cfg = common.run_config(run_dir)
budgets = {s: int((cfg.get("budgets") or {}).get(s, LADDER[s].verify_budget)) for s in LADDER}
spent = charts.budget_over_time(results, budgets)
c3, c4 = st.columns(2)
with c3:
    if spent.empty:
        st.info("No verification yet.")
    else:
        fig = px.line(spent, x="time", y="used", color="rung", markers=True, line_shape="hv",
                      title="verification budget used per rung (training runs)", hover_data=["budget"])
        fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10})
        st.plotly_chart(fig, width="stretch", key="budget_time")
with c4:
    records: list[UsageRecord] = []
    problems = []
    if (Path(run_dir) / USAGE_FILE).is_file():
        try:
            records = UsageLedger.load_records(Path(run_dir) / USAGE_FILE)
        except ValueError as exc:
            problems.append(str(exc))
    for problem in problems:
        st.warning(problem)
    usage = charts.usage_by_role(records)
    if usage.empty:
        st.info("No LLM calls recorded in this run (symbolic agents use none).", icon=":material/smart_toy:")
    else:
        long = usage.melt(id_vars=["role"], value_vars=["prompt_tokens", "completion_tokens"], var_name="tokens",
                          value_name="count")
        fig = px.bar(long, x="role", y="count", color="tokens", barmode="stack",
                     title=f"LLM tokens per role · total cost ${usage['usd'].sum():,.4f}")
        fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10})
        st.plotly_chart(fig, width="stretch", key="usage_roles")
        st.dataframe(usage, hide_index=True, width="stretch",
                     column_config={"usd": st.column_config.NumberColumn("cost (USD)", format="$%.4f")})
