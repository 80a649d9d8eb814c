"""Evolve: continue (or start) a discovery run in the background, watch it, stop it."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from model_discovery.app import common, jobs, progress, runform, tables
from model_discovery.config import ConfigError
from model_discovery.gau.scales import LADDER

JOB = "discover"
REFRESH_S = 2.0

st.title("Evolve")
st.caption("Run discovery steps (propose → review → implement → check → verify) as a background "
           "`modis discover` process.")

run_dir = common.run_dir()
status = jobs.job_status(run_dir, JOB)


def _stop() -> None:
    with st.spinner("Stopping the run and every process it started…"):
        jobs.stop_job(run_dir, JOB)
        tree = common.open_tree(run_dir)
        freed = jobs.release_leases(tree, jobs.stopped_owner_pids(run_dir, JOB)) if tree is not None else []
    common.clear_query_caches()
    st.session_state["modis_stopped"] = freed


def start_form() -> None:
    """The form, filled from the run's config.yaml; the differences are listed before starting."""
    try:
        base, existing = runform.run_base(run_dir)
    except ConfigError as exc:
        st.error(f"The run's config does not load: {exc}")
        return
    st.subheader("Continue this run" if existing else "Start a new run")
    st.caption("Filled from the run's `config.yaml`: the run continues with its own settings."
               if existing else "No `config.yaml` here yet: a new run with the default settings.")
    d = runform.form_defaults(base)
    request = st.text_input("Request (passed to the proposer)", "discover a new model")
    c1, c2, c3 = st.columns(3)
    steps = c1.number_input("Design steps to take now", min_value=1, max_value=10_000, value=max(1, d.steps), step=1)
    ladder = c2.multiselect("Rungs", list(LADDER), default=[s for s in d.ladder if s in LADDER],
                            help="rungs designs are verified at")
    selector = c3.selectbox("Selector", ["evolutionary", "random"], index=["evolutionary", "random"].index(d.selector))
    c4, c5, c6 = st.columns(3)
    agents = c4.text_input("Agent spec folder (empty: symbolic agents, no LLM)", d.agent_spec_dir)
    workers = c5.number_input("Verification workers", min_value=1, max_value=64, value=d.workers, step=1)
    tokens = c6.number_input("Training tokens (0: the rung's)", min_value=0, value=d.train_tokens or 0, step=10_000)
    c7, c8 = st.columns(2)
    run_eval = c7.checkbox("Run lm-eval after training", value=d.eval)
    run_probes = c8.checkbox("Run synthetic probes", value=d.probes)
    try:
        chosen = runform.apply(base, runform.RunForm(
            steps=int(steps), ladder=ladder or d.ladder, selector=selector, agent_spec_dir=agents, eval=run_eval,
            probes=run_probes, workers=int(workers), train_tokens=int(tokens) or None))
    except (ConfigError, ValueError) as exc:
        st.error(str(exc))
        return
    diffs = runform.differences(base, chosen) if existing else []
    confirmed = True
    if diffs:
        st.warning(f"{len(diffs)} setting(s) differ from this run's config.yaml: results verified under other "
                   "settings (tokens, lm-eval, probes) are ranked apart from the run's.", icon=":material/warning:")
        st.dataframe(pd.DataFrame([(k, str(a), str(b)) for k, a, b in diffs],
                                  columns=["setting", "this run", "start with"]), hide_index=True, width="stretch")
        confirmed = st.checkbox("Start with these differences", value=False)
    elif existing:
        st.success("Same settings as the run: it continues as it was.", icon=":material/check_circle:")
    if st.button("Start run", type="primary", icon=":material/play_arrow:", disabled=not confirmed):
        try:
            cfg_path, args = runform.start_args(chosen, request)
            meta = {"steps": int(steps), "ladder": chosen.ladder, "config": str(cfg_path),
                    "outcomes_at_start": jobs.count_lines(run_dir / "outcomes.jsonl")}
            jobs.start_job(run_dir, JOB, [*jobs.modis_command(), *args], meta=meta, cwd=Path.cwd())
        except (OSError, RuntimeError) as exc:
            st.error(f"Could not start the run: {exc}")
        else:
            st.rerun()


if status.running:
    st.button("Stop run", type="primary", icon=":material/stop_circle:", on_click=_stop,
              help="Ends the run and every process it started (sandboxed checks and trainings), "
                   "releases its verification leases and removes its temporary folders.")
