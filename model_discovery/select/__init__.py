"""Selection over the evolution tree: parents (UCB), references (diversity), verifications up the
ladder within per-rung budgets, the fitness function and a learned fitness prior."""

from model_discovery.select.budget import Budget
from model_discovery.select.fitness import FitnessConfig, FitnessError, Metrics, fitness, read_metrics
from model_discovery.select.predictor import FitnessPredictor, design_features
from model_discovery.select.selector import RandomSelector, Selector, SelectorConfig, VerifyPick

__all__ = ["Selector", "RandomSelector", "SelectorConfig", "VerifyPick", "Budget", "FitnessConfig",
           "FitnessError", "Metrics", "fitness", "read_metrics", "FitnessPredictor", "design_features"]
