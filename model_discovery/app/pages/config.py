"""Config: agent specs, the ladder of scales with budgets, the run's config.yaml, spec validation."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import yaml

from model_discovery.agents.spec import AgentSpecError, default_spec_dir, load_agent_specs, resolve_provider
from model_discovery.app import common, tables
from model_discovery.app.specs import validate_spec_text
from model_discovery.config import ConfigError, SystemConfig

st.title("Config")
run_dir = common.run_dir()
run_cfg = common.run_config(run_dir)

spec_dirs: dict[str, Path] = {}
base = default_spec_dir()
if run_cfg.get("agent_spec_dir"):
    spec_dirs[f"this run ({run_dir.name}): {run_cfg['agent_spec_dir']}"] = Path(run_cfg["agent_spec_dir"])
elif (base / "symbolic").is_dir():  # a run without agent specs uses the symbolic agents
    spec_dirs[f"this run ({run_dir.name}): symbolic (no LLM): {base / 'symbolic'}"] = base / "symbolic"
spec_dirs[f"default: {base}"] = base
if (base / "symbolic").is_dir():
    spec_dirs.setdefault(f"symbolic (no LLM): {base / 'symbolic'}", base / "symbolic")
st.caption(f"Run directory: `{run_dir}`" + ("" if run_cfg else " (no config.yaml yet: the defaults apply)"))

tab_specs, tab_ladder, tab_run, tab_validate = st.tabs(
    ["Agent specs", "Ladder of scales", "Run config", "Validate a spec"])

with tab_specs:
    label = st.selectbox("Spec folder", list(spec_dirs), key="spec_dir")
    try:
        specs = load_agent_specs(spec_dirs[label])
    except AgentSpecError as exc:
        st.error(str(exc))
        specs = {}
    if specs:
        rows = []
        for role, spec in specs.items():
            used = resolve_provider(spec)
            rows.append({"role": role, "provider": spec.provider, "model": spec.model or "—",
                         "used now": used.provider + (" (no API key: fallback)" if used.fallback_from else ""),
                         "temperature": spec.temperature, "max_tokens": spec.max_tokens,
                         "retries": spec.retries, "max_rounds": spec.max_rounds, "knowledge_k": spec.knowledge_k,
                         "base_url": spec.base_url or "", "prompt": spec.system_prompt_file or "",
                         "file": spec.source_path.name if spec.source_path else ""})
        st.dataframe(rows, hide_index=True, width="stretch", height=38 + 35 * len(rows))
        for role, spec in specs.items():
            if spec.source_path is not None:
                with st.expander(f"{role}: {spec.source_path.name}"):
                    st.code(spec.source_path.read_text(), language="yaml")

with tab_ladder:
    overrides = run_cfg.get("budgets") or {}
    st.markdown("Each rung fixes the LM around a design (width, depth, context, vocabulary), its training "
                "recipe and how many verifications a run may spend there. `run_budget` is this run's "
                "budget (config overrides applied).")
    ladder = tables.ladder_frame(overrides)
    st.dataframe(ladder, hide_index=True, width="stretch", height=38 + 35 * len(ladder))
    if run_cfg.get("ladder"):
        st.caption(f"This run verifies at: {', '.join(run_cfg['ladder'])}")

with tab_run:
    path = run_dir / "config.yaml"
    if not path.is_file():
        st.info(f"No `config.yaml` in `{run_dir}` yet: a run writes it when it starts.")
    else:
        text = path.read_text()
        try:
            SystemConfig.parse(yaml.safe_load(text) or {}, origin=str(path))
        except (ConfigError, yaml.YAMLError) as exc:
            st.error(" ".join(str(exc).split()))
        else:
            st.success("Valid run configuration.", icon=":material/check_circle:")
        st.code(text, language="yaml")

with tab_validate:
    folders = dict.fromkeys([base, *spec_dirs.values()])  # the default (LLM) specs first
    files = {f"{d.name}/{p.name}": p for d in folders if d.is_dir() for p in sorted(d.glob("*.yaml"))}
    start = st.selectbox("Start from", list(files), key="validate_from") if files else None
    origin = files[start] if start else base / "spec.yaml"
    if st.session_state.get("validate_loaded") != str(origin):
        st.session_state["validate_loaded"] = str(origin)
        st.session_state["spec_text"] = origin.read_text() if origin.is_file() else ""
    st.text_area("Agent spec (YAML)", key="spec_text", height=320)
    if st.button("Validate", type="primary", icon=":material/rule:"):
        try:
            spec = validate_spec_text(st.session_state["spec_text"], origin)
        except AgentSpecError as exc:
            st.error(str(exc))
        else:
            st.success(f"Valid: {spec.label()}", icon=":material/check_circle:")
