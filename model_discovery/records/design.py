"""Designs as data: a root unit name plus named units (source, role, children, hyperparameters).

A :class:`Design` is what the evolution tree stores (as JSON), what agents edit, and what
:mod:`model_discovery.gau.compose` turns into one self-contained Python module.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model_discovery.errors import one_line
from model_discovery.safe_io import write_text

Role = Literal["block", "mixer", "channel_mixer", "norm", "positional", "other"]
ROLES: tuple[str, ...] = ("block", "mixer", "channel_mixer", "norm", "positional", "other")
HParam = Union[bool, int, float, str]


class DesignError(ValueError):
    """A design is malformed; the message names the design and the offending unit/field."""


class UnitOrigin(BaseModel):
    """How an invented unit came to be: the genome it was generated from and the edit that made it.

    ``genome`` is the JSON form of a :mod:`model_discovery.genome` unit genome (None for a unit
    made by a code-level edit of a unit that has no genome); ``parents`` names the units it was
    derived from (empty for a freshly sampled genome).
    """

    model_config = ConfigDict(extra="forbid")

    operator: str = Field(description="genome or code operator, e.g. sample, point, subtree, crossover, code")
    edit: str = Field(description="one line: what the operator changed")
    parents: list[str] = Field(default_factory=list, description="units this one was derived from")
    genome: dict[str, object] | None = Field(None, description="unit genome (JSON) the source was generated from")


class UnitSpec(BaseModel):
    """One unit of a design: the source of one ``GAUBase`` subclass named like the unit."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    source: str = Field(description="Python source defining `class <name>(GAUBase)`")
    children: dict[str, str] = Field(default_factory=dict, description="slot -> unit name")
    hparams: dict[str, HParam] = Field(default_factory=dict)
    doc: str = ""
    origin: UnitOrigin | None = Field(None, description="genome and lineage of an invented unit (None: catalogue "
                                                        "or hand-written)")


class Design(BaseModel):
    """A tree of GAUs rooted at a block unit."""

    model_config = ConfigDict(extra="forbid")

    name: str
    root: str
    units: dict[str, UnitSpec]
    parents: list[str] = Field(default_factory=list)
    summary: str = ""

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v) or "/" in v:
            raise ValueError("design name must be non-empty with no whitespace or '/'")
        return v

    @model_validator(mode="after")
    def _structure(self) -> "Design":
        problems = self.structure_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def structure_problems(self) -> list[str]:
        """Wiring errors: unknown root/children, cycles, unreachable units, root not a block."""
        out: list[str] = []
        if self.root not in self.units:
            return [f"root {self.root!r} is not among units {sorted(self.units)}"]
        if self.units[self.root].role != "block":
            out.append(f"root unit {self.root!r} has role {self.units[self.root].role!r}, expected 'block'")
        for uname, unit in self.units.items():
            if not uname.isidentifier():
                out.append(f"unit name {uname!r} is not a Python identifier")
            for slot, child in unit.children.items():
                if child not in self.units:
                    out.append(f"unit {uname!r} slot {slot!r} names unknown unit {child!r}")
        if out:
            return out
        seen: set[str] = set()

        def visit(name: str, stack: tuple[str, ...]) -> None:
            if name in stack:
                out.append(f"cycle in unit tree: {' -> '.join(stack + (name,))}")
                return
            seen.add(name)
            for child in self.units[name].children.values():
                visit(child, stack + (name,))

        visit(self.root, ())
        for uname in sorted(set(self.units) - seen):
            out.append(f"unit {uname!r} is not reachable from root {self.root!r}")
        return out

    # -- identity ---------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Content hash of the wiring and normalised sources (name and lineage excluded)."""
        payload = {
            "root": self.root,
            "units": {n: {"role": u.role, "children": u.children, "hparams": u.hparams,
                          "source": normalise_source(u.source)} for n, u in sorted(self.units.items())},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

    def walk(self) -> list[str]:
        """Unit names in depth-first order from the root (each once)."""
        return walk_units(self.units, self.root)

    # -- persistence ------------------------------------------------------------------------
    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent)

    @classmethod
    def from_json(cls, text: str, origin: str = "<string>") -> "Design":
        try:
            return cls.model_validate_json(text)
        except Exception as exc:  # pydantic.ValidationError or JSON error
            raise DesignError(f"{origin}: invalid design: {one_line(exc, limit=None, with_type=False)}") from exc

    @classmethod
    def load(cls, path: str | Path) -> "Design":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise DesignError(f"{path}: cannot read design: {exc.strerror}") from exc
        return cls.from_json(text, origin=str(path))

    def save(self, path: str | Path) -> Path:
        return write_text(path, self.to_json())


def walk_units(units: Mapping[str, UnitSpec], start: str) -> list[str]:
    """Names of ``start`` and every unit below it, depth-first, each once (unknown names skipped)."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name not in units:
            return
        order.append(name)
        for child in units[name].children.values():
            visit(child)

    visit(start)
    return order


def used_slots(source: str) -> list[str]:
    """Literal slot names passed to ``self.build_child(...)`` in ``source``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return list(dict.fromkeys(
        node.args[0].value for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "build_child"
        and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)))


@lru_cache(maxsize=4096)
def normalise_source(source: str) -> str:
    """Source with comments, docstrings and formatting removed (for duplicate detection)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source.strip()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


