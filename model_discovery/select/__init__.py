"""Selection over the evolution tree: parents (Thompson sampling, tournaments), verifications up
the ladder by successive halving within per-rung budgets, fitness with its standard error, and
the surrogate that pre-screens candidates. The rules themselves live in :mod:`.policy`."""

from model_discovery.records import VerifyPick
from model_discovery.select.budget import Budget
from model_discovery.select.fitness import FitnessConfig, FitnessError, Metrics, fitness, read_metrics
from model_discovery.select.policy import PolicyConfig
from model_discovery.select.predictor import Ridge, design_features
from model_discovery.select.selector import RandomSelector, Selector, SelectorConfig

__all__ = ["Selector", "RandomSelector", "SelectorConfig", "VerifyPick", "Budget", "FitnessConfig",
           "FitnessError", "Metrics", "fitness", "read_metrics", "Ridge", "design_features",
           "PolicyConfig"]
