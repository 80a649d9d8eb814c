"""Editable design drafts and what the catalogue says about slots.

A :class:`Draft` is a mutable copy of a design's root and units. Operators edit drafts; units
brought in from another design or from the catalogue go through :meth:`Draft.add_unit`, which
reuses an identical unit, or else resolves name clashes by renaming the unit *and* its class
(and any clashing helper) in its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from model_discovery.agents.symbolic.source import (defined_names, fresh_name, rename_unit_source,
                                                    slot_roles_declared, source_key)
from model_discovery.gau.compose import RUNTIME_NAMES, compile_design
from model_discovery.gau.library import CatalogueUnit, catalogue, list_seeds, load_seed
from model_discovery.records import Design, DesignError, UnitSpec
from model_discovery.records.design import used_slots, walk_units

ROOT = "<root>"
"""Pseudo parent of the root slot in :meth:`Draft.slot_refs`."""

_SLOT_NAME_ROLES: list[tuple[str, str]] = [
    (r"norm|ln", "norm"),
    (r"mlp|ffn|channel|glu|feed", "channel_mixer"),
    (r"mix|attn|attention|ssm|token|seq|conv|retention|rnn", "mixer"),
    (r"pos|rope|rotary", "positional"),
    (r"block|even|odd|layer", "block"),
]


@dataclass(frozen=True)
class SeedUsage:
    """How seeds use one catalogue unit: slot roles and hyperparameters of its first use."""

    slot_roles: dict[str, str]
    hparams: dict[str, object]


@lru_cache(maxsize=1)
def seed_designs() -> tuple[Design, ...]:
    """Every seed that loads (a seed being edited on disk is skipped, not fatal)."""
    out = []
    for name in list_seeds():
        try:
            out.append(load_seed(name))
        except (DesignError, OSError, ValueError):
            continue
    return tuple(out)


@lru_cache(maxsize=1)
def seed_usage() -> dict[str, SeedUsage]:
    """Catalogue unit name -> how the first seed using it wires and configures it."""
    out: dict[str, SeedUsage] = {}
    for seed in seed_designs():
        for uname, unit in seed.units.items():
            if uname in out:
                continue
            roles = {slot: seed.units[child].role for slot, child in unit.children.items()}
            out[uname] = SeedUsage(slot_roles=roles, hparams=dict(unit.hparams))
    return out


def guess_slot_role(slot: str) -> str | None:
    """Role a slot probably takes, from its name (``norm1`` -> norm, ``mlp`` -> channel_mixer)."""
    low = slot.lower()
    for pattern, role in _SLOT_NAME_ROLES:
        if re.search(pattern, low):
            return role
    return None


def catalogue_slot_roles(unit: CatalogueUnit) -> dict[str, str | None]:
    """Role of each slot of a catalogue unit: declared ``SLOT_ROLES``, else seed usage, else name."""
    declared = slot_roles_declared(unit.source)
    usage = seed_usage().get(unit.name)
    return {slot: declared.get(slot) or (usage.slot_roles.get(slot) if usage else None) or guess_slot_role(slot)
            for slot in unit.slots}


def catalogue_hparams(unit: CatalogueUnit) -> dict[str, object]:
    """Hyperparameters for a catalogue unit: its defaults overlaid with its first seed's values."""
    usage = seed_usage().get(unit.name)
    return {**unit.defaults, **(usage.hparams if usage else {})}


def is_wrapper(unit: CatalogueUnit) -> bool:
    """A combinator whose primary slot takes a unit of its own role (it wraps that unit)."""
    return unit.role in catalogue_slot_roles(unit).values()


@lru_cache(maxsize=1)
def catalogue_keys() -> frozenset[str]:
    """Canonical source keys of every catalogue unit (the trusted code)."""
    return frozenset(source_key(u.source) for u in catalogue().values())


def spec_key(spec: UnitSpec) -> tuple:
    """Identity of a unit's content, independent of its name."""
    return (spec.role, tuple(sorted(spec.children.items())), tuple(sorted((k, repr(v)) for k, v in spec.hparams.items())),
            source_key(spec.source))


