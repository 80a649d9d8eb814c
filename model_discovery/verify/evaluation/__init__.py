"""Evaluation of trained designs: the lm-eval adapter, local offline tasks and ``evaluate``."""

from model_discovery.verify.evaluation.adapter import ModisLM, score_windows
from model_discovery.verify.evaluation.harness import (STANDARD_TASKS, EvalConfig, EvalError, default_tasks,
                                                       evaluate, flatten_results)
from model_discovery.verify.evaluation.local_tasks import (DEFAULT_LOCAL_TASKS, LOCAL_TASKS, LocalTaskConfig,
                                                          write_local_tasks)

__all__ = ["ModisLM", "score_windows", "STANDARD_TASKS", "LOCAL_TASKS", "DEFAULT_LOCAL_TASKS", "EvalConfig",
           "EvalError", "LocalTaskConfig", "default_tasks", "evaluate", "flatten_results", "write_local_tasks"]
