"""LLM role agents: proposer, reviewer, planner, coder, observer.

Each wraps a :class:`~model_discovery.agents.llm.ChatBackend` built from an
:class:`~model_discovery.agents.spec.AgentSpec`, a system prompt from a file, and optionally a
:class:`~model_discovery.knowledge.KnowledgeEngine` whose snippets go into proposer and reviewer
prompts. Outputs are the pydantic exchange types of :mod:`model_discovery.agents.types`, so they
satisfy the ``Proposer`` / ``Reviewer`` / ``Planner`` / ``Coder`` / ``Observer`` protocols.
"""

from __future__ import annotations

import ast
import json
import sys
from typing import Any

from pydantic import BaseModel

from model_discovery.agents.context import (catalogue_section, debug_section, neighbours_section, results_section,
                                            reuse_section, rung_section, unit_rules_section)
from model_discovery.agents.llm import ChatBackend
from model_discovery.agents.prompts import (example_unit, load_system_prompt, render_design, render_knowledge,
                                            render_proposal, render_reviews, render_unit_plan)
from model_discovery.agents.structured import ProposalDraft, ask_structured
from model_discovery.knowledge import KnowledgeEngine
from model_discovery.records import (CoderContext, Design, Plan, Proposal, ProposalContext, Review, ReviewContext,
                                     UnitImplementation, UnitPlan)
from model_discovery.records.design import used_slots

_ALLOWED_IMPORT_ROOTS = frozenset({"torch", "__future__"})
_GAU_RUNTIME = "model_discovery.gau.runtime"


class LLMAgent:
    """Common parts: backend, system prompt, knowledge engine."""

    def __init__(self, backend: ChatBackend, knowledge: KnowledgeEngine | None = None,
                 system_prompt: str | None = None) -> None:
        self.backend = backend
        self.spec = backend.spec
        self.knowledge = knowledge
        self.system_prompt = system_prompt if system_prompt is not None else load_system_prompt(self.spec)

    def _snippets(self, query: str, given: list[str]) -> list[str]:
        """``given`` plus the engine's hits for ``query`` (its configured sources), each text once."""
        items = list(given)
        if self.knowledge is not None and self.spec.knowledge_k > 0 and query.strip():
            items += [s.render() for s in self.knowledge.search(query, self.spec.knowledge_k)]
        return list(dict.fromkeys(items))


class LLMProposer(LLMAgent):
    """``propose(parents, references, knowledge, feedback, context=) -> Proposal`` (``design`` left None).

    The first turn shows the goal, the parents and references with their unit source, the unit
    catalogue, the tree's neighbours with fitness and status, the parents' results with the
    observer's notes, and the knowledge snippets. In refinement rounds the conversation goes on:
    each earlier proposal is the assistant's turn, followed by the reviews it received.
    """

    def propose(self, parents: list[Design], references: list[Design], knowledge: list[str],
                feedback: list[Review], context: ProposalContext | None = None) -> Proposal:
        ctx = context or ProposalContext()
        query = " ".join([ctx.goal] + [f"{d.summary} {' '.join(d.units)}" for d in parents])
        snippets = self._snippets(query, knowledge)
        parts = [f"# Goal\n{ctx.goal}"] if ctx.goal else []
        parts += ["# Parent design(s)"] + [render_design(d) for d in parents]
        if references:
            seen = {n for d in parents for n in d.units}
            parts += ["# Reference designs (for ideas; units may be borrowed; source of units the parents lack)"]
            parts += [render_design(d, only=set(d.units) - seen) for d in references]
        parts += [catalogue_section(), rung_section(ctx.scale), neighbours_section(ctx.neighbours),
                  results_section(ctx.results)]
        if snippets:
            parts += ["# Literature and library notes", render_knowledge(snippets)]
        parts.append("# Task\nPropose one change to the parent design(s).")
        first = "\n\n".join(p for p in parts if p)
        history = self._history(first, ctx.previous, feedback)
        if history:
            user = self._revise(ctx.previous, feedback, parents + references)
        elif feedback:  # reviews without the proposals they judged: show them in the one turn
            user = first.replace("# Task\n", "# Reviewer feedback on your previous proposal (address it)\n"
                                 + render_reviews(feedback) + "\n\n# Task\n")
        else:
            user = first

        def check(draft: BaseModel) -> str | None:
            bad = [u.name for u in draft.units if not u.name.isidentifier()]  # type: ignore[attr-defined]
            return f"unit names must be Python identifiers: {bad}" if bad else None

        draft, _ = ask_structured(self.backend, self.system_prompt, user, ProposalDraft, check=check,
                                  history=history)
        data = draft.model_dump()
        if not data.get("parents"):
            data["parents"] = [d.name for d in parents]
        return Proposal(**data)

    @staticmethod
    def _history(first: str, previous: list[Proposal], feedback: list[Review]) -> list[dict[str, str]]:
        """Earlier turns: the first prompt, then each earlier proposal and (but for the last) its review."""
        if not previous:
            return []
        turns: list[dict[str, str]] = [{"role": "user", "content": first}]
        for i, prop in enumerate(previous):
            turns.append({"role": "assistant", "content": render_proposal(prop)})
            if i < len(previous) - 1:
                review = feedback[i: i + 1]
                turns.append({"role": "user", "content": "# Review of this proposal\n" + render_reviews(review)
                              + "\n\n# Task\nRevise the proposal."})
        return turns

    @staticmethod
    def _revise(previous: list[Proposal], feedback: list[Review], designs: list[Design]) -> str:
        """The current turn of a refinement round: the last review, and the source of catalogue
        units the last proposal named for reuse."""
        last = feedback[len(previous) - 1: len(previous)] or feedback[-1:]
        parts = ["# Reviewer feedback on your previous proposal (address it)", render_reviews(last),
                 reuse_section(previous[-1], designs),
                 "# Task\nRevise the proposal: keep what the reviewer liked, fix what it criticised."]
        return "\n\n".join(p for p in parts if p)


