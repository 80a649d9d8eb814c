"""Deterministic planner, observer and fallback reviewer: LLM-free agents.

:class:`ProposalPlanner` orders the units a proposal already lists so that children come before
the units that use them; :class:`TemplateObserver` writes a factual note from the numbers in a
result, comparing with the parents' results when they are given; :class:`FallbackReviewer`
stands in for an LLM reviewer that has no endpoint, and says so.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from model_discovery.agents.types import Reviewer
from model_discovery.records import Design, Plan, Proposal, Review, ReviewContext, UnitPlan

log = logging.getLogger("model_discovery.agents")


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
    return f"{float(v):+.4g}" if signed else f"{float(v):.4g}"


class FallbackReviewer:
    """The symbolic reviewer standing in for an LLM reviewer (``was``: its provider).

    Proposals that carry a built design go to the symbolic reviewer. A plan without a design (an
    LLM proposer's) has nothing the symbolic reviewer can measure, so it is screened by rules and
    rejected when it fails one: it plans units, each unit is a Python name with a description of
    at least ``min_words`` words, its children are planned or in a parent, and no sibling or
    nearest design already has all its new units. Every review says that no LLM judged it.
    """

    min_words = 8

    def __init__(self, inner: Reviewer, was: str) -> None:
        self.inner, self.was = inner, was
        self.tag = f"[symbolic fallback for the {was} reviewer: no LLM judged this proposal]"
        log.warning("reviewer: %s; LLM plans are screened by rules only", self.tag)

    def review(self, proposal: Proposal, context: ReviewContext) -> Review:
        if proposal.design is not None:
            review = self.inner.review(proposal, context)
            return review.model_copy(update={"reasons": [self.tag, *review.reasons]})
        problems = self.plan_problems(proposal, context)
        if problems:
            return Review(rating=1.5, accept=False, novelty=0.5, reasons=[self.tag, *problems],
                          suggestions=["describe every unit's computation and wire only known units"])
        return Review(rating=3.0, accept=True, novelty=0.5,
                      reasons=[self.tag, f"plan of {len(proposal.units)} unit(s) passes the rule screen"])

    def plan_problems(self, proposal: Proposal, context: ReviewContext) -> list[str]:
        """What is wrong with a plan without a design (empty when the screen passes)."""
        if not proposal.units:
            return ["the proposal plans no units and carries no design"]
        known = {n for d in context.parents for n in d.units} | {u.name for u in proposal.units}
        out = []
        for u in proposal.units:
            if not u.name.isidentifier():
                out.append(f"unit name {u.name!r} is not a Python identifier")
            if len(u.description.split()) < self.min_words:
                out.append(f"unit {u.name}: the description is too short to implement ({u.description!r})")
            missing = sorted(c for c in u.children.values() if c not in known)
            if missing:
                out.append(f"unit {u.name}: children {missing} are neither planned nor in a parent")
        new = {u.name for u in proposal.units}
        for n in context.neighbours:
            if new <= set(n.units):
                out.append(f"{n.name} ({n.relation}, status {n.status}) already has units {sorted(new)}")
        return out
