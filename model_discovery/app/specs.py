"""Validation of agent-spec YAML edited in the GUI, with the same rules as the spec loader."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from model_discovery.agents.spec import AgentSpec, AgentSpecError, load_agent_spec


def validate_spec_text(text: str, origin: Path) -> AgentSpec:
    """Validate ``text`` as if it were the spec file ``origin``; :class:`AgentSpecError` if invalid.

    The text goes through :func:`~model_discovery.agents.spec.load_agent_spec` itself, so the
    verdict and its one-line message are exactly what a run would report. A relative
    ``system_prompt_file`` resolves against ``origin``'s folder, as it would in place; the
    message names ``origin`` rather than the scratch file.
    """
    origin = Path(origin)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None  # the loader reports it with its line number
    if isinstance(data, dict):
        prompt = data.get("system_prompt_file")
        if isinstance(prompt, str) and prompt and not Path(prompt).is_absolute():
            data["system_prompt_file"] = str((origin.parent / prompt).resolve())
            text = yaml.safe_dump(data, sort_keys=False)
    with tempfile.TemporaryDirectory(prefix="modis-spec-") as tmp:
        scratch = Path(tmp) / origin.name
        scratch.write_text(text)
        try:
            spec = load_agent_spec(scratch)
        except AgentSpecError as exc:
            raise AgentSpecError(str(exc).replace(str(scratch), str(origin))) from None
    return spec.model_copy(update={"source_path": origin.resolve()})
