"""The coder's unit versions of a design: rejected attempts (source and check error) and the
rationale of every version, stored beside the design.

* :meth:`AttemptsMixin.set_attempts` replaces a design's attempts in one transaction, so a
  resumed commit that stores them again leaves one copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import delete, select

from model_discovery.evolution.schema import AttemptRow
from model_discovery.evolution.store import TreeStore, _now
from model_discovery.records import UnitAttempt


class AttemptsMixin(TreeStore):
    """Storing and reading the coder's attempts of a design."""

    def set_attempts(self, name: str, attempts: Iterable[UnitAttempt]) -> int:
        """Store ``attempts`` as the attempts of design ``name`` (replacing earlier ones)."""
        items = list(attempts)
        now = _now()
        with self._tx(write=True) as s:
            did = self._id(s, name)
            s.execute(delete(AttemptRow).where(AttemptRow.design_id == did))
            s.add_all(AttemptRow(design_id=did, unit=a.unit, attempt=a.attempt, data=a.model_dump_json(),
                                 created_at=now) for a in items)
        return len(items)

    def attempts(self, name: str) -> list[UnitAttempt]:
        """The attempts of design ``name`` in the order they were made."""
        with self._tx() as s:
            did = self._id(s, name)
            rows = s.scalars(select(AttemptRow).where(AttemptRow.design_id == did).order_by(AttemptRow.id))
            return [UnitAttempt.model_validate(json.loads(r.data)) for r in rows]