class LLMReviewer(LLMAgent):
    """``review(proposal, context) -> Review``: sees the goal, the parents, the candidate, the
    tree's siblings and nearest designs with fitness and status, and the parents' results."""

    def review(self, proposal: Proposal, context: ReviewContext) -> Review:
        snippets = self._snippets(f"{proposal.title} {proposal.motivation}", context.knowledge)
        parts = [f"# Goal of the run\n{context.goal}"] if context.goal else []
        parts += ["# Proposal", render_proposal(proposal)]
        if context.parents:
            parts += ["# Parent design(s)"] + [render_design(d) for d in context.parents]
        parts.append(reuse_section(proposal, context.parents))
        if proposal.design is not None:
            fp = proposal.design.fingerprint()
            parts += ["# Candidate design built from the proposal", render_design(proposal.design)]
            if fp in context.known_fingerprints:
                parts.append(f"NOTE: this candidate (fingerprint {fp}) is identical to a design "
                             "already in the tree; it is not novel.")
        parts += [neighbours_section(context.neighbours), results_section(context.results)]
        if context.scale is not None:
            parts.append(f"# Target scale\n{context.scale.model_dump_json()}")
        if snippets:
            parts += ["# Literature and library notes", render_knowledge(snippets)]
        parts.append("# Task\nReview the proposal.")
        review, _ = ask_structured(self.backend, self.system_prompt, "\n\n".join(p for p in parts if p), Review)
        return review


class LLMPlanner(LLMAgent):
    """``plan(proposal, parents) -> Plan``: the units to write, leaves first."""

    def plan(self, proposal: Proposal, parents: list[Design]) -> Plan:
        parts = ["# Accepted proposal", render_proposal(proposal), "# Parent design(s)"]
        parts += [render_design(d, sources=False) for d in parents]
        parts.append("# Task\nPlan the units to implement, in order.")
        existing = {n for d in parents for n in d.units}

        def check(plan: Plan) -> str | None:
            names = [u.name for u in plan.units]
            bad = [n for n in names if not n.isidentifier()]
            if bad:
                return f"unit names must be Python identifiers: {bad}"
            if len(set(names)) != len(names):
                return "each unit may appear only once in the plan"
            known = existing | set(names)
            for u in plan.units:
                missing = sorted(c for c in u.children.values() if c not in known)
                if missing:
                    return f"unit {u.name!r} names children {missing} that neither exist nor are planned"
            if plan.root is not None and plan.root not in known:
                return f"root {plan.root!r} is neither an existing nor a planned unit"
            return None

        plan, _ = ask_structured(self.backend, self.system_prompt, "\n\n".join(parts), Plan, check=check)
        return plan


