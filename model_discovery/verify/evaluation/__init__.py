"""Evaluation of trained designs: the lm-eval adapter, local offline tasks and ``evaluate``."""

from model_discovery.verify.evaluation.adapter import ModisLM, score_windows
from model_discovery.verify.evaluation.harness import EvalConfig, EvalError, evaluate, flatten_results
from model_discovery.verify.evaluation.local_tasks import LocalTaskConfig, write_local_tasks

__all__ = ["ModisLM", "score_windows", "EvalConfig", "EvalError", "LocalTaskConfig", "evaluate", "flatten_results",
           "write_local_tasks"]
