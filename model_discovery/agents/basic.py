"""Deterministic planner and observer: the LLM-free defaults for those roles.

:class:`ProposalPlanner` orders the units a proposal already lists so that children come before
the units that use them; :class:`TemplateObserver` writes a factual note from the numbers in a
result, comparing with the parents' results when they are given.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from model_discovery.records import Design, Plan, Proposal, UnitPlan


class ProposalPlanner:
    """``plan(proposal, parents)``: the proposal's units, leaves first (stable otherwise)."""

    def plan(self, proposal: Proposal, parents: list[Design]) -> Plan:
        units = list(proposal.units)
        by_name = {u.name: u for u in units}
        ordered: list[UnitPlan] = []
        seen: set[str] = set()

        def visit(u: UnitPlan, stack: tuple[str, ...]) -> None:
            if u.name in seen or u.name in stack:
                return
            for child in u.children.values():
                if child in by_name:
                    visit(by_name[child], stack + (u.name,))
            seen.add(u.name)
            ordered.append(u)

        for u in units:
            visit(u, ())
        root = None
        if proposal.design is not None:
            root = proposal.design.root
        else:
            blocks = [u.name for u in ordered if u.role == "block"]
            root = blocks[-1] if blocks else None
        return Plan(root=root, units=ordered, notes=f"{len(ordered)} unit(s) from the proposal, leaves first")


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


class TemplateObserver:
    """``observe(design, results)``: numbers first, then the comparison with ``parent_*`` keys."""

    max_items = 8

    def observe(self, design: Design, results: dict[str, Any] | BaseModel) -> str:
        data = results.model_dump(mode="json") if isinstance(results, BaseModel) else dict(results)
        flat = {k: v for k, v in data.items() if _num(v) is not None}
        own = {k: v for k, v in flat.items() if not k.startswith("parent_")}
        parts = [f"{design.name} ({len(design.units)} units, root {design.root})"]
        if own:
            shown = list(own.items())[: self.max_items]
            parts.append(", ".join(f"{k}={_fmt(v)}" for k, v in shown))
        deltas = []
        for k, v in own.items():
            ref = _num(flat.get(f"parent_{k}"))
            if ref is not None:
                deltas.append(f"{k} {_fmt(v)} vs parent {_fmt(ref)} ({_fmt(float(v) - ref, signed=True)})")
        if deltas:
            parts.append("compared with the parent: " + "; ".join(deltas[: self.max_items]))
        if design.summary:
            parts.append(design.summary)
        return ". ".join(p.rstrip(". ") for p in parts) + "."


def _fmt(v: float, signed: bool = False) -> str:
    v = float(v)
    text = f"{v:+.4g}" if signed else f"{v:.4g}"
    return text
