"""Prompt files and the text blocks that go into user messages (designs, reviews, snippets).

System prompts live in ``etc/prompts/<role>.md`` (or wherever a spec's ``system_prompt_file``
points) and may use ``$example_block`` / ``$example_leaf``, replaced by catalogue unit sources.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from model_discovery.agents.spec import AgentSpec, AgentSpecError
from model_discovery.gau.library import catalogue
from model_discovery.records import Design, Proposal, Review, UnitPlan


def default_prompt_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "etc" / "prompts"


def example_unit(role: str | None = None, with_children: bool | None = None) -> str:
    """Source of a catalogue unit (of ``role`` when given; with/without child slots when asked)."""
    preferred = {"block": "PreNormBlock", "channel_mixer": "GeluMLP", "mixer": "CausalSelfAttention"}
    units = catalogue(role) if role else catalogue()
    if with_children is not None:
        units = {n: u for n, u in units.items() if bool(u.slots) == with_children} or units
    if not units:
        return ""
    name = preferred.get(role or "", "")
    unit = units.get(name) or units[sorted(units)[0]]
    return unit.source.strip()


def load_system_prompt(spec: AgentSpec) -> str:
    """The spec's prompt file (default ``etc/prompts/<role>.md``) with examples filled in."""
    path = spec.prompt_path() or default_prompt_dir() / f"{spec.role}.md"
    try:
        text = path.read_text()
    except OSError as exc:
        raise AgentSpecError(f"{spec.source_path or spec.role}: field system_prompt_file: "
                             f"cannot read {path}: {exc.strerror or exc}") from exc
    if "$example" in text:
        text = string.Template(text).safe_substitute(
            example_block=example_unit("block", with_children=True),
            example_leaf=example_unit("channel_mixer", with_children=False))
    return text


def render_design(design: Design, sources: bool = True, only: set[str] | None = None) -> str:
    """A design as prompt text: name, summary, the unit tree, and unit sources."""
    lines = [f"Design {design.name!r} (root {design.root})"]
    if design.parents:
        lines.append(f"parents: {', '.join(design.parents)}")
    if design.summary:
        lines.append(f"summary: {design.summary}")
    lines.append("units:")
    for name in design.walk():
        u = design.units[name]
        kids = ", ".join(f"{s}={c}" for s, c in u.children.items()) or "-"
        hp = json.dumps(u.hparams) if u.hparams else "{}"
        lines.append(f"  {name} [{u.role}] children: {kids}; hparams: {hp}")
    if sources:
        for name in design.walk():
            if only is not None and name not in only:
                continue
            lines.append(f"\n# --- unit {name} ---\n```python\n{design.units[name].source.strip()}\n```")
    return "\n".join(lines)


def render_model(obj: BaseModel | dict[str, Any], exclude: set[str] | None = None) -> str:
    data = obj.model_dump(mode="json", exclude=exclude) if isinstance(obj, BaseModel) else obj
    return json.dumps(data, indent=1, default=str)


def render_proposal(proposal: Proposal) -> str:
    return render_model(proposal, exclude={"design"})


def render_reviews(reviews: list[Review]) -> str:
    out = []
    for i, r in enumerate(reviews, 1):
        out.append(f"Review {i}: rating {r.rating}/5, accept={r.accept}, novelty {r.novelty:.2f}")
        out += [f"  - reason: {x}" for x in r.reasons]
        out += [f"  - suggestion: {x}" for x in r.suggestions]
    return "\n".join(out)


def render_unit_plan(unit: UnitPlan) -> str:
    return render_model(unit)


def render_knowledge(items: list[str]) -> str:
    return "\n\n".join(f"({i}) {text.strip()}" for i, text in enumerate(items, 1))
