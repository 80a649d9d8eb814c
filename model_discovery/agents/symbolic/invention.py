"""Operators that invent units: new code, not a recombination of catalogue units.

- ``invent``: a mixer or channel-mixer slot gets a unit generated from a random genome;
- ``mutate_unit``: an invented unit's genome gets a point mutation or a subtree replacement;
- ``cross_unit``: two invented units of one kind (from the two designs) are crossed;
- ``code_edit``: a unit without a genome (catalogue or hand-written) gets a code-level edit
  (swap activation, output gate, qk-norm, feature map, token shift, decay parameterisation).

Each new unit gets a new short name and records its genome and the edit in ``UnitSpec.origin``.
Like the other operators these only build data; the code they write is checked in the sandbox.
"""

from __future__ import annotations

import random

from model_discovery.agents.symbolic.draft import ROOT, Draft
from model_discovery.agents.symbolic.operators import Edit, NotApplicable
from model_discovery.agents.symbolic.source import rename_unit_source
from model_discovery.genome.code_edits import EditNotApplicable, edit_unit
from model_discovery.genome.invent import edited_name, genome_unit, unit_genome
from model_discovery.genome.operators import GenomeEdit, GenomeOperatorError, crossover, mutate, random_genome
from model_discovery.records import Design, UnitOrigin

INVENT_OPERATORS: tuple[str, ...] = ("invent", "mutate_unit", "cross_unit", "code_edit")
_KIND_OF_ROLE = {"mixer": "mixer", "channel_mixer": "channel"}


def _label(parent: str, slot: str) -> str:
    return "root" if parent == ROOT else f"{parent}.{slot}"


def _replace_everywhere(draft: Draft, old: str, new: str) -> None:
    """Point every slot (and the root) that holds ``old`` at ``new``; drop what is no longer used."""
    for parent, slot, child in draft.slot_refs():
        if child == old:
            draft.set_child(parent, slot, new)
    draft.gc()


def _swap_in(draft: Draft, old: str, edit: GenomeEdit, parents: list[str]) -> str:
    """Add the unit generated from ``edit`` and put it wherever ``old`` was."""
    name, spec = genome_unit(edit, parents)
    new = draft.add_unit(name, spec)
    _replace_everywhere(draft, old, new)
    return new


def invent(rng: random.Random, a: Design, b: Design | None = None) -> Edit:
    """Put a unit generated from a random genome into one mixer or channel-mixer slot."""
    draft = Draft.of(a)
    refs = [r for r in draft.slot_refs() if r[0] != ROOT and draft.units[r[2]].role in _KIND_OF_ROLE]
    if not refs:
        raise NotApplicable("the design has no mixer or channel-mixer slot")
    parent, slot, child = rng.choice(refs)
    role = draft.units[child].role
    genome = random_genome(rng, _KIND_OF_ROLE[role])
    name, spec = genome_unit(GenomeEdit(genome, "sample", f"random {_KIND_OF_ROLE[role]} genome"))
    new = draft.add_unit(name, spec)
    draft.set_child(parent, slot, new)
    draft.gc()
    return Edit(draft, f"invent {_label(parent, slot)}: {child} -> {new}", [new], {new: child})


def _genome_units(design: Design | Draft) -> list[str]:
    return [n for n in design.walk() if unit_genome(design.units[n]) is not None]


def mutate_unit(rng: random.Random, a: Design, b: Design | None = None) -> Edit:
    """Point-mutate or replace a subtree of the genome of one invented unit."""
    draft = Draft.of(a)
    names = _genome_units(draft)
    if not names:
        raise NotApplicable("the design has no invented unit with a genome")
    old = rng.choice(names)
    genome = unit_genome(draft.units[old])
    try:
        edit = mutate(rng, genome)  # type: ignore[arg-type]
    except GenomeOperatorError as exc:
        raise NotApplicable(str(exc)) from exc
    new = _swap_in(draft, old, edit, [old])
    if new == old:
        raise NotApplicable("the mutation regenerated the same unit")
    return Edit(draft, f"{edit.operator} mutation of {old} -> {new}: {edit.edit}", [new], {new: old})


def cross_unit(rng: random.Random, a: Design, b: Design | None = None) -> Edit:
    """Cross the genome of an invented unit of ``a`` with one of the same kind from ``b`` (or ``a``)."""
    draft = Draft.of(a)
    mine = _genome_units(draft)
    donors = [(a, n) for n in mine] + ([(b, n) for n in _genome_units(b)] if b is not None else [])
    pairs = []
    for old in mine:
        ga = unit_genome(draft.units[old])
        for design, donor in donors:
            gb = unit_genome(design.units[donor])
            if ga is not None and gb is not None and ga.kind == gb.kind and ga != gb:
                pairs.append((old, ga, design.name, donor, gb))
    if not pairs:
        raise NotApplicable("no two invented units of one kind with different genomes")
    rng.shuffle(pairs)
    for old, ga, dname, donor, gb in pairs:
        try:
            edit = crossover(rng, ga, gb)
        except GenomeOperatorError:
            continue
        new = _swap_in(draft, old, edit, [old, donor])
        return Edit(draft, f"crossover of {old} with {donor} (from {dname}) -> {new}: {edit.edit}", [new], {new: old})
    raise NotApplicable("crossover of the invented units' genomes copies a parent")


def code_edit(rng: random.Random, a: Design, b: Design | None = None) -> Edit:
    """A code-level edit of one mixer or channel-mixer unit that has no genome."""
    draft = Draft.of(a)
    names = [n for n in draft.walk() if draft.units[n].role in _KIND_OF_ROLE and unit_genome(draft.units[n]) is None]
    rng.shuffle(names)
    reasons = []
    for old in names:
        spec = draft.units[old]
        try:
            which, edited = edit_unit(rng, spec.source, spec.role)
        except (EditNotApplicable, SyntaxError) as exc:
            reasons.append(f"{old}: {exc}")
            continue
        name = edited_name(old, which, edited.source)
        source, _ = rename_unit_source(edited.source, old, name, draft.taken_names(exclude=old) - {name})
        origin = UnitOrigin(operator="code", edit=f"{which}: {edited.edit}", parents=[old])
        new = draft.add_unit(name, spec.model_copy(update={"source": source, "origin": origin}))
        _replace_everywhere(draft, old, new)
        return Edit(draft, f"code edit of {old} -> {new}: {edited.edit}", [new], {new: old})
    raise NotApplicable("no unit takes a code edit: " + "; ".join(reasons[:3]))


INVENT_REGISTRY = {"invent": invent, "mutate_unit": mutate_unit, "cross_unit": cross_unit, "code_edit": code_edit}
