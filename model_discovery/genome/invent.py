"""Invented units as design units: a genome or an edit in, a named ``UnitSpec`` with its lineage out."""

from __future__ import annotations

import hashlib
import re

from model_discovery.genome.codegen import describe, generate, unit_name
from model_discovery.genome.operators import Genome, GenomeEdit
from model_discovery.genome.spec import genome_fingerprint, genome_from_json, role_of
from model_discovery.records.design import Design, UnitOrigin, UnitSpec, normalise_source, walk_units

_EDIT_TAGS: dict[str, str] = {"swap_activation": "Act", "add_output_gate": "Og", "add_qk_norm": "Qkn",
                              "change_feature_map": "Fm", "add_token_shift": "Ts", "change_decay": "Dp"}
_TAGGED = re.compile(r"(?:" + "|".join(_EDIT_TAGS.values()) + r")[0-9a-f]{4}$")
_FORK = re.compile(r"_\d+$")


def genome_unit(edit: GenomeEdit, parents: list[str] | None = None) -> tuple[str, UnitSpec]:
    """(name, spec) of the unit generated from ``edit.genome``, its lineage recorded in ``spec.origin``."""
    genome = edit.genome
    name = unit_name(genome)
    origin = UnitOrigin(operator=edit.operator, edit=edit.edit, parents=list(parents or []),
                        genome=genome.model_dump(mode="json"))
    spec = UnitSpec(role=role_of(genome), source=generate(genome, name), doc=describe(genome)[:240],  # type: ignore[arg-type]
                    origin=origin)
    return name, spec


def edited_name(parent: str, edit_name: str, source: str) -> str:
    """Short name of a unit made by a code edit: the parent's stem, the edit's tag, a source hash."""
    stem = _TAGGED.sub("", _FORK.sub("", parent)) or parent
    digest = hashlib.sha256(normalise_source(source).encode()).hexdigest()[:4]
    return f"{stem}{_EDIT_TAGS[edit_name]}{digest}"


def unit_genome(spec: UnitSpec) -> Genome | None:
    """The genome a unit was generated from, if its origin records one."""
    if spec.origin is None or spec.origin.genome is None:
        return None
    return genome_from_json(spec.origin.genome)


def unit_fingerprint(spec: UnitSpec) -> str | None:
    """Genome fingerprint of an invented unit (None for a unit without a genome)."""
    genome = unit_genome(spec)
    return None if genome is None else genome_fingerprint(genome)


def with_unit(design: Design, name: str, spec: UnitSpec) -> Design:
    """``design`` with its first unit of ``spec.role`` (depth-first) replaced by ``spec`` named ``name``.

    Every slot that held the old unit now holds the new one; units no longer reachable are dropped.
    Raises ``ValueError`` when the design has no unit of that role or already uses ``name``.
    """
    old = next((n for n in design.walk() if design.units[n].role == spec.role), None)
    if old is None:
        raise ValueError(f"design {design.name} has no {spec.role} unit to replace")
    if name in design.units:
        raise ValueError(f"design {design.name} already has a unit named {name}")
    units = {n: u.model_copy(update={"children": {s: (name if c == old else c) for s, c in u.children.items()}})
             for n, u in design.units.items()}
    units[name] = spec
    root = name if design.root == old else design.root
    keep = set(walk_units(units, root))
    return Design(name=f"{design.name}-{name}", root=root, units={n: u for n, u in units.items() if n in keep},
                  parents=[design.name], summary=f"{design.name} with {old} replaced by {name}")
