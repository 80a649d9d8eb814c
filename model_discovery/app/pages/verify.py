"""Verify: train and evaluate one design at one rung as a background ``modis verify`` process."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from model_discovery.app import common, jobs, progress
from model_discovery.gau.library import list_seeds, load_seed
from model_discovery.gau.scales import LADDER

JOB = "verify"
JOBS_DIR = "gui_verify"
RESULT_NAME = "verify_result.json"
REFRESH_S = 3.0

st.title("Verify")
st.caption("Train and evaluate a design at a rung of the ladder (`modis verify … --out`). "
           "The result record is written to the job's folder; discovery runs record theirs in the tree.")

run_dir = common.run_dir()
url = common.tree_url(run_dir)
tree_names = common.design_names(url) if url else []
seeds = [s for s in list_seeds() if s not in set(tree_names)]
options = tree_names + seeds


def _job_dirs() -> list[Path]:
    root = run_dir / JOBS_DIR
    if not root.is_dir():
        return []
    found = [d for d in root.iterdir() if (d / f"{JOB}.json").is_file()]
    return sorted(found, key=lambda d: (d / f"{JOB}.json").stat().st_mtime, reverse=True)


def _start(name: str, scale: str) -> Path:
    job_dir = run_dir / JOBS_DIR / f"{name}@{scale}"
    job_dir.mkdir(parents=True, exist_ok=True)
    design = common.open_tree(run_dir).get_design(name).design if name in tree_names else load_seed(name)
    design_path = design.save(job_dir / "design.json")
    out = job_dir / "out"
    (out / RESULT_NAME).unlink(missing_ok=True)
    args = [*jobs.modis_command(), "verify", str(design_path), "--scale", scale, "--out", str(out)]
    jobs.start_job(job_dir, JOB, args, meta={"design": name, "scale": scale}, cwd=Path.cwd())
    return job_dir


with st.form("start_verify"):
    st.subheader("Start a verification")
    c1, c2 = st.columns([3, 1])
    default = st.session_state.get(common.DESIGN_KEY)
    name = c1.selectbox("Design", options, index=options.index(default) if default in options else 0,
                        help="designs of this run's tree, then library seeds not in it")
    scale = c2.selectbox("Rung", list(LADDER), index=0)
    if st.form_submit_button("Start verification", type="primary", icon=":material/play_arrow:"):
        try:
            _start(name, scale)
        except (OSError, RuntimeError, ValueError) as exc:
            st.error(f"Could not start the verification: {exc}")
        else:
            st.rerun()

job_dirs = _job_dirs()
any_running = any(jobs.job_status(d, JOB).running for d in job_dirs)


def _show_result(out: Path) -> None:
    path = out / RESULT_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        st.warning(f"No readable result record at `{path}`.")
        return
    status = record.get("status", "?")
    (st.success if status == "ok" else st.error)(
        f"Result: {status}" + (f" — {record.get('error')}" if record.get("error") else ""))
    common.show_result(record, f"verify-curve-{out}", height=300)
    with st.expander("Result record"):
        st.json(record, expanded=False)


@st.fragment(run_every=REFRESH_S if any_running else None)
def job_list() -> None:
    """Every verification started from here, newest first (refreshes while one runs)."""
    if any_running and not any(jobs.job_status(d, JOB).running for d in job_dirs):
        st.rerun(scope="app")  # a job just ended: redraw the whole page once
    st.subheader("Verifications")
    if not job_dirs:
        st.info("No verification started from the GUI in this run directory yet.")
        return
    for job_dir in job_dirs:
        status = jobs.job_status(job_dir, JOB)
        title = f"{job_dir.name} — {status.state}"
        if status.elapsed_s is not None:
            title += f" ({status.elapsed_s:,.0f} s)"
        with st.expander(title, expanded=status.running or job_dir == job_dirs[0]):
            st.caption(f"`{' '.join(status.command)}`")
            if status.running:
                if st.button("Stop", key=f"stop-{job_dir.name}", icon=":material/stop_circle:",
                             help="ends the verification and every process it started"):
                    jobs.stop_job(job_dir, JOB)
                    st.rerun(scope="app")
                now = progress.read_progress(job_dir / "out")
                if now is None:
                    st.caption("Preparing: corpus, tokenizer and sandbox start before the first training step.")
                else:
                    loss = "—" if now.loss is None else f"{now.loss:.4f}"
                    st.progress(min(1.0, now.step / max(1, now.end_step)),
                                text=f"training: step {now.step} / {now.end_step}, loss {loss}, "
                                     f"ETA {progress.fmt_duration(now.eta_s)}")
            elif status.state in ("finished", "failed"):
                _show_result(job_dir / "out")
            st.code(jobs.tail(job_dir / f"{JOB}.log", lines=25) or "(empty log)", language="text")


job_list()
