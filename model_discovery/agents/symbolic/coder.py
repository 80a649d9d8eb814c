"""SymbolicCoder: hands back units the symbolic proposer already placed in its design, and
repairs them deterministically when a check fails."""

from __future__ import annotations

from collections.abc import Mapping

from model_discovery.agents.symbolic.draft import catalogue_hparams
from model_discovery.agents.symbolic.hparams import hparams_valid, snap_value
from model_discovery.agents.symbolic.source import base_name, defined_names, rename_unit_source, source_key
from model_discovery.gau.library import catalogue
from model_discovery.records import Design, Proposal, UnitImplementation, UnitPlan, UnitSpec
from model_discovery.records.design import used_slots


class SymbolicCoder:
    """Implements a unit plan by returning the unit from the proposal's design.

    With an ``error`` (debug mode) it applies the first repair that changes something:

    1. snap the hyperparameters the error names, or that are invalid at some rung, to valid
       values (head counts dividing 64, positive sizes); else reset a named one to the parent's
       or catalogue value;
    2. revert the unit to its version in a parent design (same name, else same base name and
       role), renaming the class to the unit's name;
    3. reset the hyperparameters of a catalogue unit to the catalogue's values.

    When no repair applies the unit comes back unchanged. Parent designs are looked up in
    ``designs`` (name -> design); :meth:`remember` adds more.
    """

    def __init__(self, designs: Mapping[str, Design] | None = None) -> None:
        self.designs: dict[str, Design] = dict(designs or {})

    def remember(self, *designs: Design) -> None:
        for design in designs:
            self.designs[design.name] = design

    def implement(self, proposal: Proposal, draft: Design, unit: UnitPlan, error: str | None) -> UnitImplementation:
        spec = self._current(proposal, draft, unit)
        if error is None:
            return _impl(unit.name, spec, f"unit from the {proposal.operator} proposal's design")
        for repair in (self._snap_hparams, self._revert_to_parent, self._catalogue_hparams):
            fixed = repair(proposal, draft, unit.name, spec, error)
            if fixed is not None:
                return fixed
        return _impl(unit.name, spec, "no deterministic repair applies; unit unchanged")

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _current(proposal: Proposal, draft: Design, unit: UnitPlan) -> UnitSpec:
        if unit.name in draft.units:
            return draft.units[unit.name]
        if proposal.design is not None and unit.name in proposal.design.units:
            return proposal.design.units[unit.name]
        raise KeyError(f"unit {unit.name!r} is in neither the draft nor the proposal's design; "
                       "the symbolic coder only returns existing units")

    def _parent_unit(self, proposal: Proposal, name: str, role: str) -> tuple[str, UnitSpec] | None:
        parents = [self.designs[p] for p in proposal.parents if p in self.designs]
        for parent in parents:
            if name in parent.units and parent.units[name].role == role:
                return name, parent.units[name]
        for parent in parents:
            for pname, spec in parent.units.items():
                if base_name(pname) == base_name(name) and spec.role == role:
                    return pname, spec
        return None

    def _snap_hparams(self, proposal: Proposal, draft: Design, name: str, spec: UnitSpec,
                      error: str) -> UnitImplementation | None:
        invalid = {p.split("=")[0] for p in hparams_valid(spec.hparams)}
        named = {k for k in spec.hparams if k in error}
        hp = dict(spec.hparams)
        changes = []
        for key in sorted(invalid | named):
            value = hp[key]
            new = snap_value(key, value)
            if new == value and key in named:
                reference = self._parent_unit(proposal, name, spec.role)
                ref_hp = reference[1].hparams if reference else {}
                cat = catalogue().get(base_name(name))
                new = ref_hp.get(key, catalogue_hparams(cat).get(key, value) if cat else value)
            if new != value:
                hp[key] = new
                changes.append(f"{key}: {value!r} -> {new!r}")
        if not changes:
            return None
        return _impl(name, spec.model_copy(update={"hparams": hp}), "snapped hyperparameters " + ", ".join(changes))

    def _revert_to_parent(self, proposal: Proposal, draft: Design, name: str, spec: UnitSpec,
                          error: str) -> UnitImplementation | None:
        found = self._parent_unit(proposal, name, spec.role)
        if found is None:
            return None
        pname, pspec = found
        if source_key(pspec.source) == source_key(spec.source) and pspec.hparams == spec.hparams:
            return None
        if not set(used_slots(pspec.source)) <= set(spec.children):
            return None
        taken = set(draft.units) - {name}
        for other, u in draft.units.items():
            if other != name:
                taken |= defined_names(u.source)
        source, _ = rename_unit_source(pspec.source, pname, name, taken)
        reverted = spec.model_copy(update={"source": source, "hparams": dict(pspec.hparams), "origin": pspec.origin})
        return _impl(name, reverted, f"reverted to {pname} of the parent design")

    @staticmethod
    def _catalogue_hparams(proposal: Proposal, draft: Design, name: str, spec: UnitSpec,
                           error: str) -> UnitImplementation | None:
        cat = catalogue().get(base_name(name))
        if cat is None or source_key(cat.source) != source_key(spec.source):
            return None
        hp = catalogue_hparams(cat)
        if hp == spec.hparams:
            return None
        return _impl(name, spec.model_copy(update={"hparams": hp}), f"reset hyperparameters to catalogue {cat.name}")


def _impl(name: str, spec: UnitSpec, rationale: str) -> UnitImplementation:
    return UnitImplementation(name=name, role=spec.role, source=spec.source, children=dict(spec.children),
                              hparams=dict(spec.hparams), rationale=rationale, origin=spec.origin)
