"""The connection under the evolution tree: one SQL database, one transaction per call.

* SQLite (a file or ``:memory:``) runs in WAL mode with a busy timeout and opens every write
  transaction with ``BEGIN IMMEDIATE``: a read-then-write is atomic across the processes of one
  machine. A ``postgresql+psycopg://`` URL lets many machines share one tree.
* Every write is one transaction (:meth:`TreeStore._tx`), committed whole or not at all.
* Opening a tree creates missing tables and adds newer columns (``schema.ADDED_COLUMNS``) in place.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from model_discovery.evolution.schema import ADDED_COLUMNS, SCHEMA_VERSION, Base, DesignRow, MetaRow
from model_discovery.gau.scales import LADDER
from model_discovery.records.design import normalise_source


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


def _pairs(result: Iterable[Any]) -> dict[Any, Any]:
    """A dict from a two-column query result."""
    return {a: b for a, b in result}


def _scale_rank(scale: str) -> int:
    """Position of a rung on the ladder (-1 for a scale not on it)."""
    return list(LADDER).index(scale) if scale in LADDER else -1


class TreeStore:
    """The engine, its sessions and the name lookups every part of the tree builds on."""

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
        Base.metadata.create_all(self._write_engine)  # the write lock up front: processes may open a new tree at once
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
