"""Export of a whole tree as JSON Lines, one record a line tagged by ``kind``.

An export is one read transaction, written to a temporary file renamed into place: a 'meta'
line, the designs in insertion order (parents before children), the results, the budgets.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from sqlalchemy import select

from model_discovery.evolution.designs import Artefact, DesignsMixin
from model_discovery.evolution.schema import (SCHEMA_VERSION, BudgetRow, CheckRow, DesignRow, EdgeRow, ProposalRow,
                                              ResultRow, ReviewRow)
from model_discovery.evolution.store import _pairs

#: what an exported design carries besides its row: (key, table, columns besides the JSON ``data``)
_ARTEFACTS: tuple[tuple[str, type[Artefact], tuple[str, ...]], ...] = (
    ("proposals", ProposalRow, ("created_at",)),
    ("reviews", ReviewRow, ("rating", "accept", "created_at")),
    ("checks", CheckRow, ("passed", "seconds", "created_at")))


class ExportMixin(DesignsMixin):
    """Writing the tree to a JSONL file: designs with their artefacts, results, budgets."""

    def export(self, path: str | Path) -> int:
        """Write the whole tree as JSON Lines (designs in insertion order, then results, budgets).

        Returns the number of designs written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        n = 0
        with self._tx() as s, tmp.open("w") as fh:
            fh.write(json.dumps({"kind": "meta", "schema_version": SCHEMA_VERSION}) + "\n")
            names = _pairs(s.execute(select(DesignRow.id, DesignRow.name)))
            refs: dict[int, list[str]] = defaultdict(list)
            for c, p in s.execute(select(EdgeRow.child_id, EdgeRow.parent_id).where(EdgeRow.kind == "reference")
                                  .order_by(EdgeRow.parent_id)):
                refs[c].append(names[p])
            for row in s.scalars(select(DesignRow).order_by(DesignRow.id)):
                item = {"kind": "design", "name": row.name, "fingerprint": row.fingerprint,
                        "design": json.loads(row.design_json), "status": row.status, "created_at": row.created_at,
                        "operator": row.operator, "generation": row.generation, "references": refs[row.id]}
                for key, table, columns in _ARTEFACTS:
                    item[key] = [{"data": json.loads(a.data), **{c: getattr(a, c) for c in columns}}
                                 for a in self._artefacts(s, table, row.id)]
                fh.write(json.dumps(item, sort_keys=True) + "\n")
                n += 1
            for r in s.scalars(select(ResultRow).order_by(ResultRow.id)):
                fh.write(json.dumps({"kind": "result", "design": names[r.design_id], "scale": r.scale,
                                     "record": json.loads(r.data), "fitness": r.fitness, "status": r.status,
                                     "fitness_se": r.fitness_se, "seeds": r.seeds,
                                     "created_at": r.created_at}, sort_keys=True) + "\n")
            for b in s.scalars(select(BudgetRow).order_by(BudgetRow.scale)):
                fh.write(json.dumps({"kind": "budget", "scale": b.scale, "limit": b.limit}) + "\n")
        tmp.replace(path)
        return n
