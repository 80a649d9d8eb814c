"""Text views of units for the CLI and the GUI: an invented unit's lineage, genome and code."""

from __future__ import annotations

import json

from model_discovery.records import Design, UnitSpec


def origin_line(spec: UnitSpec) -> str:
    """One line on where a unit came from ("catalogue or hand-written" when it records no origin)."""
    o = spec.origin
    if o is None:
        return "catalogue or hand-written"
    parents = f" from {', '.join(o.parents)}" if o.parents else ""
    return f"invented by {o.operator}{parents}: {o.edit}"


def genome_text(spec: UnitSpec) -> str | None:
    """The unit's genome as indented JSON (None when it has none)."""
    if spec.origin is None or spec.origin.genome is None:
        return None
    return json.dumps(spec.origin.genome, indent=2, sort_keys=True)


def format_unit(name: str, spec: UnitSpec, source: bool = True) -> str:
    """A unit as text: name, role, origin, hyperparameters, children, genome and (optionally) its code."""
    lines = [f"== {name} ({spec.role}) — {origin_line(spec)}"]
    if spec.hparams:
        lines.append("hparams: " + ", ".join(f"{k}={v!r}" for k, v in spec.hparams.items()))
    if spec.children:
        lines.append("children: " + ", ".join(f"{k} -> {v}" for k, v in spec.children.items()))
    genome = genome_text(spec)
    if genome is not None:
        lines += ["genome:", genome]
    if source:
        lines += ["source:", spec.source.rstrip()]
    return "\n".join(lines)


def format_design_units(design: Design, unit: str | None = None, source: bool = True) -> str:
    """Every unit of ``design`` (root first), or only ``unit``; raises ``KeyError`` naming a missing unit."""
    names = design.walk() if unit is None else [unit]
    if unit is not None and unit not in design.units:
        raise KeyError(f"design {design.name} has no unit {unit!r}; units: {', '.join(design.walk())}")
    head = f"design {design.name}: root {design.root}, {len(design.units)} units"
    return "\n\n".join([head] + [format_unit(n, design.units[n], source) for n in names])
