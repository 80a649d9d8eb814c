"""``evaluate``: run lm-eval on a trained design with local tasks, plus standard tasks when reachable.

Local tasks (:mod:`.local_tasks`) always run. Standard lm-eval tasks need their data from the
Hugging Face hub (or a local datasets cache); when the hub cannot be reached, datasets are looked
up offline only, and a task with no local copy is skipped with one warning line, e.g.::

    eval: standard task 'piqa' skipped: data unavailable offline (Couldn't reach 'baber/piqa' on the Hub)

Metric names are flat, ``<task>/<metric>``: ``local_ppl/bits_per_byte``,
``local_ppl/word_perplexity``, ``local_ppl/byte_perplexity``, ``local_nextline/acc``,
``local_nextline/acc_norm``, ``piqa/acc`` …
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from pydantic import BaseModel, ConfigDict, Field
from tokenizers import Tokenizer

from model_discovery.errors import one_line
from model_discovery.records import ScaleConfig
from model_discovery.train.corpus import DataError, corpus_documents
from model_discovery.verify.evaluation.adapter import ModisLM
from model_discovery.verify.evaluation.local_tasks import (DEFAULT_LOCAL_TASKS, LOCAL_TASKS, LocalTaskConfig,
                                                           write_local_tasks)

log = logging.getLogger("model_discovery.verify.evaluation")

STANDARD_TASKS: tuple[str, ...] = ("lambada_openai", "piqa", "hellaswag", "arc_easy", "winogrande")
"""Standard zero-shot tasks run by default above the micro rung (``blimp`` etc. on request)."""


class EvalConfig(BaseModel):
    """Settings of one evaluation run."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(16, gt=0)
    device: str | None = Field(None, description="None: wherever the model is; else 'cpu', 'cuda', 'auto'")
    max_gen_toks: int = Field(64, gt=0)
    local: LocalTaskConfig = Field(default_factory=LocalTaskConfig)
    hub_timeout_s: float = Field(3.0, gt=0, description="how long to wait for the hub before going offline")


class EvalError(RuntimeError):
    """Evaluation cannot run (no tasks, unknown task, no held-out documents)."""


def default_tasks(scale: ScaleConfig) -> list[str]:
    """Local perplexity and next-line tasks at every rung; the standard tasks as well above ``micro``."""
    return list(DEFAULT_LOCAL_TASKS) if scale.name == "micro" else [*DEFAULT_LOCAL_TASKS, *STANDARD_TASKS]


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (offline mode counts as no)."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").lower() in ("1", "true", "yes", "on"):
            return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    return _answers(host, timeout_s)


