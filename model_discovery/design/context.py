"""What the design flow reads from the tree for its agents: siblings and nearest designs with
their fitness and status, and the verification results of parents and references with the
observer's notes.

Two designs are compared by their units: a unit is its name and normalised source
(:func:`~model_discovery.records.design.normalise_source`, the tree's notion of "same source"),
and the similarity is shared units over all units (Jaccard).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_discovery.records import Design, DesignDigest, DesignRecord, ResultDigest
from model_discovery.records.design import normalise_source

#: the observer's note beside a verification's result (written by the system, read here)
OBSERVATION_FILE = "observation.md"


def unit_keys(design: Design) -> set[tuple[str, str]]:
    """(name, normalised source) of every unit of ``design``."""
    return {(n, normalise_source(u.source)) for n, u in design.units.items()}


def similarity(a: set[tuple[str, str]], b: set[tuple[str, str]]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _fitness(tree: Any, name: str) -> dict[str, float | None]:
    return {r.scale: r.fitness for r in tree.results(name)}


def digest(tree: Any, record: DesignRecord, relation: str, sim: float | None = None) -> DesignDigest:
    """One design of the tree as agents see it."""
    d = record.design
    return DesignDigest(name=record.name, relation=relation, status=record.status, operator=record.operator,
                        summary=record.summary or d.summary, parents=list(record.parents), units=d.walk(),
                        similarity=None if sim is None else round(sim, 3), fitness=_fitness(tree, record.name))


def neighbours(tree: Any, parents: list[str], like: Design | None = None, k_nearest: int = 4,
               max_siblings: int = 8) -> list[DesignDigest]:
    """Siblings (designs sharing a parent with ``parents``) and the ``k_nearest`` other designs
    most similar to ``like`` (default: the first parent), excluding the parents themselves."""
    records = {r.name: r for r in tree.list_designs()}
    if like is None and parents and parents[0] in records:
        like = records[parents[0]].design
    keys = unit_keys(like) if like is not None else set()
    out: list[DesignDigest] = []
    sibling_names = list(dict.fromkeys(c for p in parents for c in tree.children(p) if c not in parents))
    for name in sibling_names[-max_siblings:]:  # the newest siblings
        rec = records.get(name)
        if rec is not None:
            out.append(digest(tree, rec, "sibling", similarity(keys, unit_keys(rec.design)) if keys else None))
    if keys and k_nearest > 0:
        taken = set(parents) | set(sibling_names)
        scored = sorted(((similarity(keys, unit_keys(r.design)), n) for n, r in records.items() if n not in taken),
                        key=lambda t: (-t[0], t[1]))
        out += [digest(tree, records[n], "nearest", s) for s, n in scored[:k_nearest]]
    return out


def _note(out_dir: str) -> str:
    if not out_dir:
        return ""
    try:
        return (Path(out_dir) / OBSERVATION_FILE).read_text().strip()
    except OSError:
        return ""


def results(tree: Any, names: list[str]) -> list[ResultDigest]:
    """Every verification of ``names`` (all rungs): fitness, losses, scores, the observer's note."""
    out = []
    for name in names:
        for row in tree.results(name):
            res = row.result
            out.append(ResultDigest(design=name, scale=row.scale, status=row.status, fitness=row.fitness,
                                    fitness_se=row.fitness_se, final_val_loss=res.final_val_loss,
                                    eval_metrics=dict(res.eval_metrics), probe_scores=dict(res.probe_scores),
                                    error=res.error, note=_note(res.out_dir)))
    return out
