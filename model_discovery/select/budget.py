"""Per-rung verification budgets, persisted in the tree.

The limit of a rung comes from ``ScaleConfig.verify_budget``, overridden by what the run
stored with :meth:`EvolutionTree.set_budget`, overridden by explicit overrides. What was spent
is read from the tree (results plus live leases), so every node of a run sees the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from model_discovery.evolution import EvolutionTree
from model_discovery.gau.scales import LADDER, get_scale


class Budget(BaseModel):
    """Verification limits per rung, in ladder order."""

    model_config = ConfigDict(extra="forbid")
    limits: dict[str, int] = Field(description="scale -> verifications allowed in this run")

    @classmethod
    def from_tree(cls, tree: EvolutionTree, overrides: Mapping[str, int] | None = None,
                  scales: Sequence[str] | None = None) -> "Budget":
        """Ladder defaults, then the tree's stored budgets, then ``overrides``."""
        names = list(scales) if scales is not None else list(LADDER)
        stored, overrides = tree.budgets(), overrides or {}
        return cls(limits={name: int(overrides.get(name, stored.get(name, get_scale(name).verify_budget)))
                           for name in names})

    def save(self, tree: EvolutionTree) -> None:
        """Persist these limits in the tree for every node of the run."""
        for scale, limit in self.limits.items():
            tree.set_budget(scale, limit)

    def limit(self, scale: str) -> int:
        return self.limits.get(scale, 0)

    def spent(self, tree: EvolutionTree) -> dict[str, int]:
        """Results plus live leases per rung."""
        return {scale: tree.spent(scale) for scale in self.limits}
