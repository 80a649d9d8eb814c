"""The evolution tree: every design ever written, its lineage, reviews, checks and results.

One :class:`EvolutionTree` wraps one SQL database. By default it is a SQLite file (WAL mode,
busy timeout, write transactions taken with ``BEGIN IMMEDIATE``) so that several processes on
one machine share it safely; a ``postgresql+psycopg://`` URL lets many machines share one tree.

Every write is one transaction: a design enters the tree with its units, edges, proposal,
reviews and check report, or not at all. Adding a design is idempotent on its fingerprint, so a
run killed at any point (even with SIGKILL) resumes by simply redoing its last step.

Verification leases make sure that no two workers verify the same (design, scale): a claim is
an insert on the lease's primary key, which fails for everyone but the first; an expired lease
can be taken over, and a claim may be bounded by the rung's budget.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from sqlalchemy import Engine, create_engine, delete, event, func, inspect, literal, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from model_discovery.agents.types import Proposal, Review
from model_discovery.evolution.records import (STATUSES, CheckRecord, DesignRecord, EdgeRecord,
                                               Graph, GraphNode, LeaderboardRow, LeaseRecord,
                                               Lineage, ProposalRecord, ResultRecord,
                                               ReviewRecord, TreeStats, UnitRecord, UnitUsage)
from model_discovery.evolution.schema import (ADDED_COLUMNS, SCHEMA_VERSION, Base, BudgetRow, CheckRow,
                                              DesignRow, EdgeRow, LeaseRow, MetaRow,
                                              ProposalRow, ResultRow, ReviewRow, UnitRow)
from model_discovery.gau.design import Design, normalise_source
from model_discovery.gau.scales import LADDER

#: metrics where lower is better (used by :meth:`EvolutionTree.leaderboard` by default)
LOWER_IS_BETTER = ("loss", "bpb", "bits_per_byte", "ppl", "perplexity", "seconds", "time")


class TreeError(RuntimeError):
    """A request the tree cannot satisfy; the message is one line naming the design/field."""


class UnknownDesignError(TreeError, LookupError):
    """No design of that name is in the tree."""


class DuplicateNameError(TreeError):
    """Another design (with a different fingerprint) already has that name."""


def source_hash(source: str) -> str:
    """Hash of a unit's normalised source (comments, docstrings and formatting ignored)."""
    return hashlib.sha256(normalise_source(source).encode()).hexdigest()[:16]


def database_url(url: str | Path) -> str:
    """A SQLAlchemy URL from a path, ``:memory:``, a ``sqlite:///`` or a PostgreSQL URL."""
    text = str(url)
    if text == ":memory:":
        return "sqlite://"
    if isinstance(url, Path) or "://" not in text:
        path = Path(text).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            return "postgresql+psycopg://" + text[len(prefix):]
    return text


def _now() -> float:
    return time.time()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    return to_jsonable_python(obj, fallback=str)


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


def _dig(data: Mapping[str, Any], path: str) -> float | None:
    """A number at a dotted path in a result record, or None."""
    cur: Any = data
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    if isinstance(cur, bool) or not isinstance(cur, (int, float)):
        return None
    return float(cur)


def _pairs(result: Iterable[Any]) -> dict[Any, Any]:
    """A dict from a two-column query result."""
    return {a: b for a, b in result}


def _scale_rank(scale: str) -> int:
    order = list(LADDER)
    return order.index(scale) if scale in order else -1