else:
    if "modis_stopped" in st.session_state:
        freed = st.session_state.pop("modis_stopped")
        st.info("Run stopped: no process of it is left" + (f"; leases released: {', '.join(freed)}." if freed else "."),
                icon=":material/stop_circle:")
    start_form()


def _budget_rows(spent: dict[str, int]) -> list[tuple[str, int, int]]:
    """(rung, used, total) for the rungs of this run."""
    cfg = common.run_config(run_dir)
    ladder = cfg.get("ladder") or status.meta.get("ladder") or ["micro"]
    overrides = cfg.get("budgets") or {}
    return [(scale, spent.get(scale, 0), int(overrides.get(scale, LADDER[scale].verify_budget)))
            for scale in [*ladder, *(s for s in spent if s not in ladder)]  # then rungs verified by earlier runs
            if scale in LADDER]


def _now_doing(now: jobs.JobStatus, done: int, planned: int) -> None:
    """Phase of the design step, the trainings in progress with step, loss and ETA, the run's ETA."""
    thread, phase = progress.design_phase(run_dir)
    eta = progress.run_eta_s(now.started_at, done, planned)
    if now.running:
        st.markdown(f"**Design step:** {thread or '—'} · **phase:** {phase or ('verify' if thread is None else '—')}"
                    f" · **ETA of the design steps:** {progress.fmt_duration(eta)}")
    tree = common.open_tree(run_dir)
    runs = progress.trainings(run_dir, tree) if tree is not None else []
    if not runs:
        if now.running:
            st.caption("No training in progress.")
        return
    rows = []
    for t in runs:
        p = t.progress
        rows.append({"design": t.design, "rung": t.scale,
                     "step": f"{p.step} / {p.end_step}" if p else "starting",
                     "loss": round(p.loss, 4) if p and p.loss is not None else None,
                     "ETA": progress.fmt_duration(p.eta_s) if p else "—",
                     "updated": f"{time.time() - p.updated_at:,.0f} s ago" if p and p.updated_at else "—"})
        if p:
            st.progress(min(1.0, p.step / max(1, p.end_step)),
                        text=f"verify {t.design}@{t.scale}: step {p.step} / {p.end_step}, loss "
                             f"{p.loss if p.loss is None else f'{p.loss:.4f}'}, ETA {progress.fmt_duration(p.eta_s)}")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


@st.fragment(run_every=REFRESH_S if status.running else None)
def live_progress() -> None:
    """Progress of the run: phase, trainings, steps, outcomes, budgets per rung, log tail."""
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
        line += f" · {progress.fmt_duration(now.elapsed_s)}"
    if now.returncode not in (None, 0):
        line += f" · exit status {now.returncode}"
    st.markdown(line)

    path = run_dir / "outcomes.jsonl"
    counts = tables.outcome_counts(path.read_text().splitlines() if path.is_file() else [])
    done_total = sum(counts.values())
    start = int(now.meta.get("outcomes_at_start", 0))
    planned = int(now.meta.get("steps", 0))
    done = max(0, min(planned, done_total - start))
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Design steps (all runs)", done_total)
    c2.metric("Committed", counts.get("committed", 0))
    c3.metric("Failed checks", counts.get("failed", 0))
    c4.metric("Rejected", counts.get("rejected", 0))
    if planned:
        st.progress(done / planned, text=f"This run: {done} / {planned} design steps")
    _now_doing(now, done, planned)

    tree = common.open_tree(run_dir)
    if tree is not None:
        stats = tree.stats()
        spent = {s: stats.results_by_scale.get(s, 0) + stats.leases_by_scale.get(s, 0)
                 for s in set(stats.results_by_scale) | set(stats.leases_by_scale)}
        st.markdown(f"**Tree:** {stats.designs} designs "
                    f"({', '.join(f'{v} {k}' for k, v in sorted(stats.by_status.items())) or 'none'}), "
                    f"max generation {stats.max_generation}")
        st.markdown("**Verification budget per rung** (results + verifications in progress)")
        for scale, used, total in _budget_rows(spent):
            st.progress(min(1.0, used / total) if total else 1.0, text=f"{scale}: {used} / {total} used "
                        f"({stats.leases_by_scale.get(scale, 0)} in progress)")
    else:
        st.caption("No tree in this run directory yet: it appears with the first design.")

    log = jobs.tail(run_dir / f"{JOB}.log", lines=40)
    st.markdown("**Log** (`discover.log`)")
    st.code(log or "(empty)", language="text")


live_progress()
