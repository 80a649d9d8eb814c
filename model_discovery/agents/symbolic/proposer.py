"""SymbolicProposer: genetic programming on GAU trees (no LLM)."""

from __future__ import annotations

import random
import re

from model_discovery.agents.symbolic.config import SymbolicConfig
from model_discovery.agents.symbolic.draft import design_problems, spec_key
from model_discovery.agents.symbolic.hparams import hparams_valid
from model_discovery.agents.symbolic.operators import Edit, NotApplicable
from model_discovery.agents.symbolic.registry import OPERATORS, REGISTRY
from model_discovery.records import Design, Proposal, Review, UnitPlan

_OP_SUFFIX = re.compile(r"-(?:" + "|".join(OPERATORS) + r")-[0-9a-f]{6,}.*$")


class ProposalError(RuntimeError):
    """No operator produced a valid new design within ``max_attempts`` draws."""


def name_stem(name: str) -> str:
    """A design name without the ``-<op>-<hash>`` lineage suffixes symbolic proposals add."""
    return _OP_SUFFIX.sub("", name) or name


def changed_units(design: Design, parents: list[Design]) -> list[str]:
    """Units of ``design`` whose content appears in no parent, children before parents."""
    known = {spec_key(u) for p in parents for u in p.units.values()}
    order = list(reversed(design.walk()))
    return [n for n in order if spec_key(design.units[n]) not in known]


class SymbolicProposer:
    """Proposes designs by applying a randomly chosen GP operator to the parents.

    Operators and their relative weights come from :class:`SymbolicConfig`; a fixed
    ``config.seed`` makes the sequence of proposals reproducible. The second design for
    two-parent operators is ``parents[1]``, else the first reference; ``interleave`` also works
    on one parent (hybrid of the parent and a mixer-swapped copy of it).
    """

    #: proposals cost no API call, so the design flow may draw several and pre-screen them
    cheap = True

    def __init__(self, config: SymbolicConfig | None = None) -> None:
        self.config = config or SymbolicConfig()
        self.rng = random.Random(self.config.seed)

    def _weights(self, two: bool, feedback: list[Review]) -> dict[str, float]:
        weights = {op: w for op, w in self.config.operator_weights.items() if w > 0}
        if not two:
            weights.pop("crossover", None)
        text = " ".join(r for review in feedback for r in review.reasons).lower()
        if "above" in text or "too large" in text:  # over budget: favour shrinking edits
            for op in ("insert", "interleave"):
                if op in weights:
                    weights[op] *= 0.25
        if "below" in text or "too small" in text:
            for op in ("remove",):
                if op in weights:
                    weights[op] *= 0.25
        return weights

    def apply(self, operator: str, a: Design, b: Design | None = None) -> Edit:
        """Apply one named operator (raises :class:`NotApplicable`)."""
        if operator not in REGISTRY:
            raise ValueError(f"unknown operator {operator!r}; known: {', '.join(OPERATORS)}")
        return REGISTRY[operator](self.rng, a, b)

    def build(self, operator: str, a: Design, b: Design | None = None) -> Proposal:
        """One proposal from one operator, validated statically (raises on failure)."""
        edit = self.apply(operator, a, b)
        parents = [a] + ([b] if b is not None and operator in ("interleave", "crossover", "cross_unit") else [])
        # each parent's first family only, so names do not grow from generation to generation
        stem = "+".join(dict.fromkeys(name_stem(p.name).split("+")[0] for p in parents))
        draft_design = edit.draft.to_design(f"{stem}-{operator}-pending", [p.name for p in parents], edit.change)
        fp = draft_design.fingerprint()
        if fp in {p.fingerprint() for p in parents}:
            raise NotApplicable("the edit left the design unchanged")
        lineage = " x ".join(p.name for p in parents)
        design = draft_design.model_copy(update={
            "name": f"{stem}-{operator}-{fp[:6]}",
            "summary": f"{operator} of {lineage}: {edit.change}."})
        problems = design_problems(design) + [f"unit {n}: {p}" for n in design.units
                                              for p in hparams_valid(design.units[n].hparams)]
        if problems:
            raise NotApplicable("; ".join(problems))
        plans = [UnitPlan(name=n, role=design.units[n].role, children=dict(design.units[n].children),
                          description=f"{design.units[n].doc or n} ({edit.change})",
                          replaces=edit.replaced.get(n))
                 for n in changed_units(design, parents)]
        return Proposal(
            title=f"{operator}: {edit.change}",
            motivation=f"Explore the neighbourhood of {lineage} with a {operator} edit of its GAU tree.",
            change=edit.change, operator=operator, parents=[p.name for p in parents], units=plans,
            design=design)

    def propose(self, parents: list[Design], references: list[Design], knowledge: list[str],
                feedback: list[Review]) -> Proposal:
        """A new design from ``parents`` (and ``references``) by a weighted random operator."""
        if not parents:
            raise ProposalError("the symbolic proposer needs at least one parent design")
        a = parents[0]
        b = parents[1] if len(parents) > 1 else (references[0] if references else None)
        weights = self._weights(b is not None, feedback)
        errors: list[str] = []
        for _ in range(self.config.max_attempts):
            ops = sorted(weights)
            op = self.rng.choices(ops, weights=[weights[o] for o in ops])[0]
            try:
                return self.build(op, a, b)
            except (NotApplicable, ValueError) as exc:
                errors.append(f"{op}: {' '.join(str(exc).split())[:160]}")
        raise ProposalError(f"no valid proposal from {a.name} in {self.config.max_attempts} attempts: "
                            + " | ".join(errors[-4:]))
