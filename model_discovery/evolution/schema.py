"""SQL tables of the evolution tree (SQLAlchemy 2 ORM).

These classes never leave :mod:`model_discovery.evolution`: the public API of
:class:`~model_discovery.evolution.tree.EvolutionTree` returns the pydantic records of
:mod:`model_discovery.records.tree`. Times are UNIX seconds (float) so that SQLite and
PostgreSQL compare them the same way.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 1


class Base(DeclarativeBase):
    """Declarative base of every table of the tree."""


class DesignRow(Base):
    __tablename__ = "designs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    design_json: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    summary: Mapped[str] = mapped_column(Text, nullable=False, default="")
    operator: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    generation: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    n_units: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    n_parents: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class UnitRow(Base):
    __tablename__ = "units"
    __table_args__ = (UniqueConstraint("design_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    design_id: Mapped[int] = mapped_column(ForeignKey("designs.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    source_hash: Mapped[str] = mapped_column(String(64), nullable=False, index=True)


class EdgeRow(Base):
    __tablename__ = "edges"
    __table_args__ = (Index("ix_edges_parent", "parent_id", "kind"),)

    child_id: Mapped[int] = mapped_column(ForeignKey("designs.id", ondelete="CASCADE"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("designs.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # 'parent' | 'reference'


class _DesignArtefact:
    """Columns of a JSON artefact stored with a design (its proposal, reviews, checks, attempts)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    design_id: Mapped[int] = mapped_column(ForeignKey("designs.id", ondelete="CASCADE"), index=True)
    data: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)


class ProposalRow(_DesignArtefact, Base):
    __tablename__ = "proposals"


class ReviewRow(_DesignArtefact, Base):
    __tablename__ = "reviews"

    rating: Mapped[float] = mapped_column(Float, nullable=False)
    accept: Mapped[bool] = mapped_column(Boolean, nullable=False)


class CheckRow(_DesignArtefact, Base):
    __tablename__ = "checks"

    passed: Mapped[bool] = mapped_column(Boolean, nullable=False)
    seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)


class ResultRow(Base):
    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("design_id", "scale"), Index("ix_results_scale", "scale"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    design_id: Mapped[int] = mapped_column(ForeignKey("designs.id", ondelete="CASCADE"), nullable=False)
    scale: Mapped[str] = mapped_column(String(32), nullable=False)
    data: Mapped[str] = mapped_column(Text, nullable=False)
    fitness: Mapped[float | None] = mapped_column(Float, nullable=True)
    fitness_se: Mapped[float | None] = mapped_column(Float, nullable=True)
    seeds: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)


#: columns added after a table first shipped: (table, column, SQL type and default), added in place
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("results", "fitness_se", "FLOAT"),
    ("results", "seeds", "INTEGER NOT NULL DEFAULT 1"),
    ("leases", "seeds", "INTEGER NOT NULL DEFAULT 1"),
)


class LeaseRow(Base):
    __tablename__ = "leases"

    design_id: Mapped[int] = mapped_column(ForeignKey("designs.id", ondelete="CASCADE"), primary_key=True)
    scale: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)
    seeds: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")


class BudgetRow(Base):
    """Verification budget of one rung for this run; also the lock row for budgeted claims."""

    __tablename__ = "budgets"

    scale: Mapped[str] = mapped_column(String(32), primary_key=True)
    limit: Mapped[int | None] = mapped_column(Integer, nullable=True)


class MetaRow(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class AttemptRow(_DesignArtefact, Base):
    """One version of a unit the coder wrote for a design: its source, the check error that
    rejected it ('' for the version that was kept) and the coder's rationale."""

    __tablename__ = "attempts"

    unit: Mapped[str] = mapped_column(String(200), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False)
