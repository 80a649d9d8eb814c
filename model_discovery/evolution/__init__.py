"""The evolution tree: a SQL store (SQLite by default, PostgreSQL for many machines) of every
design, its units, lineage, proposal, reviews, check reports, verification results and leases."""

from model_discovery.evolution.tree import (DuplicateNameError, EvolutionTree, TreeError, UnknownDesignError,
                                            database_url, source_hash)
from model_discovery.records import (STATUSES, CheckRecord, DesignRecord, EdgeRecord, Graph, GraphNode,
                                     LeaderboardRow, LeaseRecord, Lineage, ProposalRecord, ResultRecord,
                                     ReviewRecord, TreeStats)

__all__ = ["EvolutionTree", "TreeError", "UnknownDesignError", "DuplicateNameError", "database_url",
           "source_hash", "STATUSES", "DesignRecord", "EdgeRecord",
           "ProposalRecord", "ReviewRecord", "CheckRecord", "ResultRecord", "LeaseRecord",
           "LeaderboardRow", "Lineage", "Graph", "GraphNode", "TreeStats"]