class EvolutionTree:
    """The SQL-backed store of designs, lineage, reviews, checks, results and leases.

    ``url`` is a file path (SQLite), ``":memory:"``, a ``sqlite:///`` URL or a
    ``postgresql+psycopg://`` URL. Tables are created when missing.
    """

    def __init__(self, url: str | Path, *, busy_timeout_s: float = 60.0, echo: bool = False) -> None:
        self.url = database_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": busy_timeout_s, "check_same_thread": False}
            if self.url == "sqlite://":
                kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            self._setup_sqlite(busy_timeout_s)
        self._write_engine = self.engine.execution_options(modis_write=True)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self._write_engine, expire_on_commit=False)
        Base.metadata.create_all(self.engine)
        self._add_missing_columns()
        with self._tx(write=True) as s:
            if s.get(MetaRow, "schema_version") is None:
                s.add(MetaRow(key="schema_version", value=str(SCHEMA_VERSION)))

    def _add_missing_columns(self) -> None:
        """Upgrade a tree made by an older version in place (new nullable/defaulted columns)."""
        present: dict[str, set[str]] = {}
        for table, column, sql in ADDED_COLUMNS:
            if table not in present:
                present[table] = {c["name"] for c in inspect(self.engine).get_columns(table)}
            if column not in present[table]:
                with self._write_engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {sql}"))
                present[table].add(column)

    # -- connection setup -------------------------------------------------------------------
    def _setup_sqlite(self, busy_timeout_s: float) -> None:
        memory = self.url == "sqlite://"

        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see below)
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Writers take the write lock up front so that read-then-write is atomic.
            write = conn.get_execution_options().get("modis_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Session]:
        maker = self._write if write else self._read
        with maker.begin() as session:
            yield session

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> "EvolutionTree":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EvolutionTree({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _row(s: Session, name: str) -> DesignRow:
        row = s.scalar(select(DesignRow).where(DesignRow.name == name))
        if row is None:
            raise UnknownDesignError(f"no design named {name!r} in the tree")
        return row

    @staticmethod
    def _id(s: Session, name: str) -> int:
        did = s.scalar(select(DesignRow.id).where(DesignRow.name == name))
        if did is None:
            raise UnknownDesignError(f"no design named {name!r} in the tree")
        return did

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

    def _insert_design(self, s: Session, design: Design, *, fingerprint: str, status: str,
                       operator: str, references: Sequence[str], strict_references: bool,
                       proposals: Sequence[tuple[str, float]], reviews: Sequence[tuple[str, float, bool, float]],
                       checks: Sequence[tuple[str, bool, float, float]], created_at: float,
                       generation: int | None) -> DesignRow:
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
        if generation is None:
            generation = 1 + max((p.generation for p in parent_rows), default=-1)
        row = DesignRow(name=design.name, fingerprint=fingerprint, design_json=design.to_json(indent=None),
                        status=status, created_at=created_at, summary=design.summary, operator=operator,
                        generation=generation, n_units=len(design.units), n_parents=len(parent_rows))
        s.add(row)
        s.flush()
        for uname, spec in design.units.items():
            s.add(UnitRow(design_id=row.id, name=uname, role=spec.role, source_hash=source_hash(spec.source)))
        for prow in parent_rows:
            s.add(EdgeRow(child_id=row.id, parent_id=prow.id, kind="parent"))
        for rid in ref_ids:
            s.add(EdgeRow(child_id=row.id, parent_id=rid, kind="reference"))
        s.flush()
        for data, ts in proposals:
            s.add(ProposalRow(design_id=row.id, data=data, created_at=ts))
        for data, rating, accept, ts in reviews:
            s.add(ReviewRow(design_id=row.id, data=data, rating=rating, accept=accept, created_at=ts))
        for data, passed, seconds, ts in checks:
            s.add(CheckRow(design_id=row.id, data=data, passed=passed, seconds=seconds, created_at=ts))
        s.flush()
        return row

    # -- designs ----------------------------------------------------------------------------
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
        reviews = list(reviews)
        check_fields = _check_fields(check) if check is not None else None
        if status is None:
            status = "proposed" if check_fields is None else ("checked" if check_fields[1] else "failed")
        if status not in STATUSES:
            raise TreeError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        if operator is None:
            operator = proposal.operator if proposal is not None else ("seed" if not design.parents else "")
        strict = references is not None
        refs = list(references) if references is not None else (list(proposal.references) if proposal else [])
        now = _now()
        try:
            with self._tx(write=True) as s:
                existing = s.scalar(select(DesignRow).where(DesignRow.fingerprint == fingerprint))
                if existing is not None:
                    return self._records(s, [existing])[0]
                row = self._insert_design(
                    s, design, fingerprint=fingerprint, status=status, operator=operator, references=refs,
                    strict_references=strict,
                    proposals=[(_dumps(proposal), now)] if proposal is not None else [],
                    reviews=[(_dumps(r), float(r.rating), bool(r.accept), now) for r in reviews],
                    checks=([(json.dumps(check_fields[0], sort_keys=True), check_fields[1], check_fields[2], now)]
                            if check_fields else []),
                    created_at=now, generation=None)
                return self._records(s, [row])[0]
        except IntegrityError:
            # A concurrent writer committed the same fingerprint (or name) first.
            with self._tx() as s:
                existing = s.scalar(select(DesignRow).where(DesignRow.fingerprint == fingerprint))
                if existing is not None:
                    return self._records(s, [existing])[0]
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

    def has_fingerprint(self, fingerprint: str) -> bool:
        with self._tx() as s:
            return s.scalar(select(DesignRow.id).where(DesignRow.fingerprint == fingerprint)) is not None

    def has_design(self, name: str) -> bool:
        with self._tx() as s:
            return s.scalar(select(DesignRow.id).where(DesignRow.name == name)) is not None

    def fingerprints(self) -> set[str]:
        """Fingerprints of every design in the tree (for duplicate checks by reviewers)."""
        with self._tx() as s:
            return set(s.scalars(select(DesignRow.fingerprint)))

    def unique_name(self, base: str) -> str:
        """``base`` if free, else ``base-2``, ``base-3``, ... (the first free one)."""
        with self._tx() as s:
            taken = set(s.scalars(select(DesignRow.name).where(
                or_(DesignRow.name == base, DesignRow.name.like(f"{base}-%")))))
        if base not in taken:
            return base
        i = 2
        while f"{base}-{i}" in taken:
            i += 1
        return f"{base}-{i}"

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
        q = select(func.count(DesignRow.id))
        if status is not None:
            q = q.where(DesignRow.status == status)
        with self._tx() as s:
            return int(s.scalar(q) or 0)

    def set_status(self, name: str, status: str) -> None:
        if status not in STATUSES:
            raise TreeError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        with self._tx(write=True) as s:
            self._row(s, name).status = status

    def units(self, name: str) -> list[UnitRecord]:
        """The units of one design as stored (name, role, source hash)."""
        with self._tx() as s:
            did = self._id(s, name)
            rows = s.execute(select(UnitRow.name, UnitRow.role, UnitRow.source_hash)
                             .where(UnitRow.design_id == did).order_by(UnitRow.id))
            return [UnitRecord(design=name, name=n, role=r, source_hash=h) for n, r, h in rows]

    def unit_catalogue(self, role: str | None = None) -> list[UnitUsage]:
        """Every distinct unit ever written (name, role, normalised source) and its usage."""
        q = (select(UnitRow.name, UnitRow.role, UnitRow.source_hash,
                    func.count(func.distinct(UnitRow.design_id)), func.min(UnitRow.design_id))
             .group_by(UnitRow.name, UnitRow.role, UnitRow.source_hash)
             .order_by(UnitRow.role, UnitRow.name, func.min(UnitRow.design_id)))
        if role is not None:
            q = q.where(UnitRow.role == role)
        with self._tx() as s:
            rows = list(s.execute(q))
            names = _pairs(s.execute(select(DesignRow.id, DesignRow.name)
                                   .where(DesignRow.id.in_({r[4] for r in rows})))) if rows else {}
            return [UnitUsage(name=n, role=r, source_hash=h, n_designs=int(c), first_design=names[first])
                    for n, r, h, c, first in rows]

    # -- proposals, reviews, checks ---------------------------------------------------------
    def proposals(self, name: str) -> list[ProposalRecord]:
        with self._tx() as s:
            did = self._id(s, name)
            rows = s.scalars(select(ProposalRow).where(ProposalRow.design_id == did).order_by(ProposalRow.id))
            return [ProposalRecord(design=name, proposal=Proposal.model_validate_json(r.data),
                                   created_at=_dt(r.created_at)) for r in rows]

    def reviews(self, name: str) -> list[ReviewRecord]:
        with self._tx() as s:
            did = self._id(s, name)
            rows = s.scalars(select(ReviewRow).where(ReviewRow.design_id == did).order_by(ReviewRow.id))
            return [ReviewRecord(design=name, review=Review.model_validate_json(r.data), rating=r.rating,
                                 accept=r.accept, created_at=_dt(r.created_at)) for r in rows]

    def add_check(self, name: str, report: Any, *, update_status: bool = True) -> CheckRecord:
        """Store a check report; the design becomes 'checked' or 'failed' (unless 'verified')."""
        data, passed, seconds = _check_fields(report)
        now = _now()
        with self._tx(write=True) as s:
            row = self._row(s, name)
            s.add(CheckRow(design_id=row.id, data=json.dumps(data, sort_keys=True), passed=passed,
                           seconds=seconds, created_at=now))
            if update_status and row.status != "verified":
                row.status = "checked" if passed else "failed"
        return CheckRecord(design=name, report=data, passed=passed, seconds=seconds, created_at=_dt(now))

    def checks(self, name: str) -> list[CheckRecord]:
        with self._tx() as s:
            did = self._id(s, name)
            rows = s.scalars(select(CheckRow).where(CheckRow.design_id == did).order_by(CheckRow.id))
            return [CheckRecord(design=name, report=json.loads(r.data), passed=r.passed, seconds=r.seconds,
                                created_at=_dt(r.created_at)) for r in rows]

    # -- lineage ----------------------------------------------------------------------------
    def _neighbours(self, name: str, kind: str, up: bool) -> list[str]:
        me, other = (EdgeRow.child_id, EdgeRow.parent_id) if up else (EdgeRow.parent_id, EdgeRow.child_id)
        with self._tx() as s:
            did = self._id(s, name)
            q = (select(DesignRow.name).join(EdgeRow, DesignRow.id == other)
                 .where(me == did, EdgeRow.kind == kind).order_by(DesignRow.id))
            return list(s.scalars(q))

    def parents(self, name: str) -> list[str]:
        """Names of the design's parents (empty for a seed)."""
        return self._neighbours(name, "parent", up=True)

    def children(self, name: str) -> list[str]:
        """Names of the designs that have ``name`` as a parent."""
        return self._neighbours(name, "parent", up=False)

    def references(self, name: str) -> list[str]:
        """Designs the proposal of ``name`` consulted as references."""
        return self._neighbours(name, "reference", up=True)

    def referenced_by(self, name: str) -> list[str]:
        return self._neighbours(name, "reference", up=False)

    def _closure(self, s: Session, did: int, up: bool) -> list[tuple[int, str, int]]:
        me, other = (EdgeRow.child_id, EdgeRow.parent_id) if up else (EdgeRow.parent_id, EdgeRow.child_id)
        base = (select(other.label("id"), literal(1).label("depth"))
                .where(me == did, EdgeRow.kind == "parent").cte("closure", recursive=True))
        prev = base.alias("prev")
        me2, other2 = (EdgeRow.child_id, EdgeRow.parent_id) if up else (EdgeRow.parent_id, EdgeRow.child_id)
        closure = base.union(select(other2, prev.c.depth + 1)
                             .where(me2 == prev.c.id, EdgeRow.kind == "parent"))
        q = (select(DesignRow.id, DesignRow.name, func.min(closure.c.depth))
             .join(closure, DesignRow.id == closure.c.id)
             .group_by(DesignRow.id, DesignRow.name).order_by(func.min(closure.c.depth), DesignRow.id))
        return [(i, n, int(d)) for i, n, d in s.execute(q)]

    def ancestors(self, name: str) -> list[str]:
        """Every ancestor through parent edges, nearest first (seeds last)."""
        with self._tx() as s:
            return [n for _, n, _ in self._closure(s, self._id(s, name), up=True)]

    def descendants(self, name: str) -> list[str]:
        """Every descendant through parent edges, nearest first."""
        with self._tx() as s:
            return [n for _, n, _ in self._closure(s, self._id(s, name), up=False)]

    def lineage(self, name: str) -> Lineage:
        """The design, its ancestors and descendants, and the parent edges between them."""
        with self._tx() as s:
            did = self._id(s, name)
            anc = self._closure(s, did, up=True)
            desc = self._closure(s, did, up=False)
            ids = {did} | {i for i, _, _ in anc} | {i for i, _, _ in desc}
            q = (select(EdgeRow.child_id, EdgeRow.parent_id).where(
                EdgeRow.kind == "parent", EdgeRow.child_id.in_(ids), EdgeRow.parent_id.in_(ids))
                .order_by(EdgeRow.child_id, EdgeRow.parent_id))
            names = _pairs(s.execute(select(DesignRow.id, DesignRow.name).where(DesignRow.id.in_(ids))))
            edges = [EdgeRecord(child=names[c], parent=names[p], kind="parent") for c, p in s.execute(q)]
        return Lineage(design=name, ancestors=[n for _, n, _ in anc], descendants=[n for _, n, _ in desc],
                       edges=edges)

    def child_counts(self) -> dict[str, int]:
        """Number of children of every design (0 included): the 'visits' of the selector."""
        with self._tx() as s:
            counts = _pairs(s.execute(select(EdgeRow.parent_id, func.count()).where(EdgeRow.kind == "parent")
                                    .group_by(EdgeRow.parent_id)))
            return {n: int(counts.get(i, 0)) for i, n in s.execute(select(DesignRow.id, DesignRow.name))}

    def edges(self, kind: str | None = None) -> list[EdgeRecord]:
        child = DesignRow.__table__.alias("c")
        parent = DesignRow.__table__.alias("p")
        q = (select(child.c.name, parent.c.name, EdgeRow.kind)
             .join(child, child.c.id == EdgeRow.child_id).join(parent, parent.c.id == EdgeRow.parent_id)
             .order_by(EdgeRow.child_id, EdgeRow.parent_id))
        if kind is not None:
            q = q.where(EdgeRow.kind == kind)
        with self._tx() as s:
            return [EdgeRecord(child=c, parent=p, kind=k) for c, p, k in s.execute(q)]

    # -- results ----------------------------------------------------------------------------
    def add_result(self, name: str, scale: str, record: Any, fitness: float | None = None,
                   status: str = "ok", *, fitness_se: float | None = None, seeds: int = 1) -> ResultRecord:
        """Store (or replace) the verification result of ``name`` at ``scale``.

        ``record`` is a mapping or pydantic model (stored as JSON); ``fitness`` is the mean over
        ``seeds`` training seeds and ``fitness_se`` its standard error. The lease on (name, scale)
        is released, and a design with an 'ok' result becomes 'verified'.
        """
        data = _jsonable(record)
        if not isinstance(data, Mapping):
            raise TreeError(f"result record must be a mapping or pydantic model, got {type(record).__name__}")
        text = json.dumps(data, sort_keys=True)
        fit = None if fitness is None else float(fitness)
        se = None if fitness_se is None else float(fitness_se)
        now = _now()
        for attempt in range(2):
            try:
                with self._tx(write=True) as s:
                    row = self._row(s, name)
                    res = s.scalar(select(ResultRow).where(ResultRow.design_id == row.id, ResultRow.scale == scale))
                    if res is None:
                        s.add(ResultRow(design_id=row.id, scale=scale, data=text, fitness=fit, fitness_se=se,
                                        seeds=seeds, status=status, created_at=now))
                    else:
                        res.data, res.fitness, res.status, res.created_at = text, fit, status, now
                        res.fitness_se, res.seeds = se, seeds
                    s.execute(delete(LeaseRow).where(LeaseRow.design_id == row.id, LeaseRow.scale == scale))
                    if status == "ok":
                        row.status = "verified"
                break
            except IntegrityError:
                if attempt:
                    raise
        return ResultRecord(design=name, scale=scale, record=dict(data), fitness=fit, fitness_se=se, seeds=seeds,
                            status=status, created_at=_dt(now))

    def set_fitness(self, name: str, scale: str, fitness: float | None, fitness_se: float | None = None) -> None:
        """Rewrite the fitness (and its standard error) of a stored result, e.g. once the
        baseline at that rung exists."""
        with self._tx(write=True) as s:
            did = self._id(s, name)
            n = s.execute(update(ResultRow).where(ResultRow.design_id == did, ResultRow.scale == scale)
                          .values(fitness=fitness, fitness_se=fitness_se)).rowcount
            if not n:
                raise TreeError(f"design {name!r} has no result at scale {scale!r}")

    def results(self, name: str | None = None, scale: str | None = None) -> list[ResultRecord]:
        """Verification results, optionally of one design and/or at one scale, oldest first."""
        q = select(ResultRow, DesignRow.name).join(DesignRow, DesignRow.id == ResultRow.design_id)
        with self._tx() as s:
            if name is not None:
                q = q.where(ResultRow.design_id == self._id(s, name))
            if scale is not None:
                q = q.where(ResultRow.scale == scale)
            q = q.order_by(ResultRow.created_at, ResultRow.id)
            return [ResultRecord(design=n, scale=r.scale, record=json.loads(r.data), fitness=r.fitness,
                                 fitness_se=r.fitness_se, seeds=r.seeds, status=r.status,
                                 created_at=_dt(r.created_at)) for r, n in s.execute(q)]

    def leaderboard(self, scale: str | None = None, metric: str = "fitness", *,
                    descending: bool | None = None, limit: int | None = None) -> list[LeaderboardRow]:
        """Results ranked by ``metric`` ('fitness' or a dotted path into the result record).

        Loss-like metrics (names containing loss, bpb, ppl, ...) rank ascending, others
        descending, unless ``descending`` says otherwise. Without ``scale``, larger rungs come
        first and rank within each rung. Rows with no value come last.
        """
        if descending is None:
            descending = not any(tag in metric.lower() for tag in LOWER_IS_BETTER)
        q = (select(ResultRow, DesignRow.name, DesignRow.operator, DesignRow.generation)
             .join(DesignRow, DesignRow.id == ResultRow.design_id))
        if scale is not None:
            q = q.where(ResultRow.scale == scale)
        with self._tx() as s:
            raw = []
            for r, n, op, gen in s.execute(q):
                data = json.loads(r.data)
                value = r.fitness if metric == "fitness" else _dig(data, metric)
                raw.append((r.scale, n, value, r.fitness, r.status, op, gen, r.id, r.fitness_se, r.seeds))

        def key(item: tuple) -> tuple:
            value = item[2]
            missing = value is None
            v = 0.0 if missing else (-value if descending else value)
            return (-_scale_rank(item[0]), item[0], missing, v, item[7])

        raw.sort(key=key)
        rows: list[LeaderboardRow] = []
        rank_in: dict[str, int] = defaultdict(int)
        for sc, n, value, fit, st, op, gen, _, se, seeds in raw:
            rank_in[sc] += 1
            rows.append(LeaderboardRow(rank=rank_in[sc], design=n, scale=sc, value=value, fitness=fit, status=st,
                                       operator=op, generation=gen, fitness_se=se, seeds=seeds))
        return rows[:limit] if limit is not None else rows

    # -- leases and budgets -----------------------------------------------------------------
    @staticmethod
    def _spent(s: Session, scale: str, now: float) -> int:
        done = s.scalar(select(func.sum(ResultRow.seeds)).where(ResultRow.scale == scale)) or 0
        live = s.scalar(select(func.sum(LeaseRow.seeds))
                        .where(LeaseRow.scale == scale, LeaseRow.expires_at > now)) or 0
        return int(done) + int(live)

    def _lock_budget(self, s: Session, scale: str) -> BudgetRow:
        row = s.scalar(select(BudgetRow).where(BudgetRow.scale == scale).with_for_update())
        if row is None:
            try:
                with s.begin_nested():
                    s.add(BudgetRow(scale=scale, limit=None))
            except IntegrityError:
                pass
            row = s.scalar(select(BudgetRow).where(BudgetRow.scale == scale).with_for_update())
        assert row is not None
        return row

    def claim_verification(self, name: str, scale: str, owner: str, ttl_s: float = 3600.0,
                           budget: int | None = None, seeds: int = 1, replicate: bool = False) -> bool:
        """Try to take the lease to verify ``name`` at ``scale``; True if ``owner`` now holds it.

        The lease stands for ``seeds`` training runs. Fails when another owner holds a live
        lease, when a result already exists (with ``replicate``: when none does, since replicate
        seeds add to a stored result), or when ``budget`` is given and the rung's training runs
        (results' seeds plus live leases' seeds) would exceed it (checked in the same
        transaction, so concurrent claimers never overrun the budget). An expired lease is taken
        over; the holder re-claiming renews its lease.
        """
        if ttl_s <= 0:
            raise TreeError(f"lease ttl must be positive, got {ttl_s}")
        try:
            with self._tx(write=True) as s:
                did = self._id(s, name)
                if budget is not None:
                    self._lock_budget(s, scale)  # serialises budgeted claims of this rung
                exists = s.scalar(select(ResultRow.id).where(ResultRow.design_id == did, ResultRow.scale == scale))
                if bool(exists) != replicate:
                    return False
                now = _now()
                lease = s.scalar(select(LeaseRow).where(LeaseRow.design_id == did, LeaseRow.scale == scale)
                                 .with_for_update(skip_locked=True))
                if lease is not None:
                    if lease.owner != owner and lease.expires_at > now:
                        return False
                    renewing = lease.owner == owner and lease.expires_at > now
                    if budget is not None and not renewing and self._spent(s, scale, now) + seeds > budget:
                        return False
                    lease.owner, lease.expires_at, lease.seeds = owner, now + ttl_s, seeds
                    return True
                if budget is not None and self._spent(s, scale, now) + seeds > budget:
                    return False
                s.add(LeaseRow(design_id=did, scale=scale, owner=owner, expires_at=now + ttl_s, seeds=seeds))
                s.flush()
                return True
        except IntegrityError:
            return False  # another owner inserted the lease first (or holds it locked)

    def release(self, name: str, scale: str, owner: str | None = None) -> bool:
        """Drop the lease on (name, scale), only if held by ``owner`` when given; True if dropped."""
        with self._tx(write=True) as s:
            did = self._id(s, name)
            q = delete(LeaseRow).where(LeaseRow.design_id == did, LeaseRow.scale == scale)
            if owner is not None:
                q = q.where(LeaseRow.owner == owner)
            return bool(s.execute(q).rowcount)

    def leases(self, scale: str | None = None, *, live_only: bool = False) -> list[LeaseRecord]:
        now = _now()
        q = select(LeaseRow, DesignRow.name).join(DesignRow, DesignRow.id == LeaseRow.design_id)
        if scale is not None:
            q = q.where(LeaseRow.scale == scale)
        if live_only:
            q = q.where(LeaseRow.expires_at > now)
        with self._tx() as s:
            return [LeaseRecord(design=n, scale=l.scale, owner=l.owner, expires_at=_dt(l.expires_at),
                                expired=l.expires_at <= now) for l, n in s.execute(q.order_by(LeaseRow.expires_at))]

    def set_budget(self, scale: str, limit: int | None) -> None:
        """Persist this run's verification budget of one rung (None: the ladder's default)."""
        if limit is not None and limit < 0:
            raise TreeError(f"budget of scale {scale!r} must be >= 0, got {limit}")
        with self._tx(write=True) as s:
            row = self._lock_budget(s, scale)
            row.limit = limit

    def budgets(self) -> dict[str, int | None]:
        """Budgets persisted with :meth:`set_budget` (scales never set are absent)."""
        with self._tx() as s:
            return {r.scale: r.limit for r in s.scalars(select(BudgetRow)) if r.limit is not None}

    def spent(self, scale: str) -> int:
        """Verifications used at a rung: stored results plus live leases."""
        with self._tx() as s:
            return self._spent(s, scale, _now())

    # -- overview ---------------------------------------------------------------------------
    def stats(self) -> TreeStats:
        now = _now()
        with self._tx() as s:
            by_status = {k: int(v) for k, v in s.execute(select(DesignRow.status, func.count()).group_by(DesignRow.status))}
            by_op = {k: int(v) for k, v in s.execute(select(DesignRow.operator, func.count()).group_by(DesignRow.operator))}
            res = {k: int(v) for k, v in s.execute(select(ResultRow.scale, func.count()).group_by(ResultRow.scale))}
            leases = {k: int(v) for k, v in s.execute(select(LeaseRow.scale, func.count())
                                                      .where(LeaseRow.expires_at > now).group_by(LeaseRow.scale))}
            return TreeStats(
                designs=sum(by_status.values()), by_status=by_status, by_operator=by_op,
                seeds=int(s.scalar(select(func.count()).select_from(DesignRow).where(DesignRow.n_parents == 0)) or 0),
                units=int(s.scalar(select(func.count()).select_from(UnitRow)) or 0),
                distinct_units=int(s.scalar(select(func.count(func.distinct(UnitRow.source_hash)))) or 0),
                edges=int(s.scalar(select(func.count()).select_from(EdgeRow)) or 0),
                results_by_scale=dict(sorted(res.items(), key=lambda kv: _scale_rank(kv[0]))),
                leases_by_scale=leases,
                max_generation=int(s.scalar(select(func.max(DesignRow.generation))) or 0))

    def graph(self) -> Graph:
        """Plain nodes (with the best-rung fitness) and edges, ready for any plotting library."""
        with self._tx() as s:
            best: dict[int, tuple[str, float | None]] = {}
            for did, sc, fit in s.execute(select(ResultRow.design_id, ResultRow.scale, ResultRow.fitness)):
                if did not in best or _scale_rank(sc) > _scale_rank(best[did][0]):
                    best[did] = (sc, fit)
            nodes = [GraphNode(name=r.name, status=r.status, operator=r.operator, generation=r.generation,
                               seed=r.n_parents == 0, best_scale=best.get(r.id, (None, None))[0],
                               fitness=best.get(r.id, (None, None))[1])
                     for r in s.scalars(select(DesignRow).order_by(DesignRow.id))]
        return Graph(nodes=nodes, edges=self.edges())

    def integrity_problems(self) -> list[str]:
        """Inconsistencies between stored designs and their units/edges (empty when sound)."""
        problems: list[str] = []
        with self._tx() as s:
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

    # -- export / import --------------------------------------------------------------------
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
                props = [{"data": json.loads(r.data), "created_at": r.created_at} for r in
                         s.scalars(select(ProposalRow).where(ProposalRow.design_id == row.id).order_by(ProposalRow.id))]
                revs = [{"data": json.loads(r.data), "rating": r.rating, "accept": r.accept, "created_at": r.created_at}
                        for r in s.scalars(select(ReviewRow).where(ReviewRow.design_id == row.id).order_by(ReviewRow.id))]
                chks = [{"data": json.loads(r.data), "passed": r.passed, "seconds": r.seconds, "created_at": r.created_at}
                        for r in s.scalars(select(CheckRow).where(CheckRow.design_id == row.id).order_by(CheckRow.id))]
                fh.write(json.dumps({"kind": "design", "name": row.name, "fingerprint": row.fingerprint,
                                     "design": json.loads(row.design_json), "status": row.status,
                                     "created_at": row.created_at, "operator": row.operator,
                                     "generation": row.generation, "references": refs[row.id],
                                     "proposals": props, "reviews": revs, "checks": chks}, sort_keys=True) + "\n")
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

    def import_(self, path: str | Path) -> int:
        """Load a JSONL export; designs already present (same fingerprint) are skipped.

        Returns the number of designs added. Results are upserted, budgets set.
        """
        path = Path(path)
        added = 0
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise TreeError(f"{path}: cannot read tree export: {exc.strerror}") from None
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                kind = item["kind"]
            except (ValueError, KeyError, TypeError):
                raise TreeError(f"{path}:{lineno}: not a tree export line") from None
            if kind == "design":
                design = Design.model_validate(item["design"])
                fp = design.fingerprint()
                try:
                    with self._tx(write=True) as s:
                        if s.scalar(select(DesignRow.id).where(DesignRow.fingerprint == fp)) is not None:
                            continue
                        self._insert_design(
                            s, design, fingerprint=fp, status=item["status"], operator=item["operator"],
                            references=item.get("references", []), strict_references=False,
                            proposals=[(json.dumps(p["data"], sort_keys=True), p["created_at"]) for p in item["proposals"]],
                            reviews=[(json.dumps(r["data"], sort_keys=True), r["rating"], r["accept"], r["created_at"])
                                     for r in item["reviews"]],
                            checks=[(json.dumps(c["data"], sort_keys=True), c["passed"], c["seconds"], c["created_at"])
                                    for c in item["checks"]],
                            created_at=item["created_at"], generation=item["generation"])
                    added += 1
                except IntegrityError:
                    if not self.has_fingerprint(fp):
                        raise TreeError(f"{path}:{lineno}: design {design.name!r} conflicts with the tree") from None
            elif kind == "result":
                self.add_result(item["design"], item["scale"], item["record"], item["fitness"], item["status"],
                                fitness_se=item.get("fitness_se"), seeds=item.get("seeds", 1))
            elif kind == "budget":
                self.set_budget(item["scale"], item["limit"])
            elif kind != "meta":
                raise TreeError(f"{path}:{lineno}: unknown record kind {kind!r}")
        return added
