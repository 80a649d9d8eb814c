"""Data of the run-level charts and of the compare view (pure: records in, pandas frames out).

- :func:`fitness_by_step`: best and mean fitness of the designs verified so far, per design step
  (designs in the order they entered the tree, seeds first) and rung;
- :func:`fitness_by_generation`: best and mean fitness per generation and rung;
- :func:`budget_over_time`: training runs (seeds) spent per rung as results landed;
- :func:`usage_by_role`: LLM tokens and cost per agent role;
- :func:`unit_diff` / :func:`source_diff`: what a child changed in its parent, unit by unit.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import pandas as pd

from model_discovery.agents.usage import UsageRecord
from model_discovery.records import Design, ResultRecord


def fitness_by_step(results: Sequence[ResultRecord], order: Sequence[str]) -> pd.DataFrame:
    """Columns ``rung, step, best, mean``: after each design step (``order``: design names in the
    order they entered the tree), the best and mean fitness of the ranked designs so far."""
    index = {name: i for i, name in enumerate(order)}
    rows = []
    for rung in dict.fromkeys(r.scale for r in results):
        fit = {r.design: r.fitness for r in results if r.scale == rung and r.fitness is not None and r.design in index}
        seen: list[float] = []
        for step, name in enumerate(order):
            if name in fit:
                seen.append(fit[name])
                rows.append({"rung": rung, "step": step, "best": max(seen), "mean": sum(seen) / len(seen)})
    return pd.DataFrame(rows, columns=["rung", "step", "best", "mean"])


def fitness_by_generation(results: Sequence[ResultRecord], generation: dict[str, int]) -> pd.DataFrame:
    """Columns ``rung, generation, best, mean, designs``."""
    data = pd.DataFrame([{"rung": r.scale, "generation": generation.get(r.design), "fitness": r.fitness}
                         for r in results if r.fitness is not None and r.design in generation],
                        columns=["rung", "generation", "fitness"])
    if data.empty:
        return pd.DataFrame(columns=["rung", "generation", "best", "mean", "designs"])
    out = data.groupby(["rung", "generation"])["fitness"].agg(best="max", mean="mean", designs="count")
    return out.reset_index()


def budget_over_time(results: Sequence[ResultRecord], budgets: dict[str, int]) -> pd.DataFrame:
    """Columns ``rung, time, used, budget``: training runs spent per rung, cumulative, as results landed."""
    rows, used = [], {}
    for r in sorted(results, key=lambda r: r.created_at):
        used[r.scale] = used.get(r.scale, 0) + max(1, r.seeds)
        rows.append({"rung": r.scale, "time": r.created_at, "used": used[r.scale], "budget": budgets.get(r.scale)})
    return pd.DataFrame(rows, columns=["rung", "time", "used", "budget"])


def usage_by_role(records: Sequence[UsageRecord]) -> pd.DataFrame:
    """Columns ``role, calls, prompt_tokens, completion_tokens, usd`` (one row per role)."""
    data = pd.DataFrame([r.model_dump() for r in records],
                        columns=["role", "prompt_tokens", "completion_tokens", "usd", "attempts"])
    if data.empty:
        return pd.DataFrame(columns=["role", "calls", "prompt_tokens", "completion_tokens", "usd"])
    out = data.groupby("role").agg(calls=("role", "size"), prompt_tokens=("prompt_tokens", "sum"),
                                   completion_tokens=("completion_tokens", "sum"), usd=("usd", "sum"))
    return out.reset_index()


def unit_diff(parent: Design, child: Design) -> pd.DataFrame:
    """One row per unit of either design: ``unit, role, change`` (added, removed, source,
    hparams, children — comma-joined — or unchanged)."""
    rows = []
    for name in [*child.units, *(n for n in parent.units if n not in child.units)]:
        a, b = parent.units.get(name), child.units.get(name)
        if a is None or b is None:
            change = "added" if a is None else "removed"
        else:
            parts = [what for what, differs in (("source", a.source != b.source), ("hparams", a.hparams != b.hparams),
                                               ("children", a.children != b.children)) if differs]
            change = ", ".join(parts) or "unchanged"
        rows.append({"unit": name, "role": (b or a).role, "change": change})  # type: ignore[union-attr]
    return pd.DataFrame(rows, columns=["unit", "role", "change"])


def source_diff(parent: Design, child: Design, unit: str) -> str:
    """Unified diff of one unit's source from ``parent`` to ``child`` (hparams and children included)."""

    def text(d: Design) -> list[str]:
        u = d.units.get(unit)
        if u is None:
            return []
        head = [f"# hparams: {u.hparams}\n", f"# children: {u.children}\n"]
        return head + [line if line.endswith("\n") else line + "\n" for line in u.source.splitlines()]

    return "".join(difflib.unified_diff(text(parent), text(child), f"{parent.name}/{unit}", f"{child.name}/{unit}"))
