"""SymbolicReviewer: duplicate, no-op and size gates, then a rating from novelty, fit and prior."""

from __future__ import annotations

import math
from collections import Counter

from model_discovery.agents.symbolic.config import SymbolicConfig
from model_discovery.agents.symbolic.params import ParamEstimate, count_params
from model_discovery.agents.symbolic.draft import catalogue_keys
from model_discovery.agents.symbolic.source import base_name, source_key
from model_discovery.genome.invent import unit_fingerprint
from model_discovery.records import Design, Proposal, Review, ReviewContext

_HPARAM_WEIGHT = 0.5


def design_features(design: Design) -> Counter[str]:
    """Weighted feature multiset of a design: units by role, role->unit wiring, hyperparameters.

    Unit identities use base names (``Foo_2`` counts as ``Foo``) so renaming alone is no change.
    A unit referenced from several slots counts once per reference.
    """
    feats: Counter[str] = Counter()
    refs = [("", "", design.root)]
    for name in design.walk():
        refs += [(name, slot, child) for slot, child in design.units[name].children.items()]
    for parent, slot, child in refs:
        unit = design.units[child]
        feats[f"unit:{unit.role}:{base_name(child)}"] += 1
        if parent:
            feats[f"wire:{base_name(parent)}.{slot}->{base_name(child)}"] += 1
    for name in design.walk():
        for key, value in sorted(design.units[name].hparams.items()):
            feats[f"hp:{base_name(name)}.{key}={value!r}"] += 1
    return feats


def _weight(feature: str) -> float:
    return _HPARAM_WEIGHT if feature.startswith("hp:") else 1.0


def feature_distance(a: Counter[str], b: Counter[str]) -> float:
    """Weighted multiset Jaccard distance in [0, 1] (0: same structure)."""
    keys = set(a) | set(b)
    inter = sum(_weight(k) * min(a[k], b[k]) for k in keys)
    union = sum(_weight(k) * max(a[k], b[k]) for k in keys)
    return 0.0 if union == 0 else 1.0 - inter / union


def novelty(design: Design, known: list[Design]) -> float:
    """Distance from ``design`` to the nearest of ``known`` (1.0 when nothing is known)."""
    if not known:
        return 1.0
    feats = design_features(design)
    return min(feature_distance(feats, design_features(k)) for k in known)


def duplicate_units(design: Design, parents: list[Design], known: list[Design]) -> list[str]:
    """Invented units of ``design`` that already exist: same genome or same source modulo renaming.

    A unit is invented when it records an origin and its source is in no parent. It duplicates a
    unit of a known design (or a catalogue unit) with the same genome fingerprint or the same
    canonical source, whatever either is called.
    """
    in_parents = {source_key(u.source) for p in parents for u in p.units.values()}
    seen: dict[str, str] = {key: "a catalogue unit" for key in catalogue_keys()}
    for other in known:
        for name, unit in other.units.items():
            if unit.origin is None:
                continue
            where = f"unit {name} of {other.name}"
            seen.setdefault(source_key(unit.source), where)
            fp = unit_fingerprint(unit)
            if fp is not None:
                seen.setdefault(f"genome:{fp}", where)
    out = []
    for name, unit in design.units.items():
        key = source_key(unit.source)
        if unit.origin is None or key in in_parents:
            continue
        fp = unit_fingerprint(unit)
        match = seen.get(key) or (seen.get(f"genome:{fp}") if fp is not None else None)
        if match:
            out.append(f"unit {name} duplicates {match}")
    return out


def size_fit(n_params: int, limits: tuple[int, int]) -> float:
    """1 at the geometric middle of the allowed band, falling to 0 at its edges (and outside)."""
    lo, hi = limits
    if n_params <= 0 or not lo < n_params < hi:
        return 0.0
    mid = math.sqrt(lo * hi)
    half = math.log(hi / mid)
    return max(0.0, 1.0 - abs(math.log(n_params / mid)) / half)


