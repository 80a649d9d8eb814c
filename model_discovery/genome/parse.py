"""Unit source -> genome: read back the genome a generated unit was made from.

A generated unit states its genome in its ``GENOME`` class attribute (a literal, read with
``ast.literal_eval``; the source is never executed). :func:`parse_genome` also regenerates the
code from that genome and compares it with the source modulo formatting and comments, so a unit
whose code was edited after generation is reported as such rather than trusted.
"""

from __future__ import annotations

import ast

from pydantic import ValidationError

from model_discovery.errors import one_line
from model_discovery.genome.codegen import generate
from model_discovery.genome.spec import ChannelGenome, MixerGenome, genome_from_json
from model_discovery.records.design import normalise_source


class GenomeParseError(ValueError):
    """The source carries no genome, an invalid one, or code that its genome does not generate."""


def _genome_literal(source: str) -> tuple[str, object] | None:
    """(class name, GENOME literal) of the first class that assigns ``GENOME`` in its body."""
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt in node.body:
            if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                    and stmt.targets[0].id == "GENOME"):
                return node.name, ast.literal_eval(stmt.value)
    return None


def parse_genome(source: str, strict: bool = True) -> MixerGenome | ChannelGenome:
    """The genome of a generated unit's ``source``.

    With ``strict`` the source must be exactly what the genome generates (up to comments,
    docstrings and layout); raises :class:`GenomeParseError` with a one-line reason otherwise.
    """
    try:
        found = _genome_literal(source)
    except (SyntaxError, ValueError) as exc:
        raise GenomeParseError(f"unit source: cannot read GENOME: {one_line(exc)}") from exc
    if found is None:
        raise GenomeParseError("unit source: no class assigns a GENOME literal (not a generated unit)")
    name, literal = found
    try:
        genome = genome_from_json(literal)
    except ValidationError as exc:
        raise GenomeParseError(f"unit {name}: field GENOME: {one_line(exc, limit=None, with_type=False)}") from exc
    if strict and normalise_source(generate(genome, name)) != normalise_source(source):
        raise GenomeParseError(f"unit {name}: its code differs from what its GENOME generates (edited by hand?)")
    return genome
