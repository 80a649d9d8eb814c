"""The evolution tree: a SQL store (SQLite by default, PostgreSQL for many machines) of every
design, its units, lineage, proposal, reviews, check reports, verification results and leases."""

from model_discovery.evolution.tree import (DuplicateNameError, EvolutionTree, TreeError, UnknownDesignError,
                                            database_url, source_hash)
from model_discovery.records import DesignRecord, Graph, LeaderboardRow, ResultRecord

__all__ = ["EvolutionTree", "TreeError", "UnknownDesignError", "DuplicateNameError", "database_url",
           "source_hash", "DesignRecord", "ResultRecord", "LeaderboardRow", "Graph"]
