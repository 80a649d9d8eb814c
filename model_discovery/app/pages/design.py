"""Design viewer: one design's proposal, reviews, units, check reports, training curves, lineage."""

from __future__ import annotations

import streamlit as st

from model_discovery.app import common, tables
from model_discovery.gau.library import seed_notes
from model_discovery.genome.display import genome_text, origin_line
from model_discovery.records import DesignError, UnitSpec

PICK = "design_pick"

st.title("Design viewer")
url, tree, names = common.designs_or_stop()


def _attempts(tree, name: str) -> None:  # noqa: ANN001 - the page's EvolutionTree
    """The coder's unit versions of this design: each rejected one with its check error, and the
    rationale of every version."""
    attempts = tree.attempts(name)
    if not attempts:
        return
    st.markdown(f"**Coder attempts** · {sum(bool(a.error) for a in attempts)} rejected of {len(attempts)}")
    for a in attempts:
        verdict = "rejected" if a.error else "kept"
        with st.expander(f"check attempt {a.attempt} · {a.unit} · {verdict}", expanded=False):
            if a.rationale:
                st.markdown(f"*Rationale:* {a.rationale}")
            if a.error:
                st.error(a.error)
            st.code(a.source, language="python", line_numbers=True)


def _show_origin(spec: UnitSpec) -> None:
    """Lineage line and genome of an invented unit (nothing for a catalogue or hand-written unit)."""
    if spec.origin is None:
        return
    st.markdown(f"*{origin_line(spec)}*")
    genome = genome_text(spec)
    if genome is not None:
        st.markdown("genome:")
        st.code(genome, language="json")


def _goto(name: str) -> None:
    st.session_state[common.DESIGN_KEY] = name
    st.session_state[PICK] = name


asked = st.query_params.get("design")
if asked and asked not in names and not st.session_state.get(common.DESIGN_KEY):
    st.error(f"No design named `{asked}` in this run ({len(names)} designs): pick one below.")
    st.stop()
target = st.session_state.get(common.DESIGN_KEY) or asked
if target not in names:
    target = None
if target is not None and st.session_state.get(PICK) != target:
    st.session_state[PICK] = target
if st.session_state.get(PICK) not in names:
    st.session_state[PICK] = names[-1]
name = st.selectbox("Design", names, key=PICK, help="type to search; newest designs are last",
                    on_change=lambda: st.session_state.update({common.DESIGN_KEY: st.session_state[PICK]}))
st.session_state[common.DESIGN_KEY] = name
st.query_params["design"] = name
st.page_link(common.PAGE_COMPARE, label="Compare with its parent and others", icon=":material/compare:")

record = tree.get_design(name)
design = record.design
st.header(name)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Status", record.status)
c2.metric("Operator", record.operator or ("seed" if record.is_seed else "—"))
c3.metric("Generation", record.generation)
c4.metric("Units", len(design.units))
if record.summary:
    st.markdown(record.summary)
st.caption(f"fingerprint `{record.fingerprint}` · added {record.created_at:%Y-%m-%d %H:%M:%S} UTC")

# -- lineage links ---------------------------------------------------------------------------
children = tree.children(name)
lc, rc = st.columns(2)
with lc:
    st.markdown("**Parents**" if record.parents else "**Parents:** none (a seed)")
    for p in record.parents:
        st.button(p, key=f"parent-{p}", icon=":material/arrow_upward:", on_click=_goto, args=(p,))
    if record.references:
        st.markdown("**References:** " + ", ".join(f"`{r}`" for r in record.references))
with rc:
    st.markdown(f"**Children** ({len(children)})" if children else "**Children:** none yet")
    for ch in children[:30]:
        st.button(ch, key=f"child-{ch}", icon=":material/arrow_downward:", on_click=_goto, args=(ch,))
    if len(children) > 30:
        st.caption(f"… and {len(children) - 30} more (pick them above)")

tab_prop, tab_rev, tab_units, tab_check, tab_train, tab_json = st.tabs(
    ["Proposal", "Reviews", "Units", "Checks", "Training", "Design JSON"])

with tab_prop:
    proposals = tree.proposals(name)
    if not proposals:
        st.info("No proposal: this design was added without one (a seed from the library)."
                if record.is_seed else "No proposal stored for this design.")
        if record.is_seed:
            try:
                notes = seed_notes(name)
            except DesignError:
                notes = ""
            if notes:
                st.markdown(notes)
    for prec in proposals:
        prop = prec.proposal
        st.subheader(prop.title)
        st.markdown(f"**Operator:** `{prop.operator}` · **parents:** {', '.join(prop.parents) or '—'}"
                    f" · **references:** {', '.join(prop.references) or '—'}")
        st.markdown(f"**Motivation.** {prop.motivation}")
        st.markdown(f"**Change.** {prop.change}")
        if prop.units:
            st.dataframe([{"unit": u.name, "role": u.role, "replaces": u.replaces or "",
                           "children": ", ".join(f"{k}: {v}" for k, v in u.children.items()),
                           "description": u.description} for u in prop.units],
                         hide_index=True, width="stretch")

with tab_rev:
    reviews = tree.reviews(name)
    if not reviews:
        st.info("No reviews stored for this design.")
    for i, rrec in enumerate(reviews, 1):
        rv = rrec.review
        verdict = "accepted" if rv.accept else "rejected"
        st.markdown(f"**Round {i}: {verdict}** · rating {rv.rating:.1f} / 5 · novelty {rv.novelty:.2f}")
        for reason in rv.reasons:
            st.markdown(f"- {reason}")
        if rv.suggestions:
            st.markdown("*Suggestions:* " + "; ".join(rv.suggestions))

with tab_units:
    st.markdown("**Unit tree**")
    st.code("\n".join(tables.unit_tree_lines(design)), language="text")
    for uname in design.walk():
        unit = design.units[uname]
        with st.expander(f"{uname} · {unit.role}", expanded=uname == design.root):
            _show_origin(unit)
            if unit.hparams:
                st.markdown("hparams: " + ", ".join(f"`{k}={v}`" for k, v in unit.hparams.items()))
            if unit.children:
                st.markdown("children: " + ", ".join(f"`{k}` → `{v}`" for k, v in unit.children.items()))
            st.code(unit.source, language="python", line_numbers=True)

with tab_check:
    checks = tree.checks(name)
    if not checks:
        st.info("No check report stored for this design.")
    for crec in checks:
        verdict = "passed" if crec.passed else "failed"
        seconds = crec.seconds or float(crec.report.get("total_seconds") or 0.0) or sum(
            float(c.get("seconds") or 0.0) for c in crec.report.get("checks") or [] if isinstance(c, dict))
        st.markdown(f"**Check {verdict}** · {seconds:.1f} s · {crec.created_at:%Y-%m-%d %H:%M:%S} UTC")
        st.dataframe(tables.check_table(crec.report), hide_index=True, width="stretch")
        with st.expander("Raw report"):
            st.json(crec.report, expanded=False)
    _attempts(tree, name)

with tab_train:
    results = tree.results(name)
    if not results:
        st.info("Not verified yet: no training run at any rung.")
    for res in results:
        fit = "—" if res.fitness is None else f"{res.fitness:.4f}"
        st.subheader(f"{res.scale} · {res.status} · fitness {fit}")
        common.show_result(res.record, f"curve-{res.scale}", f"{name} @ {res.scale}: training and validation loss")
        if res.record.get("error"):
            st.error(res.record["error"])
        with st.expander("Result record"):
            st.json(res.record, expanded=False)

with tab_json:
    st.code(design.to_json(), language="json")
