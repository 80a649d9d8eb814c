"""Genetic-programming operators on GAU trees.

Each operator takes a seeded ``random.Random``, a primary design and optionally a second design,
and returns an :class:`Edit` (the edited draft plus a one-line description of the change), or
raises :class:`NotApplicable` when the designs offer nothing for it to do. Operators only edit
data and parse sources; they never execute design code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from model_discovery.agents.symbolic.draft import ROOT, Draft, catalogue_slot_roles, is_wrapper, spec_key
from model_discovery.agents.symbolic.hparams import hparams_valid, mutate_value
from model_discovery.agents.symbolic.source import init_defaults, source_key, string_choices
from model_discovery.gau.library import CatalogueUnit, catalogue
from model_discovery.records import Design

OPERATORS: tuple[str, ...] = ("swap", "hparam", "insert", "remove", "interleave", "crossover")
INTERLEAVE_UNIT = "InterleaveBlock"
_MAX_FILL_DEPTH = 2


class NotApplicable(Exception):
    """The operator has nothing to do on these designs."""


@dataclass
class Edit:
    """Result of one operator: the edited draft and what changed."""

    draft: Draft
    change: str
    changed: list[str] = field(default_factory=list)  # names of new or edited units
    replaced: dict[str, str] = field(default_factory=dict)  # new unit -> unit whose slot it took


def _slot_label(parent: str, slot: str) -> str:
    return "root" if parent == ROOT else f"{parent}.{slot}"


def _plain_catalogue(role: str) -> list[CatalogueUnit]:
    """Catalogue units of ``role`` that are not combinators, in name order."""
    return [u for _, u in sorted(catalogue(role).items()) if not is_wrapper(u)]


def fill_slot(draft: Draft, role: str, rng: random.Random, avoid: set[str] | None = None,
              depth: int = 0) -> str:
    """A unit for a new slot of ``role``: one already in the draft, else a catalogue unit.

    ``avoid`` holds source keys the filler must differ from (e.g. the other branch of a
    parallel mixer). Catalogue units with slots of their own are filled recursively.
    """
    avoid = avoid or set()
    existing = [n for n in draft.walk() if draft.units[n].role == role
                and source_key(draft.units[n].source) not in avoid]
    if existing and not avoid:
        return existing[0]
    options = [u for u in _plain_catalogue(role) if source_key(u.source) not in avoid]
    if depth >= _MAX_FILL_DEPTH:
        options = [u for u in options if not u.slots]
    if not options:
        if existing:
            return existing[0]
        raise NotApplicable(f"no catalogue unit of role {role!r} to fill a slot")
    unit = rng.choice(options)
    return _add_catalogue(draft, unit, rng, depth=depth + 1)


def _add_catalogue(draft: Draft, unit: CatalogueUnit, rng: random.Random, reuse: dict[str, str] | None = None,
                   depth: int = 0, hparams: dict | None = None) -> str:
    """Add catalogue ``unit`` with its slots wired (``reuse``: slot -> unit already in the draft)."""
    children: dict[str, str] = {}
    for slot, role in catalogue_slot_roles(unit).items():
        if reuse and slot in reuse:
            children[slot] = reuse[slot]
        elif role is None:
            raise NotApplicable(f"cannot tell the role of slot {unit.name}.{slot}")
        else:
            children[slot] = fill_slot(draft, role, rng, depth=depth)
    return draft.add_catalogue_unit(unit, children, hparams)


# -- swap -------------------------------------------------------------------------------------
def swap(rng: random.Random, a: Design, b: Design | None = None, roles: tuple[str, ...] | None = None) -> Edit:
    """Point one slot at another unit of the same role (catalogue or already in the design)."""
    draft = Draft.of(a)
    refs = [r for r in draft.slot_refs() if roles is None or draft.units[r[2]].role in roles]
    rng.shuffle(refs)
    for parent, slot, child in refs:
        cur = draft.units[child]
        cur_key = source_key(cur.source)
        in_design = [n for n in draft.walk() if n != child and draft.units[n].role == cur.role
                     and spec_key(draft.units[n]) != spec_key(cur) and child not in draft.subtree(n)
                     and n not in _ancestors(draft, parent)]
        from_cat = [u for u in _plain_catalogue(cur.role) if source_key(u.source) != cur_key]
        options: list[tuple[str, object]] = [("design", n) for n in in_design] + [("catalogue", u) for u in from_cat]
        if not options:
            continue
        kind, pick = rng.choice(options)
        if kind == "design":
            new = str(pick)
        else:
            unit = pick  # type: ignore[assignment]
            roles_of = catalogue_slot_roles(unit)  # type: ignore[arg-type]
            reuse = {s: cur.children[s] for s, r in roles_of.items()
                     if s in cur.children and draft.units[cur.children[s]].role == r}
            try:
                new = _add_catalogue(draft, unit, rng, reuse=reuse)  # type: ignore[arg-type]
            except NotApplicable:
                continue
        draft.set_child(parent, slot, new)
        draft.gc()
        return Edit(draft, f"swap {_slot_label(parent, slot)}: {child} -> {new}", [new], {new: child})
    raise NotApplicable("no slot has an alternative unit of its role")


def _ancestors(draft: Draft, name: str) -> set[str]:
    """``name`` and every unit above it."""
    if name == ROOT:
        return set()
    out = {name}
    changed = True
    while changed:
        changed = False
        for n, u in draft.units.items():
            if n not in out and out & set(u.children.values()):
                out.add(n)
                changed = True
    return out


# -- hparam -----------------------------------------------------------------------------------
def hparam(rng: random.Random, a: Design, b: Design | None = None) -> Edit:
    """Perturb one hyperparameter of one unit within sane bounds (booleans flip)."""
    draft = Draft.of(a)
    names = draft.walk()
    rng.shuffle(names)
    for name in names:
        unit = draft.units[name]
        params = {**init_defaults(unit.source, name), **unit.hparams}
        keys = sorted(params)
        rng.shuffle(keys)
        for key in keys:
            value = params[key]
            new = mutate_value(key, value, rng, string_choices(unit.source, key))
            if new is None or new == value:
                continue
            hp = {**unit.hparams, key: new}
            if hparams_valid(hp):
                continue
            draft.units[name] = unit.model_copy(update={"hparams": hp})
            return Edit(draft, f"hparam {name}.{key}: {value!r} -> {new!r}", [name])
    raise NotApplicable("no hyperparameter can be mutated")


# -- insert / remove --------------------------------------------------------------------------
def insert(rng: random.Random, a: Design, b: Design | None = None) -> Edit:
    """Wrap a unit in a catalogue combinator of its role (short conv, gate, parallel branch)."""
    draft = Draft.of(a)
    wrappers = [u for _, u in sorted(catalogue().items()) if is_wrapper(u) and u.role != "block"]
    pairs = [(parent, slot, child, w) for parent, slot, child in draft.slot_refs() for w in wrappers
             if w.role == draft.units[child].role and source_key(w.source) != source_key(draft.units[child].source)]
    if not pairs:
        raise NotApplicable("no slot takes a combinator")
    rng.shuffle(pairs)
    for parent, slot, child, w in pairs:
        roles = catalogue_slot_roles(w)
        primary = next(s for s, r in roles.items() if r == w.role)
        children = {primary: child}
        try:
            for s, r in roles.items():
                if s == primary:
                    continue
                if r is None:
                    raise NotApplicable(f"cannot tell the role of slot {w.name}.{s}")
                avoid = {source_key(draft.units[child].source)} if r == w.role else None
                children[s] = fill_slot(draft, r, rng, avoid=avoid)
        except NotApplicable:
            continue
        hp = {}
        for key, value in w.defaults.items():
            if isinstance(value, str):
                choices = string_choices(w.source, key)
                hp[key] = rng.choice(choices) if choices else value
        new = draft.add_catalogue_unit(w, children, hp)
        draft.set_child(parent, slot, new)
        draft.gc()
        extra = ", ".join(f"{s}={c}" for s, c in children.items() if s != primary)
        return Edit(draft, f"insert {w.name} around {child} at {_slot_label(parent, slot)}"
                    + (f" ({extra})" if extra else ""), [new], {new: child})
    raise NotApplicable("no combinator could be wired")


def remove(rng: random.Random, a: Design, b: Design | None = None) -> Edit:
    """Replace a combinator by one of its children of the same role (undoes insert/interleave)."""
    draft = Draft.of(a)
    options = [(parent, slot, child, s, grandchild) for parent, slot, child in draft.slot_refs()
               for s, grandchild in sorted(draft.units[child].children.items())
               if draft.units[grandchild].role == draft.units[child].role]
    if not options:
        raise NotApplicable("no combinator to remove")
    parent, slot, child, s, grandchild = rng.choice(options)
    draft.set_child(parent, slot, grandchild)
    draft.gc()
    return Edit(draft, f"remove {child} at {_slot_label(parent, slot)}, keeping its {s} {grandchild}", [])


# -- two-parent operators ---------------------------------------------------------------------
def interleave(rng: random.Random, a: Design, b: Design | None = None) -> Edit:
    """Hybrid stack: ``a``'s block on even layers, ``b``'s block on odd layers.

    With no second design, the odd block is ``a``'s block with its mixer swapped, so a single
    parent still yields a hybrid.
    """
    if INTERLEAVE_UNIT not in catalogue("block"):
        raise NotApplicable(f"catalogue has no {INTERLEAVE_UNIT}")
    if b is None:
        other = swap(rng, a, roles=("mixer",)).draft
        b = Design(name=f"{a.name}-variant", root=other.root, units=other.units)
        label = f"{a.name} with its mixer swapped"
    else:
        label = b.name
    draft = Draft.of(a)
    odd = draft.import_subtree(b, b.root)
    if odd == draft.root:
        raise NotApplicable("both blocks are the same")
    unit = catalogue("block")[INTERLEAVE_UNIT]
    new = draft.add_catalogue_unit(unit, {"even": draft.root, "odd": odd})
    even = draft.root
    draft.root = new
    return Edit(draft, f"interleave layers: even {even} (from {a.name}), odd {odd} (from {label})", [new], {new: even})


def crossover(rng: random.Random, a: Design, b: Design | None = None) -> Edit:
    """Take one role's subtree from ``b`` into the matching slot of ``a``."""
    if b is None:
        raise NotApplicable("crossover needs two designs")
    draft = Draft.of(a)
    other = Draft.of(b)
    refs = [r for r in draft.slot_refs() if r[0] != ROOT]
    rng.shuffle(refs)
    for parent, slot, child in refs:
        role = draft.units[child].role
        donors = [n for n in other.walk() if other.units[n].role == role and n != b.root]
        rng.shuffle(donors)
        for donor in donors:
            before = {n: spec_key(u) for n, u in draft.units.items()}
            trial = Draft(root=draft.root, units=dict(draft.units))
            new = trial.import_subtree(b, donor)
            if new == child or (new in before and spec_key(trial.units[new]) == before.get(child)):
                continue
            trial.set_child(parent, slot, new)
            trial.gc()
            return Edit(trial, f"crossover {_slot_label(parent, slot)}: {child} -> {new} (from {b.name})",
                        [n for n in trial.subtree(new) if n not in before], {new: child})
    raise NotApplicable(f"{b.name} has no unit that differs from {a.name}'s in a shared role")


OperatorFn = Callable[[random.Random, Design, "Design | None"], Edit]
REGISTRY: dict[str, OperatorFn] = {
    "swap": swap, "hparam": hparam, "insert": insert, "remove": remove,
    "interleave": interleave, "crossover": crossover,
}
