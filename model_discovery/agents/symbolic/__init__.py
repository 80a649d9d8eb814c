"""Symbolic (LLM-free) agents: genetic programming over GAU trees.

``SymbolicProposer`` edits parent designs with GP operators (swap, hparam, insert, remove,
interleave, crossover) over the unit catalogue and invents units (invent, mutate_unit,
cross_unit, code_edit: see :mod:`model_discovery.genome`); ``SymbolicReviewer`` rejects duplicate designs and units, no-ops
and out-of-budget designs and rates novelty; ``SymbolicCoder`` returns the units the proposal
already holds and repairs them deterministically in the debug loop. They are the default
backend, so discovery runs offline.
"""

from model_discovery.agents.symbolic.coder import SymbolicCoder
from model_discovery.agents.symbolic.config import SymbolicConfig
from model_discovery.agents.symbolic.operators import NotApplicable
from model_discovery.agents.symbolic.proposer import SymbolicProposer
from model_discovery.agents.symbolic.registry import OPERATORS
from model_discovery.agents.symbolic.reviewer import SymbolicReviewer, novelty

__all__ = ["SymbolicProposer", "SymbolicReviewer", "SymbolicCoder", "SymbolicConfig", "OPERATORS", "NotApplicable",
           "novelty"]
