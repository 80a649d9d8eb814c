"""The evolution tree: every design ever written, its lineage, reviews, checks and results.

One :class:`EvolutionTree` wraps one SQL database. By default it is a SQLite file (WAL mode,
busy timeout, write transactions taken with ``BEGIN IMMEDIATE``) so that several processes on
one machine share it safely; a ``postgresql+psycopg://`` URL lets many machines share one tree.

The class is assembled here from one part per concern, each module stating its invariants:
:mod:`.store` (connection, transactions, errors), :mod:`.designs`, :mod:`.lineage`,
:mod:`.results`, :mod:`.leases` (and budgets), :mod:`.attempts` (the coder's unit versions)
and :mod:`.export`; tables are in :mod:`.schema`.
"""

from __future__ import annotations

from model_discovery.evolution.attempts import AttemptsMixin
from model_discovery.evolution.designs import DesignsMixin
from model_discovery.evolution.export import ExportMixin
from model_discovery.evolution.leases import LeasesMixin
from model_discovery.evolution.lineage import LineageMixin
from model_discovery.evolution.results import LOWER_IS_BETTER, ResultsMixin
from model_discovery.evolution.store import (DuplicateNameError, TreeError, UnknownDesignError, database_url,
                                             source_hash)

__all__ = ["EvolutionTree", "TreeError", "UnknownDesignError", "DuplicateNameError", "database_url",
           "source_hash", "LOWER_IS_BETTER"]


class EvolutionTree(ExportMixin, DesignsMixin, LineageMixin, ResultsMixin, LeasesMixin, AttemptsMixin):
    """The SQL-backed store of designs, lineage, reviews, checks, results and leases.

    ``url`` is a file path (SQLite), ``":memory:"``, a ``sqlite:///`` URL or a
    ``postgresql+psycopg://`` URL. Tables are created when missing. (The export part comes
    first: it builds on the designs, results and leases parts.)
    """

    def __enter__(self) -> EvolutionTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EvolutionTree({self.engine.url.render_as_string(hide_password=True)!r})"