class SymbolicReviewer:
    """Reviews proposals without an LLM.

    Hard rejections (rating 1): exact duplicates of designs in the tree, invented units that
    duplicate a known unit by genome or canonical source (:func:`duplicate_units`), structural no-ops
    (no difference from a parent beyond names), and designs whose non-embedding parameter count
    at ``context.scale`` lies outside ``scale.param_limits()``. Otherwise
    ``rating = 1 + 4 * weighted mean(novelty, size fit, operator prior)`` and the proposal is
    accepted when the rating reaches ``config.accept_threshold``.
    """

    def __init__(self, config: SymbolicConfig | None = None) -> None:
        self.config = config or SymbolicConfig()

    def estimate(self, design: Design, context: ReviewContext) -> ParamEstimate | None:
        if context.scale is None:
            return None
        return count_params(design, context.scale, meta_build=self.config.meta_build)

    def review(self, proposal: Proposal, context: ReviewContext) -> Review:
        prior = self.config.operator_priors.get(proposal.operator, 0.5)
        design = proposal.design
        if design is None:  # a plan without a design: judge the plan alone
            rating = 1.0 + 4.0 * prior if proposal.units else 1.0
            reasons = ["no complete design to inspect; rated on the operator prior"] if proposal.units \
                else ["the proposal plans no units and carries no design"]
            return Review(rating=rating, accept=rating >= self.config.accept_threshold, novelty=0.5, reasons=reasons)
        known = list(context.parents) + list(context.known_designs)
        fp = design.fingerprint()
        if fp in context.known_fingerprints or fp in {k.fingerprint() for k in known}:
            return Review(rating=1, accept=False, novelty=0.0,
                          reasons=[f"duplicate: fingerprint {fp} is already in the tree"],
                          suggestions=["apply a different operator or edit another unit"])
        dup_units = duplicate_units(design, list(context.parents), known)
        if dup_units:
            return Review(rating=1, accept=False, novelty=0.0, reasons=["duplicate " + "; ".join(dup_units)],
                          suggestions=["mutate the invented unit's genome or edit another unit"])
        feats = design_features(design)
        if any(feature_distance(feats, design_features(p)) == 0.0 for p in context.parents):
            return Review(rating=1, accept=False, novelty=0.0,
                          reasons=["structural no-op: same units, wiring and hyperparameters as a parent"],
                          suggestions=["change a unit, its wiring or a hyperparameter"])
        nov = novelty(design, known)
        reasons = [f"novelty {nov:.2f} against {len(known)} known designs", f"operator {proposal.operator} prior {prior:.2f}"]
        fit = 0.5
        est = self.estimate(design, context)
        if est is not None and context.scale is not None:
            lo, hi = context.scale.param_limits()
            where = f"{est.n_params:,} non-embedding params at {context.scale.name} ({est.method})"
            if est.n_params > hi:
                return Review(rating=1, accept=False, novelty=nov,
                              reasons=[f"{where} is above the limit {hi:,}"] + ([est.note] if est.note else []),
                              suggestions=["shrink an expansion ratio or remove a combinator"])
            if est.n_params < lo:
                return Review(rating=1, accept=False, novelty=nov,
                              reasons=[f"{where} is below the limit {lo:,}"] + ([est.note] if est.note else []),
                              suggestions=["widen an expansion ratio or add a unit"])
            fit = size_fit(est.n_params, (lo, hi))
            reasons.append(f"{where}: size fit {fit:.2f} in [{lo:,}, {hi:,}]")
        c = self.config
        total = c.novelty_weight + c.size_weight + c.prior_weight or 1.0
        score = (c.novelty_weight * nov + c.size_weight * fit + c.prior_weight * prior) / total
        rating = round(min(5.0, max(1.0, 1.0 + 4.0 * score)), 3)
        accept = rating >= c.accept_threshold
        suggestions = [] if accept else ["try a structurally larger change (swap a mixer, crossover, interleave)"]
        return Review(rating=rating, accept=accept, novelty=round(nov, 4), reasons=reasons, suggestions=suggestions)
