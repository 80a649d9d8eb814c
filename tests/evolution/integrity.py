"""The tree's stored invariant: every design's unit rows and parent edges mirror its JSON."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import select

from model_discovery.evolution import EvolutionTree
from model_discovery.evolution.schema import DesignRow, EdgeRow, UnitRow
from model_discovery.evolution.store import _pairs, source_hash
from model_discovery.records import Design


def integrity_problems(tree: EvolutionTree) -> list[str]:
    """Inconsistencies between stored designs and their units/edges (empty when sound)."""
    problems: list[str] = []
    with tree._tx() as s:
        names = _pairs(s.execute(select(DesignRow.id, DesignRow.name)))
        units: dict[int, dict[str, tuple[str, str]]] = defaultdict(dict)
        for did, n, role, h in s.execute(select(UnitRow.design_id, UnitRow.name, UnitRow.role, UnitRow.source_hash)):
            units[did][n] = (role, h)
        parents: dict[int, set[str]] = defaultdict(set)
        for c, p in s.execute(select(EdgeRow.child_id, EdgeRow.parent_id).where(EdgeRow.kind == "parent")):
            parents[c].add(names.get(p, f"<missing id {p}>"))
        for row in s.scalars(select(DesignRow).order_by(DesignRow.id)):
            design = Design.model_validate_json(row.design_json)
            if design.name != row.name:
                problems.append(f"design {row.name!r}: stored JSON is named {design.name!r}")
            if design.fingerprint() != row.fingerprint:
                problems.append(f"design {row.name!r}: fingerprint does not match its JSON")
            want = {n: (u.role, source_hash(u.source)) for n, u in design.units.items()}
            if units[row.id] != want:
                problems.append(f"design {row.name!r}: units rows {sorted(units[row.id])} != design units {sorted(want)}")
            if parents[row.id] != set(design.parents) or row.n_parents != len(set(design.parents)):
                problems.append(f"design {row.name!r}: parent edges {sorted(parents[row.id])} != {sorted(design.parents)}")
    return problems