@dataclass
class Draft:
    """A mutable design under construction."""

    root: str
    units: dict[str, UnitSpec] = field(default_factory=dict)

    @classmethod
    def of(cls, design: Design) -> "Draft":
        return cls(root=design.root, units={n: u.model_copy(deep=True) for n, u in design.units.items()})

    # -- queries ------------------------------------------------------------------------------
    def walk(self) -> list[str]:
        return walk_units(self.units, self.root)

    def slot_refs(self) -> list[tuple[str, str, str]]:
        """(parent, slot, child) for every slot reachable from the root, root first."""
        refs = [(ROOT, "", self.root)]
        for name in self.walk():
            refs += [(name, slot, child) for slot, child in self.units[name].children.items()]
        return refs

    def taken_names(self, exclude: str | None = None) -> set[str]:
        """Unit names and top-level source names in use (optionally ignoring one unit)."""
        taken = set(RUNTIME_NAMES) | set(self.units)
        for name, unit in self.units.items():
            if name != exclude:
                taken |= {s for s in defined_names(unit.source) if not s.isupper()}
        return taken

    def subtree(self, name: str) -> list[str]:
        return walk_units(self.units, name)

    # -- edits --------------------------------------------------------------------------------
    def set_child(self, parent: str, slot: str, child: str) -> None:
        """Point ``parent.slot`` (or the root when ``parent`` is :data:`ROOT`) at ``child``."""
        if parent == ROOT:
            self.root = child
        else:
            self.units[parent] = self.units[parent].model_copy(
                update={"children": {**self.units[parent].children, slot: child}})

    def add_unit(self, name: str, spec: UnitSpec) -> str:
        """Add ``spec`` under ``name`` (children already named in this draft); return its name.

        An identical unit already present is reused. Otherwise a clashing name gets a fresh
        ``_<n>`` suffix, and the class and every clashing top-level helper are renamed in the
        source so the compiled module keeps unique top-level names.
        """
        key = spec_key(spec)
        same_name = self.units.get(name)
        if same_name is not None and spec_key(same_name) == key:
            return name
        for other, unit in self.units.items():
            if spec_key(unit) == key:
                return other
        taken = self.taken_names()
        new = fresh_name(name, taken)
        source, _ = rename_unit_source(spec.source, name, new, taken - {new})
        self.units[new] = spec.model_copy(update={"source": source})
        return new

    def import_subtree(self, other: Design | "Draft", name: str) -> str:
        """Copy ``other``'s unit ``name`` and everything below it into this draft."""
        mapped: dict[str, str] = {}

        def visit(n: str) -> str:
            if n in mapped:
                return mapped[n]
            spec = other.units[n]
            children = {slot: visit(child) for slot, child in spec.children.items()}
            mapped[n] = self.add_unit(n, spec.model_copy(update={"children": children}))
            return mapped[n]

        return visit(name)

    def add_catalogue_unit(self, unit: CatalogueUnit, children: dict[str, str],
                           hparams: dict[str, object] | None = None) -> str:
        spec = UnitSpec(role=unit.role, source=unit.source, children=children,
                        hparams={**catalogue_hparams(unit), **(hparams or {})}, doc=unit.doc)
        return self.add_unit(unit.name, spec)

    def gc(self) -> None:
        """Drop units no longer reachable from the root."""
        keep = set(self.walk())
        self.units = {n: u for n, u in self.units.items() if n in keep}

    def to_design(self, name: str, parents: list[str], summary: str) -> Design:
        self.gc()
        return Design(name=name, root=self.root, units=dict(self.units), parents=parents, summary=summary)


def design_problems(design: Design) -> list[str]:
    """Static problems that make a design unusable, without executing any of its code."""
    problems: list[str] = []
    try:
        compile_design(design)
    except DesignError as exc:
        problems.append(str(exc))
    for name, unit in design.units.items():
        missing = [s for s in used_slots(unit.source) if s not in unit.children]
        if missing:
            problems.append(f"unit {name} builds slots {missing} that the design does not wire")
    return problems
