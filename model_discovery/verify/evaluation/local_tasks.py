"""Local lm-eval tasks made from held-out corpus documents: they need no network, ever.

:func:`write_local_tasks` writes, under ``tasks_dir``, one JSONL file and one YAML task config
per task; ``lm_eval.tasks.TaskManager(include_path=tasks_dir)`` then finds them by name.

* ``local_ppl`` (``loglikelihood_rolling``): held-out documents, scored for word perplexity,
  byte perplexity and bits per byte.
* ``local_nextline`` (``multiple_choice``): a few lines of a held-out document, then the true
  next line among distractor lines of similar length drawn from *other* documents; ``acc``
  (raw log-likelihood) and ``acc_norm`` (per character). Chance is ``1 / n_choices``.
* ``local_complete`` (``generate_until``, on request only): the same contexts; the model writes
  the next line greedily (stopping at the newline) and scores ``exact_match`` against it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

LOCAL_TASKS: tuple[str, ...] = ("local_ppl", "local_nextline", "local_complete")
DEFAULT_LOCAL_TASKS: tuple[str, ...] = ("local_ppl", "local_nextline")


class LocalTaskConfig(BaseModel):
    """How the local tasks are cut from the held-out documents."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    ppl_docs: int = Field(64, gt=0, description="documents in local_ppl")
    ppl_doc_chars: int = Field(2000, gt=0, description="documents are cut to this many characters, at a line end")
    nextline_items: int = Field(200, gt=0, description="questions in local_nextline")
    nextline_choices: int = Field(4, ge=2, description="answers per question, one true")
    nextline_context_lines: int = Field(6, gt=0, description="lines of context before the line to choose")
    min_line_chars: int = Field(12, gt=0, description="shortest stripped line used as an answer")
    complete_max_tokens: int = Field(48, gt=0, description="generation budget of local_complete")


def cut_document(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters, at the last line end when there is one."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    nl = head.rfind("\n")
    return head[: nl + 1] if nl > 0 else head


def ppl_docs(documents: Sequence[str], cfg: LocalTaskConfig) -> list[dict[str, str]]:
    """Rows ``{"text": ...}`` of the rolling-perplexity task (non-blank documents, sampled)."""
    docs = [d for d in documents if d.strip()]
    rng = random.Random(cfg.seed)
    if len(docs) > cfg.ppl_docs:
        docs = rng.sample(docs, cfg.ppl_docs)
    return [{"text": cut_document(d, cfg.ppl_doc_chars)} for d in docs]


def nextline_docs(documents: Sequence[str], cfg: LocalTaskConfig) -> list[dict[str, object]]:
    """Rows ``{"context", "choices", "label"}`` of the next-line multiple-choice task.

    The true line follows ``nextline_context_lines`` lines of its own document; distractors are
    distinct lines of other documents whose length is closest to the true line's, so that line
    length alone does not give the answer away.
    """
    rng = random.Random(cfg.seed + 1)
    per_doc = [d.splitlines() for d in documents]
    pool: list[tuple[int, str]] = sorted({(di, ln.rstrip()) for di, lines in enumerate(per_doc)
                                          for ln in lines if len(ln.strip()) >= cfg.min_line_chars})
    candidates = [(di, li) for di, lines in enumerate(per_doc)
                  for li in range(cfg.nextline_context_lines, len(lines))
                  if len(lines[li].strip()) >= cfg.min_line_chars]
    if len(set(di for di, _ in pool)) < 2 or not candidates:
        return []
    rng.shuffle(candidates)
    rows: list[dict[str, object]] = []
    for di, li in candidates:
        if len(rows) >= cfg.nextline_items:
            break
        lines = per_doc[di]
        answer = lines[li].rstrip()
        others = [ln for dj, ln in rng.sample(pool, min(len(pool), 64)) if dj != di and ln != answer]
        others = sorted(set(others), key=lambda ln: (abs(len(ln) - len(answer)), ln))
        if len(others) < cfg.nextline_choices - 1:
            continue
        choices = [answer] + others[: cfg.nextline_choices - 1]
        rng.shuffle(choices)
        context = "\n".join(lines[li - cfg.nextline_context_lines: li]) + "\n"
        rows.append({"context": context, "choices": choices, "label": choices.index(answer)})
    return rows


def _task_yaml(name: str, data_file: Path, cache_dir: Path, body: dict[str, object]) -> dict[str, object]:
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}, "cache_dir": str(cache_dir)},
        "test_split": "test",
        **body,
        "metadata": {"version": 1.0},
    }


def write_local_tasks(documents: Sequence[str], tasks_dir: str | Path,
                      config: LocalTaskConfig | None = None) -> list[str]:
    """Write the local tasks' JSONL data and YAML configs under ``tasks_dir``.

    Returns the names of the tasks written (a task with no usable rows is left out).
    """
    cfg = config or LocalTaskConfig()
    tasks_dir = Path(tasks_dir)
    tasks_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = tasks_dir / "hf_cache"
    bodies: dict[str, tuple[list, dict[str, object]]] = {
        "local_ppl": (ppl_docs(documents, cfg), {
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "text",
            "metric_list": [
                {"metric": "word_perplexity", "aggregation": "weighted_perplexity", "higher_is_better": False},
                {"metric": "byte_perplexity", "aggregation": "weighted_perplexity", "higher_is_better": False},
                {"metric": "bits_per_byte", "aggregation": "bits_per_byte", "higher_is_better": False}],
        }),
        "local_nextline": (nextline_docs(documents, cfg), {
            "output_type": "multiple_choice",
            "doc_to_text": "context",
            "doc_to_choice": "choices",
            "doc_to_target": "label",
            "target_delimiter": "",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
        }),
    }
    bodies["local_complete"] = ([{"context": r["context"], "answer": r["choices"][r["label"]]}  # type: ignore[index]
                                 for r in bodies["local_nextline"][0]], {
        "output_type": "generate_until",
        "doc_to_text": "context",
        "doc_to_target": "answer",
        "generation_kwargs": {"until": ["\n"], "max_gen_toks": cfg.complete_max_tokens, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    })
    written: list[str] = []
    for name, (rows, body) in bodies.items():
        data_file = tasks_dir / f"{name}.jsonl"
        yaml_file = tasks_dir / f"{name}.yaml"
        if not rows:
            data_file.unlink(missing_ok=True)
            yaml_file.unlink(missing_ok=True)
            continue
        data_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        yaml_file.write_text(yaml.safe_dump(_task_yaml(name, data_file.resolve(), cache_dir.resolve(), body),
                                            sort_keys=False))
        written.append(name)
    return written
