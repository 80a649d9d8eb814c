"""Operators on genomes: random sampling, point mutation, subtree replacement, crossover.

All four read the allowed values from the gene models themselves (``Literal`` and ``bool``
annotations, ``choices`` in a field's schema extra, discriminated unions of gene classes), so a
primitive added to a union is sampled and mutated with no change here. Every operator returns a
:class:`GenomeEdit`: the new genome and one line saying what changed.
"""

from __future__ import annotations

import random
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel

from model_discovery.genome.spec import ChannelGenome, Gene, MixerGenome

Genome = Union[MixerGenome, ChannelGenome]
Path = tuple[str, ...]


class GenomeOperatorError(ValueError):
    """The operator cannot produce a different genome from these inputs."""


@dataclass(frozen=True)
class GenomeEdit:
    """A genome produced by an operator and what the operator did."""

    genome: Genome
    operator: str
    edit: str


def _alternatives(model: type[BaseModel], field: str) -> list[Any] | None:
    """Allowed scalar values of ``model.field`` (None when the field is a gene or a union of genes)."""
    info = model.model_fields[field]
    ann = info.annotation
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "choices" in extra:
        return list(extra["choices"])  # type: ignore[arg-type]
    if ann is bool:
        return [False, True]
    if typing.get_origin(ann) is Literal:
        return list(typing.get_args(ann))
    return None


def _gene_classes(model: type[BaseModel], field: str) -> list[type[Gene]]:
    """Gene classes a field may hold (the members of its union, or its one class)."""
    ann = model.model_fields[field].annotation
    members = typing.get_args(ann) if typing.get_origin(ann) is Union else (ann,)
    return [m for m in members if isinstance(m, type) and issubclass(m, Gene)]


def sample(cls: type[Gene], rng: random.Random) -> Gene:
    """A random gene of class ``cls``: every scalar drawn from its choices, every union from its members."""
    values: dict[str, Any] = {}
    for field in cls.model_fields:
        if field == "kind":
            continue
        options = _alternatives(cls, field)
        if options is not None:
            values[field] = rng.choice(options)
        else:
            values[field] = sample(rng.choice(_gene_classes(cls, field)), rng)
    return cls(**values)


def random_genome(rng: random.Random, kind: str | None = None) -> Genome:
    """A random mixer or channel genome (``kind`` 'mixer' or 'channel'; None: either)."""
    cls = {"mixer": MixerGenome, "channel": ChannelGenome}.get(kind or rng.choice(["mixer", "channel"]))
    if cls is None:
        raise GenomeOperatorError(f"unknown genome kind {kind!r}; known: mixer, channel")
    return sample(cls, rng)  # type: ignore[return-value]


def _get(gene: Gene, path: Path) -> Any:
    for part in path:
        gene = getattr(gene, part)
    return gene


def _set(gene: Gene, path: Path, value: Any) -> Gene:
    if not path:
        return value
    head, rest = path[0], path[1:]
    return gene.model_copy(update={head: _set(getattr(gene, head), rest, value)})


def _sites(gene: Gene, prefix: Path = ()) -> tuple[list[tuple[Path, list[Any]]], list[tuple[Path, list[type[Gene]]]]]:
    """(scalar sites with their alternatives, gene sites with their classes) below ``gene``."""
    scalars: list[tuple[Path, list[Any]]] = []
    subtrees: list[tuple[Path, list[type[Gene]]]] = []
    cls = type(gene)
    for field in cls.model_fields:
        if field == "kind":
            continue
        options = _alternatives(cls, field)
        path = prefix + (field,)
        if options is not None:
            scalars.append((path, options))
        else:
            subtrees.append((path, _gene_classes(cls, field)))
            s, t = _sites(getattr(gene, field), path)
            scalars += s
            subtrees += t
    return scalars, subtrees


def _label(path: Path) -> str:
    return ".".join(path)


def point_mutation(rng: random.Random, genome: Genome) -> GenomeEdit:
    """Change one scalar gene (an activation, a head count, a flag, a width) to another allowed value."""
    scalars, _ = _sites(genome)
    rng.shuffle(scalars)
    for path, options in scalars:
        current = _get(genome, path)
        others = [o for o in options if o != current]
        if others:
            new = rng.choice(others)
            return GenomeEdit(_set(genome, path, new), "point", f"{_label(path)}: {current!r} -> {new!r}")  # type: ignore[arg-type]
    raise GenomeOperatorError("the genome has no scalar gene with an alternative value")


def subtree_replacement(rng: random.Random, genome: Genome) -> GenomeEdit:
    """Replace one gene (featurizer, token mixer, decay, combination, structure) by a random one of another kind."""
    _, subtrees = _sites(genome)
    rng.shuffle(subtrees)
    for path, classes in subtrees:
        current = _get(genome, path)
        others = [c for c in classes if c is not type(current)]
        if others:
            new = sample(rng.choice(others), rng)
            return GenomeEdit(_set(genome, path, new), "subtree",  # type: ignore[arg-type]
                              f"{_label(path)}: {current.kind} -> {new.kind}")  # type: ignore[attr-defined]
    raise GenomeOperatorError("the genome has no gene with an alternative kind")


def crossover(rng: random.Random, a: Genome, b: Genome) -> GenomeEdit:
    """Uniform crossover of two genomes of one kind: each top-level gene from ``a`` or ``b``.

    The child differs from both parents when they differ in at least two top-level genes;
    otherwise one differing scalar inside the shared genes is taken from ``b``.
    """
    if type(a) is not type(b):
        raise GenomeOperatorError(f"cannot cross a {a.kind} genome with a {b.kind} genome")
    fields = [f for f in type(a).model_fields if f != "kind" and getattr(a, f) != getattr(b, f)]
    if not fields:
        raise GenomeOperatorError("the two genomes are identical")
    if len(fields) >= 2:
        taken = rng.sample(fields, rng.randint(1, len(fields) - 1))
        child = a.model_copy(update={f: getattr(b, f) for f in taken})
        return GenomeEdit(child, "crossover", f"{', '.join(sorted(taken))} from the second parent")
    scalars_a = dict(_sites(a)[0])
    differing = [p for p in scalars_a if _has(b, p) and _get(a, p) != _get(b, p)]
    if not differing:  # one gene of different kinds: the child is b's gene inside a, i.e. b itself
        raise GenomeOperatorError("the genomes differ in one gene only; crossover would copy a parent")
    path = rng.choice(differing)
    child = _set(a, path, _get(b, path))
    return GenomeEdit(child, "crossover", f"{_label(path)} from the second parent")  # type: ignore[arg-type]


def _has(gene: Gene, path: Path) -> bool:
    try:
        _get(gene, path)
    except AttributeError:
        return False
    return True


def mutate(rng: random.Random, genome: Genome) -> GenomeEdit:
    """A point mutation or a subtree replacement, chosen at random."""
    ops = [point_mutation, subtree_replacement]
    rng.shuffle(ops)
    for op in ops:
        try:
            return op(rng, genome)
        except GenomeOperatorError:
            continue
    raise GenomeOperatorError("no mutation applies to the genome")
