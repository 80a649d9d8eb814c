"""Designs in the tree, with their units, lineage edges, proposal, reviews and check reports.

* A design enters the tree in one transaction with its units, edges, proposal, reviews and check
  report, or not at all; its parents must be in the tree already (a design with none is a seed).
* Adding is idempotent on the fingerprint, so a run killed at any point (even with SIGKILL)
  resumes by simply redoing its last step; a taken name is a :class:`DuplicateNameError`.
* Units and parent edges mirror the stored design JSON.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import ScalarResult, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from model_discovery.evolution.schema import CheckRow, DesignRow, EdgeRow, ProposalRow, ReviewRow, UnitRow
from model_discovery.evolution.store import (DuplicateNameError, TreeError, TreeStore, UnknownDesignError, _dt,
                                             _jsonable, _now, source_hash)
from model_discovery.records import (STATUSES, CheckRecord, Design, DesignRecord, Proposal, ProposalRecord, Review,
                                     ReviewRecord)


def _dumps(obj: Any) -> str:
    return json.dumps(_jsonable(obj), sort_keys=True)


def _check_fields(report: Any) -> tuple[dict[str, Any], bool, float]:
    """(JSON data, passed, seconds) from a check report (pydantic model or mapping)."""
    data = _jsonable(report)
    if not isinstance(data, Mapping):
        raise TreeError(f"check report must be a mapping or pydantic model, got {type(report).__name__}")
    passed = data.get("passed", data.get("ok"))
    if not isinstance(passed, bool):
        raise TreeError("check report has no boolean 'passed' field")
    seconds = data.get("seconds", data.get("elapsed_s", data.get("duration_s", 0.0)))
    try:
        seconds = float(seconds or 0.0)
    except (TypeError, ValueError):
        raise TreeError(f"check report field 'seconds' is not a number: {seconds!r}") from None
    return dict(data), passed, seconds


#: a JSON artefact stored with a design (its proposal, reviews and check reports)
Artefact = ProposalRow | ReviewRow | CheckRow
_A = TypeVar("_A", ProposalRow, ReviewRow, CheckRow)


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise TreeError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")


class DesignsMixin(TreeStore):
    """Adding and finding designs, their units, proposals, reviews and check reports."""

    @staticmethod
    def _records(s: Session, rows: Sequence[DesignRow]) -> list[DesignRecord]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        links: dict[int, dict[str, list[str]]] = defaultdict(lambda: {"parent": [], "reference": []})
        for lo in range(0, len(ids), 500):
            chunk = ids[lo:lo + 500]
            q = (select(EdgeRow.child_id, EdgeRow.kind, DesignRow.name)
                 .join(DesignRow, DesignRow.id == EdgeRow.parent_id)
                 .where(EdgeRow.child_id.in_(chunk)).order_by(EdgeRow.parent_id))
            for child_id, kind, pname in s.execute(q):
                links[child_id][kind].append(pname)
        out = []
        for r in rows:
            design = Design.model_validate_json(r.design_json)
            parent_order = {p: i for i, p in enumerate(design.parents)}
            parents = sorted(links[r.id]["parent"], key=lambda p: parent_order.get(p, len(parent_order)))
            out.append(DesignRecord(name=r.name, fingerprint=r.fingerprint, design=design,
                                    status=r.status, created_at=_dt(r.created_at), summary=r.summary,
                                    operator=r.operator, generation=r.generation, parents=parents,
                                    references=links[r.id]["reference"]))
        return out

    @staticmethod
    def _insert_design(s: Session, design: Design, *, fingerprint: str, status: str, operator: str,
                       references: Sequence[str], strict_references: bool, artefacts: Iterable[Artefact],
                       created_at: float) -> DesignRow:
        """Insert a design with its units, edges and artefacts (their design id set here) in ``s``."""
        if s.scalar(select(DesignRow.id).where(DesignRow.name == design.name)) is not None:
            raise DuplicateNameError(
                f"design name {design.name!r} is taken by a design with a different fingerprint")
        parent_rows: list[DesignRow] = []
        for pname in dict.fromkeys(design.parents):
            prow = s.scalar(select(DesignRow).where(DesignRow.name == pname))
            if prow is None:
                raise UnknownDesignError(f"design {design.name!r}: parent {pname!r} is not in the tree")
            parent_rows.append(prow)
        ref_ids: list[int] = []
        for rname in dict.fromkeys(references):
            if rname in design.parents or rname == design.name:
                continue
            rid = s.scalar(select(DesignRow.id).where(DesignRow.name == rname))
            if rid is None:
                if strict_references:
                    raise UnknownDesignError(f"design {design.name!r}: reference {rname!r} is not in the tree")
                continue  # e.g. a paper cited by the proposal
            ref_ids.append(rid)
        generation = 1 + max((p.generation for p in parent_rows), default=-1)
        row = DesignRow(name=design.name, fingerprint=fingerprint, design_json=design.to_json(indent=None),
                        status=status, created_at=created_at, summary=design.summary, operator=operator,
                        generation=generation, n_units=len(design.units), n_parents=len(parent_rows))
        s.add(row)
        s.flush()
        for uname, spec in design.units.items():
            s.add(UnitRow(design_id=row.id, name=uname, role=spec.role, source_hash=source_hash(spec.source)))
        s.add_all(EdgeRow(child_id=row.id, parent_id=prow.id, kind="parent") for prow in parent_rows)
        s.add_all(EdgeRow(child_id=row.id, parent_id=rid, kind="reference") for rid in ref_ids)
        s.flush()
        for artefact in artefacts:
            artefact.design_id = row.id
            s.add(artefact)
        s.flush()
        return row

    def add_design(self, design: Design, proposal: Proposal | None = None, reviews: Iterable[Review] = (),
                   check: Any = None, operator: str | None = None, *,
                   references: Sequence[str] | None = None, status: str | None = None) -> DesignRecord:
        """Add a design with its units, lineage edges, proposal, reviews and check in ONE transaction.

        Parents (``design.parents``) must already be in the tree; a design with none is a seed
        (a root). ``references`` (default: the proposal's references that name designs in the
        tree) become 'reference' edges. The status defaults to 'checked'/'failed' from the check
        report, else 'proposed'. Idempotent on the fingerprint: re-adding a design already in the
        tree (e.g. after a crash) returns the stored record and writes nothing.
        """
        fingerprint = design.fingerprint()
        check_fields = _check_fields(check) if check is not None else None
        if status is None:
            status = "proposed" if check_fields is None else ("checked" if check_fields[1] else "failed")
        _check_status(status)
        if operator is None:
            operator = proposal.operator if proposal is not None else ("seed" if not design.parents else "")
        strict = references is not None
        refs = list(references) if references is not None else (list(proposal.references) if proposal else [])
        now = _now()
        artefacts: list[Artefact] = [] if proposal is None else [ProposalRow(data=_dumps(proposal), created_at=now)]
        artefacts += [ReviewRow(data=_dumps(r), rating=float(r.rating), accept=bool(r.accept), created_at=now)
                      for r in reviews]
        if check_fields is not None:
            data, passed, seconds = check_fields
            artefacts.append(CheckRow(data=json.dumps(data, sort_keys=True), passed=passed, seconds=seconds,
                                      created_at=now))
        try:
            with self._tx(write=True) as s:
                existing = s.scalar(select(DesignRow).where(DesignRow.fingerprint == fingerprint))
                if existing is not None:
                    return self._records(s, [existing])[0]
                row = self._insert_design(s, design, fingerprint=fingerprint, status=status, operator=operator,
                                          references=refs, strict_references=strict, artefacts=artefacts,
                                          created_at=now)
                return self._records(s, [row])[0]
        except IntegrityError:
            # A concurrent writer committed the same fingerprint (or name) first.
            stored = self.find_fingerprint(fingerprint)
            if stored is not None:
                return stored
            raise DuplicateNameError(
                f"design name {design.name!r} is taken by a design with a different fingerprint") from None

    def get_design(self, name: str) -> DesignRecord:
        """The stored design named ``name``; :class:`UnknownDesignError` if absent."""
        with self._tx() as s:
            return self._records(s, [self._row(s, name)])[0]

    def find_fingerprint(self, fingerprint: str) -> DesignRecord | None:
        """The design with that fingerprint, or None."""
        with self._tx() as s:
            row = s.scalar(select(DesignRow).where(DesignRow.fingerprint == fingerprint))
            return self._records(s, [row])[0] if row is not None else None

    def has_design(self, name: str) -> bool:
        """Whether a design named ``name`` is in the tree."""
        with self._tx() as s:
            return s.scalar(select(DesignRow.id).where(DesignRow.name == name)) is not None

    def fingerprints(self) -> set[str]:
        """Fingerprints of every design in the tree (for duplicate checks by reviewers)."""
        with self._tx() as s:
            return set(s.scalars(select(DesignRow.fingerprint)))

    def list_designs(self, status: str | Sequence[str] | None = None, *, operator: str | None = None,
                     generation: int | None = None, seeds_only: bool = False, limit: int | None = None,
                     offset: int = 0, newest_first: bool = False) -> list[DesignRecord]:
        """Designs filtered by status(es), operator, generation or seed-ness, in insertion order."""
        q = select(DesignRow)
        if status is not None:
            q = q.where(DesignRow.status.in_([status] if isinstance(status, str) else list(status)))
        if operator is not None:
            q = q.where(DesignRow.operator == operator)
        if generation is not None:
            q = q.where(DesignRow.generation == generation)
        if seeds_only:
            q = q.where(DesignRow.n_parents == 0)
        q = q.order_by(DesignRow.id.desc() if newest_first else DesignRow.id).offset(offset)
        if limit is not None:
            q = q.limit(limit)
        with self._tx() as s:
            return self._records(s, list(s.scalars(q)))

    def count(self, status: str | None = None) -> int:
        """Number of designs, or of designs with that status."""
        q = select(func.count(DesignRow.id))
        if status is not None:
            q = q.where(DesignRow.status == status)
        with self._tx() as s:
            return int(s.scalar(q) or 0)

    def set_status(self, name: str, status: str) -> None:
        """Overwrite the status of a design (one of ``STATUSES``)."""
        _check_status(status)
        with self._tx(write=True) as s:
            self._row(s, name).status = status

    @staticmethod
    def _artefacts(s: Session, table: type[_A], did: int) -> ScalarResult[_A]:
        """The rows of one artefact table stored with the design of id ``did``, oldest first."""
        return s.scalars(select(table).where(table.design_id == did).order_by(table.id))

    def proposals(self, name: str) -> list[ProposalRecord]:
        """The proposals stored with a design, oldest first."""
        with self._tx() as s:
            rows = self._artefacts(s, ProposalRow, self._id(s, name))
            return [ProposalRecord(design=name, proposal=Proposal.model_validate_json(r.data),
                                   created_at=_dt(r.created_at)) for r in rows]

    def reviews(self, name: str) -> list[ReviewRecord]:
        """The reviews stored with a design, oldest first."""
        with self._tx() as s:
            rows = self._artefacts(s, ReviewRow, self._id(s, name))
            return [ReviewRecord(design=name, review=Review.model_validate_json(r.data), rating=r.rating,
                                 accept=r.accept, created_at=_dt(r.created_at)) for r in rows]

    def checks(self, name: str) -> list[CheckRecord]:
        """The check reports stored for a design, oldest first."""
        with self._tx() as s:
            rows = self._artefacts(s, CheckRow, self._id(s, name))
            return [CheckRecord(design=name, report=json.loads(r.data), passed=r.passed, seconds=r.seconds,
                                created_at=_dt(r.created_at)) for r in rows]
