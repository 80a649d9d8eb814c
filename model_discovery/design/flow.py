"""The design flow as a LangGraph ``StateGraph``.

    select → propose → review ⟲ (up to N rounds) → plan → implement (unit by unit)
           → check ⟲ debug (up to M tries) → commit

The graph is checkpointed (SQLite) per design run (``thread_id``), so an interrupted run
resumes where it stopped. The same graph runs with symbolic agents and with LLM agents.

What agents are shown comes from the tree (:mod:`model_discovery.design.context`): the goal, the
siblings and nearest designs with fitness and status, the parents' and references' results with
the observer's notes, the proposer's earlier proposals in refinement rounds; the coder gets the
rung, the full check table, the traceback and the earlier versions of the unit it debugs, under
the unit's original description. Agents whose method takes no ``context`` (the symbolic ones)
are called without it.

A draft whose fingerprint is already in the tree ends as ``duplicate`` before it is checked;
every unit version the coder wrote (rejected ones with their error) is stored with the design.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from pydantic import ValidationError

from model_discovery.agents.context import check_table, check_traceback
from model_discovery.agents.types import Coder, Planner, Proposer, Reviewer
from model_discovery.design import context as tree_context
from model_discovery.design.state import DesignOutcome, FlowConfig, FlowState
from model_discovery.gau.scales import get_scale
from model_discovery.records import (CheckReport, CoderContext, Design, Proposal, ProposalContext, Review, ReviewContext,
                                     UnitAttempt, UnitImplementation, UnitPlan, UnitSpec)
from model_discovery.records.design import walk_units

CheckFn = Callable[[Design, str], Any]

log = logging.getLogger(__name__)


class DesignFlow:
    """One design at a time: from parent selection to a committed (or failed) node in the tree.

    ``tree`` is an :class:`~model_discovery.evolution.EvolutionTree`, ``selector`` picks parents
    and references, ``check`` is :func:`model_discovery.check.run_checks` (injectable so a caller
    may pass a configured variant), ``knowledge`` is an optional object with
    ``search(query, k) -> list[Snippet]``.
    """

    def __init__(self, tree: Any, selector: Any, proposer: Proposer, reviewer: Reviewer, coder: Coder,
                 check: CheckFn, config: FlowConfig | None = None, checkpoint_path: str | Path | None = None,
                 knowledge: Any = None, planner: Planner | None = None) -> None:
        self.tree, self.selector = tree, selector
        self.proposer, self.reviewer, self.coder, self.planner = proposer, reviewer, coder, planner
        self.check_fn, self.knowledge = check, knowledge
        self.config = config or FlowConfig()
        self._conn = sqlite3.connect(str(checkpoint_path or ":memory:"), check_same_thread=False)
        self.graph = self._build().compile(checkpointer=SqliteSaver(self._conn))

    # -- graph ------------------------------------------------------------------------------
    def _build(self) -> StateGraph:
        g = StateGraph(FlowState)
        for name in ("select", "propose", "review", "plan", "implement", "check", "commit"):
            g.add_node(name, getattr(self, f"_node_{name}"))
        g.add_edge(START, "select")
        g.add_edge("select", "propose")
        g.add_edge("propose", "review")
        g.add_conditional_edges("review", self._after_review, {"plan": "plan", "propose": "propose", "end": END})
        g.add_edge("plan", "implement")
        g.add_conditional_edges("implement", self._after_implement, {"implement": "implement", "check": "check"})
        g.add_conditional_edges("check", self._after_check, {"commit": "commit", "implement": "implement", "end": END})
        g.add_edge("commit", END)
        return g

    def run(self, thread_id: str, goal: str = "") -> DesignOutcome:
        """Run (or resume) the design run ``thread_id`` to its end."""
        cfg = {"configurable": {"thread_id": thread_id}, "recursion_limit": 200}
        snapshot = self.graph.get_state(cfg)
        if snapshot.values and snapshot.next:
            state = self.graph.invoke(None, cfg)  # resume from the last checkpoint
        elif snapshot.values:
            state = snapshot.values  # already finished
        else:
            state = self.graph.invoke({"goal": goal}, cfg)
        return self._outcome(thread_id, state)

    def close(self) -> None:
        self._conn.close()

    # -- nodes ------------------------------------------------------------------------------
    def _node_select(self, state: FlowState) -> dict[str, Any]:
        parents = [r.name for r in self.selector.select_parents(self.tree, k=self.config.n_parents)]
        references = [r.name for r in self.selector.select_references(self.tree, self.config.n_references,
                                                                       exclude=parents)]
        knowledge: list[str] = []
        if self.knowledge is not None and self.config.knowledge_k:
            query = " ".join([state.get("goal", "")] + [self._design(p).summary for p in parents])
            hits = self.knowledge.search(query, k=self.config.knowledge_k, sources=self.config.knowledge_sources)
            knowledge = list(dict.fromkeys(s.render() for s in hits))
        return {"parents": parents, "references": references, "knowledge": knowledge, "reviews": [],
                "proposals": [], "attempts": [], "review_round": 0, "debug_tries": 0, "check_attempts": 0,
                "status": "proposing"}

    def _node_propose(self, state: FlowState) -> dict[str, Any]:
        feedback = [Review.model_validate(r) for r in state.get("reviews", [])]
        previous = [Proposal.model_validate(p) for p in state.get("proposals", [])]
        parents, references = state["parents"], state.get("references", [])
        context = ProposalContext(goal=state.get("goal", ""), previous=previous,
                                  scale=get_scale(self.config.check_scale),
                                  neighbours=tree_context.neighbours(self.tree, parents, k_nearest=self.config.n_nearest),
                                  results=tree_context.results(self.tree, parents + references))
        knowledge = list(state.get("knowledge", []))

        def draw(ps: list[str], rs: list[str]) -> Proposal:
            return _call(self.proposer.propose, [self._design(p) for p in ps], [self._design(r) for r in rs],
                         knowledge, feedback, context=context)

        proposal = draw(parents, references)
        if getattr(self.proposer, "cheap", False) and not feedback and self.selector.policy.surrogate:
            proposal = self._screen(proposal, parents, references, draw)
        # the proposal's own parents: a screened draft may come from other designs, and a
        # two-design edit (crossover, interleave) names its second design as a parent too
        parents = list(dict.fromkeys(p for p in proposal.parents if self.tree.has_design(p))) or parents
        dumped = proposal.model_dump(mode="json")
        return {"proposal": dumped, "proposals": [*state.get("proposals", []), dumped], "parents": parents,
                "references": [r for r in references if r not in parents],
                "review_round": state.get("review_round", 0) + 1}

    def _screen(self, first: Proposal, parents: list[str], references: list[str],
                draw: Callable[[list[str], list[str]], Proposal]) -> Proposal:
        """Draft up to ``policy.candidates`` proposals and keep the one the selector's surrogate
        ranks first (cheap proposers only: no API calls are spent on the extra drafts). The first
        comes from the step's parents; each other one, with probability ``policy.explore``, from
        parents drawn uniformly from the tree, so the screen looks across families."""
        policy = self.selector.policy
        props = [first]
        for _ in range(policy.candidates - 1):
            ps = parents
            if self.selector.rng.random() < policy.explore:
                ps = [r.name for r in self.selector.uniform_parents(self.tree, k=len(parents))]
            try:
                extra = draw(ps, [r for r in references if r not in ps])
            except Exception as exc:  # noqa: BLE001 - a draft that fails is just not a candidate
                log.debug("extra proposal failed: %s", exc)
                continue
            if extra.design is not None and all(p.design is None or p.design.fingerprint() != extra.design.fingerprint()
                                                for p in props):
                props.append(extra)
        if len(props) == 1 or any(p.design is None for p in props):
            return first
        order = self.selector.screen(self.tree, [(p.design, p.operator) for p in props])  # type: ignore[misc]
        return props[order[0]]

    def _node_review(self, state: FlowState) -> dict[str, Any]:
        proposal = Proposal.model_validate(state["proposal"])
        parents = [self._design(p) for p in state["parents"]]
        known = [r.design for r in self.tree.list_designs() if r.name not in state["parents"]]
        context = ReviewContext(parents=parents, known_designs=known,
                                known_fingerprints=set(self.tree.fingerprints()),
                                scale=get_scale(self.config.check_scale),
                                knowledge=list(state.get("knowledge", [])), goal=state.get("goal", ""),
                                neighbours=tree_context.neighbours(self.tree, state["parents"], like=proposal.design,
                                                                   k_nearest=self.config.n_nearest),
                                results=tree_context.results(self.tree, state["parents"]))
        review = self.reviewer.review(proposal, context)
        reviews = list(state.get("reviews", [])) + [review.model_dump(mode="json")]
        status = "accepted" if review.accept else "proposing"
        if not review.accept and state.get("review_round", 0) >= self.config.max_review_rounds:
            status = "rejected"
        return {"reviews": reviews, "status": status}

    def _after_review(self, state: FlowState) -> str:
        return {"accepted": "plan", "rejected": "end"}.get(state["status"], "propose")

    def _node_plan(self, state: FlowState) -> dict[str, Any]:
        proposal = Proposal.model_validate(state["proposal"])
        parents = [self._design(p) for p in state["parents"]]
        if proposal.design is not None:
            draft = proposal.design.model_copy(update={"parents": list(state["parents"])})
            known = {(n, u.source) for p in parents for n, u in p.units.items()}
            plan = [UnitPlan(name=n, role=u.role, description=f"unit {n} of {draft.name}",
                             children=dict(u.children))
                    for n, u in draft.units.items() if (n, u.source) not in known]
            draft_dict = draft.model_dump(mode="json")
        else:
            base = parents[0]
            name = _design_name(proposal.title, base.name, proposal.model_dump_json())
            draft = base.model_copy(update={"name": name, "parents": list(state["parents"]),
                                            "summary": proposal.title})
            units = proposal.units
            if self.planner is not None:
                planned = self.planner.plan(proposal, parents)
                units = planned.units or units
                if planned.root:
                    draft = draft.model_copy(update={"root": planned.root})
            draft_dict = draft.model_dump(mode="json")
            plan = _children_first(units)
        planned = [u.model_dump(mode="json") for u in plan]
        return {"draft": draft_dict, "plan": planned, "full_plan": planned, "plan_index": 0,
                "status": "implementing", "last_error": None}

    def _node_implement(self, state: FlowState) -> dict[str, Any]:
        plan = [UnitPlan.model_validate(u) for u in state.get("plan", [])]
        index = state.get("plan_index", 0)
        if index >= len(plan):
            return {"plan_index": index}
        unit = plan[index]
        remember = getattr(self.coder, "remember", None)
        if callable(remember):  # a coder that repairs by reverting to a parent's unit
            remember(*(self._design(p) for p in state["parents"]))
        draft = dict(state["draft"])
        proposal = Proposal.model_validate(state["proposal"])
        error = state.get("last_error")
        attempts = [UnitAttempt.model_validate(a) for a in state.get("attempts", [])]
        context = CoderContext(scale=get_scale(self.config.check_scale), goal=state.get("goal", ""),
                               check_table=state.get("check_table", "") if error else "",
                               traceback=state.get("traceback", "") if error else "",
                               attempts=[a for a in attempts if a.unit == unit.name and a.error])
        impl: UnitImplementation = _call(self.coder.implement, proposal, Design.model_construct(**_construct(draft)),
                                         unit, error, context=context)
        units = dict(draft["units"])
        units[impl.name] = UnitSpec(role=impl.role, source=impl.source, children=dict(impl.children),
                                    hparams=dict(impl.hparams), origin=impl.origin).model_dump(mode="json")
        target = unit.replaces or (unit.name if unit.name != impl.name else None)
        if target and target != impl.name:
            for spec in units.values():
                spec["children"] = {s: (impl.name if c == target else c) for s, c in spec["children"].items()}
            if draft["root"] == target:
                draft["root"] = impl.name
        draft["units"] = units
        written = UnitAttempt(unit=impl.name, attempt=state.get("check_attempts", 0) + 1, source=impl.source,
                              rationale=impl.rationale)
        return {"draft": draft, "plan_index": index + 1,
                "attempts": [*state.get("attempts", []), written.model_dump(mode="json")]}

    def _after_implement(self, state: FlowState) -> str:
        return "implement" if state.get("plan_index", 0) < len(state.get("plan", [])) else "check"

    def _node_check(self, state: FlowState) -> dict[str, Any]:
        attempts = state.get("check_attempts", 0) + 1
        try:
            design = Design.model_validate(_prune(state["draft"]))
        except ValidationError as exc:
            error = f"design {state['draft'].get('name')}: {exc.errors()[0]['msg']}"
            return self._failed_check(state, attempts, error, None)
        existing = self.tree.find_fingerprint(design.fingerprint())
        if existing is not None:  # the same design is in the tree already: no check, no commit
            return {"status": "duplicate", "committed": existing.name, "check_attempts": attempts,
                    "last_error": f"design is identical to {existing.name} (fingerprint {existing.fingerprint})"}
        report = self.check_fn(design, self.config.check_scale)
        report_dict = report.model_dump(mode="json")
        if report.passed:
            return {"draft": design.model_dump(mode="json"), "check": report_dict, "check_attempts": attempts,
                    "status": "checked", "last_error": None}
        return self._failed_check(state, attempts, report.first_error or "check failed", report_dict)

    def _failed_check(self, state: FlowState, attempts: int, error: str,
                      report: dict[str, Any] | None) -> dict[str, Any]:
        tries = state.get("debug_tries", 0)
        parsed = CheckReport.model_validate(report) if report is not None else None
        update: dict[str, Any] = {"check": report, "check_attempts": attempts, "last_error": error,
                                  "check_table": check_table(parsed) if parsed is not None else "",
                                  "traceback": check_traceback(parsed) if parsed is not None else "",
                                  "attempts": _reject(state.get("attempts", []), attempts, error)}
        if tries >= self.config.max_debug_tries:
            return {**update, "status": "failed"}
        full_plan = [UnitPlan.model_validate(u) for u in state.get("full_plan") or state.get("plan", [])]
        culprit = _culprit(error, full_plan, state["draft"])
        return {**update, "status": "debugging", "debug_tries": tries + 1,
                "plan": [culprit.model_dump(mode="json")], "plan_index": 0}

    def _after_check(self, state: FlowState) -> str:
        return {"debugging": "implement", "duplicate": "end"}.get(state["status"], "commit")

    def _node_commit(self, state: FlowState) -> dict[str, Any]:
        proposal = Proposal.model_validate(state["proposal"])
        reviews = [Review.model_validate(r) for r in state.get("reviews", [])]
        failed = state["status"] == "failed"
        try:
            design = Design.model_validate(_prune(state["draft"]))
        except ValidationError:
            return {"status": "failed", "committed": None}
        record = self.tree.add_design(design, proposal=proposal, reviews=reviews, check=state.get("check"),
                                      operator=proposal.operator)
        if record.name != design.name:  # another step committed the same design meanwhile
            return {"status": "duplicate", "committed": record.name,
                    "last_error": f"design is identical to {record.name} (fingerprint {record.fingerprint})"}
        self.tree.set_attempts(record.name, [UnitAttempt.model_validate(a) for a in state.get("attempts", [])])
        return {"status": "failed" if failed else "committed", "committed": record.name}

    # -- helpers ----------------------------------------------------------------------------
    def _design(self, name: str) -> Design:
        return self.tree.get_design(name).design

    @staticmethod
    def _outcome(thread_id: str, state: dict[str, Any]) -> DesignOutcome:
        proposal = state.get("proposal") or {}
        return DesignOutcome(thread_id=thread_id, status=state.get("status", "rejected"),
                             design=state.get("committed"), operator=proposal.get("operator"),
                             parents=list(state.get("parents", [])),
                             review_rounds=state.get("review_round", 0),
                             check_attempts=state.get("check_attempts", 0), error=state.get("last_error"))


def _design_name(title: str, parent: str, salt: str) -> str:
    """A short name: the title's first words and a hash (no parent prefix, so names do not grow
    with each generation; the lineage is in the tree)."""
    slug = "-".join(re.sub(r"[^a-z0-9]+", " ", title.lower()).split()[:3])[:24].strip("-") or parent.split("-")[0]
    return f"{slug}-{hashlib.sha256(salt.encode()).hexdigest()[:6]}"


def _call(method: Callable[..., Any], *args: Any, context: Any) -> Any:
    """Call an agent's method with ``context=`` when it takes one (LLM agents), else without."""
    try:
        takes = "context" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        takes = False
    return method(*args, context=context) if takes else method(*args)


