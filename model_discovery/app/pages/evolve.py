"""Evolve: start or stop a discovery run in the background and watch its progress live."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from model_discovery.app import common, jobs, tables
from model_discovery.gau.scales import LADDER

JOB = "discover"
REFRESH_S = 2.0

st.title("Evolve")
st.caption("Run discovery steps (design → check → verify) as a background `modis discover` process.")

run_dir = common.run_dir()
status = jobs.job_status(run_dir, JOB)


def _start(request: str, steps: int, scale: str, selector: str, agents: str, no_eval: bool,
           no_probes: bool, use_config: bool) -> None:
    args = [*jobs.modis_command(), "discover", request or "discover a new model", "--steps", str(steps),
            "--scale", scale, "--selector", selector, "--run-dir", str(run_dir)]
    if agents.strip():
        args += ["--agents", agents.strip()]
    if no_eval:
        args.append("--no-eval")
    if no_probes:
        args.append("--no-probes")
    if use_config:
        args += ["--config", str(run_dir / "config.yaml")]
    meta = {"steps": steps, "scale": scale, "outcomes_at_start": jobs.count_lines(run_dir / "outcomes.jsonl")}
    jobs.start_job(run_dir, JOB, args, meta=meta, cwd=Path.cwd())


if status.running:
    if st.button("Stop run", type="primary", icon=":material/stop_circle:"):
        with st.spinner("Stopping the run and every process it started…"):
            jobs.stop_job(run_dir, JOB)
        common.clear_query_caches()
        st.rerun()
else:
    with st.form("start_run"):
        st.subheader("Start a run")
        request = st.text_input("Request (passed to the proposer)", "discover a new model")
        c1, c2, c3 = st.columns(3)
        steps = c1.number_input("Design steps", min_value=1, max_value=10_000, value=4, step=1)
        scale = c2.selectbox("Rung", list(LADDER), index=0, help="rung designs are checked and verified at")
        selector = c3.selectbox("Selector", ["evolutionary", "random"])
        agents = st.text_input("Agent spec folder (empty: symbolic agents, no LLM)", "")
        c4, c5, c6 = st.columns(3)
        no_eval = c4.checkbox("Skip lm-eval", value=False)
        no_probes = c5.checkbox("Skip synthetic probes", value=False)
        has_config = (run_dir / "config.yaml").is_file()
        use_config = c6.checkbox("Use this run's config.yaml", value=False, disabled=not has_config)
        if st.form_submit_button("Start run", type="primary", icon=":material/play_arrow:"):
            try:
                _start(request, int(steps), scale, selector, agents, no_eval, no_probes, use_config)
            except (OSError, RuntimeError) as exc:
                st.error(f"Could not start the run: {exc}")
            else:
                st.rerun()


def _budget_rows(spent: dict[str, int]) -> list[tuple[str, int, int]]:
    """(rung, used, total) for the rungs of this run."""
    cfg = common.run_config(run_dir)
    ladder = cfg.get("ladder") or [status.meta.get("scale") or "micro"]
    overrides = cfg.get("budgets") or {}
    rows = []
    for scale in ladder:
        if scale in LADDER:
            total = int(overrides.get(scale, LADDER[scale].verify_budget))
            rows.append((scale, spent.get(scale, 0), total))
    for scale, used in spent.items():  # rungs verified by earlier runs
        if scale not in ladder and scale in LADDER:
            rows.append((scale, used, int(overrides.get(scale, LADDER[scale].verify_budget))))
    return rows


@st.fragment(run_every=REFRESH_S if status.running else None)
def live_progress() -> None:
    """Progress of the run: steps, outcomes, budgets per rung, log tail (refreshes while running)."""
    now = jobs.job_status(run_dir, JOB)
    if now.state != status.state:
        common.clear_query_caches()
        st.rerun(scope="app")
    st.subheader("Progress")
    labels = {"idle": "no run started from here yet", "running": "running", "finished": "finished",
              "failed": "failed", "stopped": "stopped"}
    line = f"**Status:** {labels[now.state]}"
    if now.pid:
        line += f" · pid {now.pid}"
    if now.elapsed_s is not None:
        line += f" · {now.elapsed_s:,.0f} s"
    if now.returncode not in (None, 0):
        line += f" · exit status {now.returncode}"
    st.markdown(line)

    outcome_lines = []
    path = run_dir / "outcomes.jsonl"
    if path.is_file():
        outcome_lines = path.read_text().splitlines()
    counts = tables.outcome_counts(outcome_lines)
    done_total = sum(counts.values())
    start = int(now.meta.get("outcomes_at_start", 0))
    planned = int(now.meta.get("steps", 0))
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Design steps (all runs)", done_total)
    c2.metric("Committed", counts.get("committed", 0))
    c3.metric("Failed checks", counts.get("failed", 0))
    c4.metric("Rejected", counts.get("rejected", 0))
    if planned:
        done = max(0, min(planned, done_total - start))
        st.progress(done / planned, text=f"This run: {done} / {planned} design steps")

    tree = common.open_tree(run_dir)
    if tree is not None:
        stats = tree.stats()
        spent = {s: stats.results_by_scale.get(s, 0) + stats.leases_by_scale.get(s, 0)
                 for s in set(stats.results_by_scale) | set(stats.leases_by_scale)}
        st.markdown(f"**Tree:** {stats.designs} designs "
                    f"({', '.join(f'{v} {k}' for k, v in sorted(stats.by_status.items())) or 'none'}), "
                    f"max generation {stats.max_generation}")
        st.markdown("**Verification budget per rung**")
        for scale, used, total in _budget_rows(spent):
            st.progress(min(1.0, used / total) if total else 1.0, text=f"{scale}: {used} / {total} used")
    else:
        st.caption("No tree in this run directory yet: it appears with the first design.")

    log = jobs.tail(run_dir / f"{JOB}.log", lines=40)
    st.markdown("**Log** (`discover.log`)")
    st.code(log or "(empty)", language="text")


live_progress()