@lru_cache(maxsize=8)
def _answers(host: str, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


STANDARD_TASK_DIRS: dict[str, str] = {
    "lambada_openai": "lambada", "lambada_standard": "lambada", "piqa": "piqa", "hellaswag": "hellaswag",
    "arc_easy": "arc", "arc_challenge": "arc", "winogrande": "winogrande", "blimp": "blimp",
    "wikitext": "wikitext", "sciq": "sciq", "openbookqa": "openbookqa", "boolq": "super_glue",
}
"""Folder (under ``lm_eval/tasks``) of well-known tasks: indexing just these folders takes
milliseconds, where indexing every built-in task takes seconds."""


@lru_cache(maxsize=8)
def task_manager(folders: tuple[str, ...] | None = ()) -> Any:
    """An lm-eval ``TaskManager`` over the given built-in task folders (``None``: all built-in
    tasks). Local tasks are loaded by the path of their YAML file and need no index."""
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    if folders is None:
        return TaskManager(include_defaults=True)
    root = Path(lm_eval.tasks.__file__).parent
    return TaskManager(include_defaults=False, include_path=[str(root / f) for f in folders] or None)


@contextlib.contextmanager
def hub_offline(enabled: bool) -> Iterator[None]:
    """Switch ``huggingface_hub`` and ``datasets`` to offline mode for the duration (if enabled),
    so that unreachable data fails at once instead of after minutes of retries."""
    if not enabled:
        yield
        return
    import datasets.config as ds_config
    import huggingface_hub.constants as hub_constants

    saved = (hub_constants.HF_HUB_OFFLINE, ds_config.HF_HUB_OFFLINE, ds_config.HF_DATASETS_OFFLINE)
    hub_constants.HF_HUB_OFFLINE = ds_config.HF_HUB_OFFLINE = ds_config.HF_DATASETS_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE, ds_config.HF_HUB_OFFLINE, ds_config.HF_DATASETS_OFFLINE = saved


def flatten_results(results: dict[str, Any]) -> dict[str, float]:
    """lm-eval's ``results`` section as ``{"<task>/<metric>": value}`` (stderr and non-numbers dropped;
    a filter other than ``none`` is kept as a suffix: ``<metric>_<filter>``)."""
    flat: dict[str, float] = {}
    for task, metrics in results.items():
        for key, value in metrics.items():
            if "," not in key or "_stderr" in key or isinstance(value, bool):
                continue
            if not isinstance(value, (int, float)) or math.isnan(float(value)):
                continue
            metric, filt = key.split(",", 1)
            flat[f"{task}/{metric if filt == 'none' else f'{metric}_{filt}'}"] = float(value)
    return flat


def _held_out_documents(data_config: Any = None) -> list[str]:
    try:
        return list(corpus_documents("test", data_config))
    except DataError as exc:
        raise EvalError(f"no held-out documents given and the corpus is unavailable: {one_line(exc, limit=200, with_type=False)}") from exc


def evaluate(model: torch.nn.Module, tokenizer: Tokenizer, scale: ScaleConfig, out_dir: str | Path,
             tasks: Sequence[str] | None = None, limit: int | float | None = None, *,
             documents: Sequence[str] | None = None, eot_id: int | None = None,
             config: EvalConfig | None = None, data_config: Any = None) -> dict[str, float]:
    """Evaluate a trained design with lm-eval; return flat metrics ``{"<task>/<metric>": value}``.

    Args:
        model: the trained :class:`DesignLM` (its train/eval mode is restored afterwards).
        tokenizer: the rung's tokenizer.
        scale: the rung (chooses the default tasks).
        out_dir: where the local tasks' files and ``eval_results.json`` are written.
        tasks: task names (local, standard lm-eval, or groups); default :func:`default_tasks`.
        limit: examples per task (an int) or a fraction of each task (a float below 1).
        documents: held-out documents for the local tasks; default the test split of the corpus
            (``corpus_documents("test", data_config)``).
        eot_id: end-of-text id; default the tokenizer's ``<|endoftext|>``.
        config: batch size, device, local-task sizes.
        data_config: the corpus's ``DataConfig`` (default: the default corpus).

    Standard tasks whose data cannot be had are skipped with one warning line each; an unknown
    task name or an empty task list raises :class:`EvalError`.
    """
    from lm_eval import simple_evaluate

    cfg = config or EvalConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = list(tasks) if tasks is not None else default_tasks(scale)
    if not wanted:
        raise EvalError("no evaluation tasks requested")
    t0 = time.time()

    local_wanted = [t for t in wanted if t in LOCAL_TASKS]
    standard_wanted = [t for t in wanted if t not in LOCAL_TASKS]
    written: list[str] = []
    (out / "tasks").mkdir(exist_ok=True)
    if local_wanted:
        docs = list(documents) if documents is not None else _held_out_documents(data_config)
        written = write_local_tasks(docs, out / "tasks", cfg.local)
        for name in local_wanted:
            if name not in written:
                log.warning("eval: local task %r skipped: too few usable held-out documents", name)
    runnable = [t for t in local_wanted if t in written]
    specs = [str((out / "tasks" / f"{t}.yaml").resolve()) for t in runnable]

    skipped: dict[str, str] = {}
    offline = bool(standard_wanted) and not hub_reachable(cfg.hub_timeout_s)
    with hub_offline(offline):
        known = all(t in STANDARD_TASK_DIRS for t in standard_wanted)
        manager = task_manager(tuple(sorted({STANDARD_TASK_DIRS[t] for t in standard_wanted})) if known else None)
        for name in standard_wanted:
            if name not in manager.all_tasks:
                raise EvalError(f"unknown evaluation task {name!r}")
            try:
                manager.load([name])
            except Exception as exc:  # noqa: BLE001 - any data failure means: skip this task
                why = "data unavailable offline" if offline else "data could not be loaded"
                skipped[name] = f"{why} ({one_line(exc, limit=200, with_type=False)})"
                log.warning("eval: standard task %r skipped: %s", name, skipped[name])
                continue
            runnable.append(name)
            specs.append(name)
        metrics: dict[str, float] = {}
        if runnable:
            was_training = model.training
            lm = ModisLM(model, tokenizer, eot_id=eot_id, batch_size=cfg.batch_size, device=cfg.device,
                         max_gen_toks=cfg.max_gen_toks)
            try:
                res = simple_evaluate(model=lm, tasks=specs, limit=limit, task_manager=manager,
                                      bootstrap_iters=0, log_samples=False, random_seed=0,
                                      numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
            finally:
                model.train(was_training)
            metrics = flatten_results((res or {}).get("results", {}))
    record = {"scale": scale.name, "tasks": runnable, "skipped": skipped, "limit": limit,
              "seconds": round(time.time() - t0, 3), "metrics": metrics}
    (out / "eval_results.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    return metrics
