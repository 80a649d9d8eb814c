"""Run charts: fitness per design step and per generation, budget use per rung over time, LLM
tokens and cost per role."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from model_discovery.agents.usage import USAGE_FILE, UsageLedger, UsageRecord
from model_discovery.app import charts, common, tables
from model_discovery.gau.scales import LADDER

st.title("Run charts")
run_dir = common.run_dir()
url, tree, _ = common.designs_or_stop()
graph = common.graph_data(url)
order = [n["name"] for n in graph["nodes"]]
generation = {n["name"]: int(n["generation"]) for n in graph["nodes"]}
results = tree.results()
st.caption("Fitness counts only results on their rung's footing (see the leaderboard).", help=tables.FITNESS_HELP)

fitness_charts = [("step", "design step", charts.fitness_by_step(results, order), "fitness_steps"),
                  ("generation", "generation", charts.fitness_by_generation(results, generation), "fitness_generations")]
for col, (x, per, frame, key) in zip(st.columns(2), fitness_charts):
    if frame.empty:
        col.info("No fitness yet.")
        continue
    long = frame.melt(id_vars=["rung", x], value_vars=["best", "mean"], var_name="stat", value_name="fitness")
    fig = px.line(long, x=x, y="fitness", color="rung", line_dash="stat", markers=True,
                  title=f"best and mean fitness per {per}")
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"dtick": 1} if x == "generation" else {})
    col.plotly_chart(fig, width="stretch", key=key)

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
    if (run_dir / USAGE_FILE).is_file():
        try:
            records = UsageLedger.load_records(run_dir / USAGE_FILE)
        except ValueError as exc:
            st.warning(str(exc))
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