def _reject(attempts: list[dict[str, Any]], check_attempt: int, error: str) -> list[dict[str, Any]]:
    """The attempts with those that went into check ``check_attempt`` marked rejected by ``error``."""
    return [{**a, "error": error} if a.get("attempt") == check_attempt and not a.get("error") else a
            for a in attempts]


def _construct(draft: dict[str, Any]) -> dict[str, Any]:
    units = {n: UnitSpec.model_construct(**u) for n, u in draft.get("units", {}).items()}
    return {**draft, "units": units}


def _children_first(units: list[UnitPlan]) -> list[UnitPlan]:
    """Order planned units so that every unit comes after the planned units it calls."""
    by_name = {u.name: u for u in units}
    order: list[UnitPlan] = []

    def visit(u: UnitPlan, stack: tuple[str, ...]) -> None:
        if u in order or u.name in stack:
            return
        for child in u.children.values():
            if child in by_name:
                visit(by_name[child], stack + (u.name,))
        order.append(u)

    for u in units:
        visit(u, ())
    return order


def _prune(draft: dict[str, Any]) -> dict[str, Any]:
    """Drop units no longer reachable from the root (e.g. ones a new unit replaced)."""
    seen = set(walk_units(_construct(draft)["units"], draft.get("root", "")))
    return {**draft, "units": {n: u for n, u in draft.get("units", {}).items() if n in seen}}


def _culprit(error: str, plan: list[UnitPlan], draft: dict[str, Any]) -> UnitPlan:
    """The unit a check error points at (a named unit if the error names one, else the last
    planned), with its original description when the proposal planned it."""
    units = draft.get("units", {})
    planned = {u.name: u for u in plan}
    for name in sorted(units, key=len, reverse=True):
        if re.search(rf"\b{re.escape(name)}\b", error):
            if name in planned:
                return planned[name]
            spec = units[name]
            return UnitPlan(name=name, role=spec["role"], children=dict(spec.get("children", {})),
                            description=f"existing unit {name} of the design, kept from the parent")
    if plan:
        return plan[-1]
    root = draft["root"]
    return UnitPlan(name=root, role=units[root]["role"], children=dict(units[root].get("children", {})),
                    description=f"root unit {root} of the design")