def static_unit_problems(impl: UnitImplementation, unit: UnitPlan) -> str | None:
    """Cheap checks on a unit's source before the sandboxed checker: name, class, base class,
    imports, ``_forward`` and declared child slots. Returns one line or None."""
    if impl.name != unit.name:
        return f"field name: must be {unit.name!r}, got {impl.name!r}"
    if impl.role != unit.role:
        return f"field role: must be {unit.role!r}, got {impl.role!r}"
    try:
        tree = ast.parse(impl.source)
    except SyntaxError as exc:
        return f"field source: syntax error at line {exc.lineno}: {exc.msg}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mods = [node.module or ""]
        else:
            continue
        for mod in mods:
            root = mod.split(".")[0]
            if mod == _GAU_RUNTIME or root in _ALLOWED_IMPORT_ROOTS:
                continue
            if root in sys.stdlib_module_names and root not in {"os", "subprocess", "socket", "shutil"}:
                continue
            return f"field source: import of {mod!r} is not allowed (torch, the standard library and GAUBase only)"
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == unit.name), None)
    if cls is None:
        return f"field source: must define class {unit.name}(GAUBase)"
    bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in cls.bases]
    if "GAUBase" not in bases:
        return f"field source: class {unit.name} must subclass GAUBase"
    if not any(isinstance(n, ast.FunctionDef) and n.name == "_forward" for n in cls.body):
        return f"field source: class {unit.name} must define _forward(self, X, **Z)"
    undeclared = [s for s in used_slots(impl.source) if s not in impl.children]
    if undeclared:
        return (f"field children: build_child slots {undeclared} are not declared in children "
                f"{sorted(impl.children)}")
    return None


class LLMCoder(LLMAgent):
    """``implement(proposal, draft, unit, error, context=) -> UnitImplementation``: one unit's source.

    It sees the proposal, the rung (d_model, context, parameter band), ``GAUBase`` and the unit
    rules, the unit catalogue, the draft's related units, the source of catalogue units the proposal names for reuse,
    and a library example of the role. With ``error`` (the checker's report on the previous
    version) it works in debug mode: the unit's current source once, the check table, the
    traceback and the earlier rejected versions of the unit.
    """

    def implement(self, proposal: Proposal, draft: Design, unit: UnitPlan, error: str | None,
                  context: CoderContext | None = None) -> UnitImplementation:
        ctx = context or CoderContext()
        parts = [f"# Goal of the run\n{ctx.goal}"] if ctx.goal else []
        parts += ["# Proposal", render_proposal(proposal), rung_section(ctx.scale), unit_rules_section(),
                  catalogue_section(), "# Draft design (related units as they are now)",
                  render_design(draft, sources=True, only=self._context_units(draft, unit) - {unit.name}),
                  reuse_section(proposal, [draft])]
        example = example_unit(unit.role, with_children=bool(unit.children))
        if example:
            parts += [f"# Library example of role {unit.role}", f"```python\n{example}\n```"]
        parts += ["# Unit to implement", render_unit_plan(unit)]
        current = draft.units.get(unit.name)
        if error:
            if current is not None:
                parts += ["# Current source of this unit (fails the checker)",
                          f"```python\n{current.source.strip()}\n```"]
            parts.append(debug_section(ctx, error, current.source if current is not None else ""))
            parts.append(f"# Task\nDebug mode: return the corrected, complete source of {unit.name}.")
        else:
            if current is not None:
                parts += ["# Current source of this unit (to rewrite)", f"```python\n{current.source.strip()}\n```"]
            parts.append(f"# Task\nWrite the complete source of {unit.name}.")

        def check(impl: UnitImplementation) -> str | None:
            if not impl.children and unit.children:
                impl.children = dict(unit.children)
            return static_unit_problems(impl, unit)

        impl, _ = ask_structured(self.backend, self.system_prompt, "\n\n".join(p for p in parts if p),
                                 UnitImplementation, check=check)
        return impl

    @staticmethod
    def _context_units(draft: Design, unit: UnitPlan) -> set[str]:
        """Units whose source helps: the unit itself, its children, and units that call it."""
        related = {unit.name, *unit.children.values()}
        if unit.replaces:
            related.add(unit.replaces)
        for name, spec in draft.units.items():
            if unit.name in spec.children.values() or (unit.replaces and unit.replaces in spec.children.values()):
                related.add(name)
        return {n for n in related if n in draft.units}


class LLMObserver(LLMAgent):
    """``observe(design, results) -> str``: a short note on what a design's results mean."""

    max_chars = 1500

    def observe(self, design: Design, results: dict[str, Any] | BaseModel) -> str:
        data = results.model_dump(mode="json") if isinstance(results, BaseModel) else results
        user = "\n\n".join(["# Design", render_design(design, sources=False),
                            "# Results", json.dumps(data, indent=1, default=str),
                            "# Task\nWrite the note."])
        resp = self.backend.chat(self.system_prompt, [{"role": "user", "content": user}])
        note = " ".join(resp.text.split())
        return note if len(note) <= self.max_chars else note[: self.max_chars].rsplit(" ", 1)[0] + " …"
