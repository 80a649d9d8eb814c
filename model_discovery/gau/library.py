"""The seed library on disk: unit catalogue by role, seed designs, paper notes.

Layout (``library/`` at the repository root, or ``$MODIS_LIBRARY``)::

    library/units/<role>/<UnitName>.py   one GAUBase subclass per file, role = folder name
    library/seeds/<seed>.yaml            name, summary, notes, root, units: {Name: {children, hparams}}
    library/notes/<seed>.md              paper, arXiv id, the idea in our own words
"""

from __future__ import annotations

import ast
import os
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model_discovery.errors import field_error
from model_discovery.records import ROLES, Design, DesignError, UnitSpec
from model_discovery.records.design import HParam, used_slots


def library_root() -> Path:
    env = os.environ.get("MODIS_LIBRARY")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "library"


class CatalogueUnit(BaseModel):
    """A unit in the catalogue: its source, role, child slots and hyperparameter defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str
    role: str
    path: Path
    source: str
    slots: list[str]
    defaults: dict[str, HParam]
    doc: str

    def spec(self, children: dict[str, str] | None = None, hparams: dict[str, HParam] | None = None) -> UnitSpec:
        return UnitSpec(role=self.role, source=self.source, children=dict(children or {}),
                        hparams={**self.defaults, **(hparams or {})}, doc=self.doc)


class SeedUnitEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    children: dict[str, str] = Field(default_factory=dict)
    hparams: dict[str, HParam] = Field(default_factory=dict)


class SeedFile(BaseModel):
    """Schema of ``library/seeds/<seed>.yaml``."""

    model_config = ConfigDict(extra="forbid")
    name: str
    summary: str
    notes: str
    root: str
    units: dict[str, SeedUnitEntry]


def class_init_defaults(cls_node: ast.ClassDef) -> dict[str, HParam]:
    """Literal keyword defaults of the class's ``__init__``: its hyperparameters (``d_model``,
    ``block_loc``, ``ctx`` and ``None`` defaults excluded)."""
    for node in cls_node.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            args = node.args
            out: dict[str, HParam] = {}
            pos = args.args[len(args.args) - len(args.defaults):]
            for arg, default in list(zip(pos, args.defaults)) + list(zip(args.kwonlyargs, args.kw_defaults)):
                if arg.arg in ("d_model", "block_loc", "ctx") or default is None:
                    continue
                if isinstance(default, ast.Constant) and isinstance(default.value, (bool, int, float, str)):
                    out[arg.arg] = default.value
            return out
    return {}


def parse_unit_file(path: Path) -> CatalogueUnit:
    """Read one catalogue file; errors name the file."""
    source = path.read_text()
    name, role = path.stem, path.parent.name
    if role not in ROLES:
        raise DesignError(f"{path}: folder {role!r} is not a role ({', '.join(ROLES)})")
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise DesignError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if cls is None:
        raise DesignError(f"{path}: defines no class named {name!r}")

    doc = (ast.get_docstring(tree) or ast.get_docstring(cls) or "").strip()
    return CatalogueUnit(name=name, role=role, path=path, source=source, slots=used_slots(source),
                         defaults=class_init_defaults(cls), doc=doc)


@lru_cache(maxsize=4)
def _catalogue(root: Path) -> dict[str, CatalogueUnit]:
    units: dict[str, CatalogueUnit] = {}
    for path in sorted((root / "units").glob("*/*.py")):
        unit = parse_unit_file(path)
        if unit.name in units:
            raise DesignError(f"{path}: unit {unit.name!r} also defined in {units[unit.name].path}")
        units[unit.name] = unit
    return units


def catalogue(role: str | None = None) -> dict[str, CatalogueUnit]:
    """All catalogue units (optionally of one role), by name."""
    units = _catalogue(library_root())
    return {n: u for n, u in units.items() if role is None or u.role == role}


def list_seeds() -> list[str]:
    return sorted(p.stem for p in (library_root() / "seeds").glob("*.yaml"))


def seed_notes(name: str) -> str:
    seed = _seed_file(name)
    path = library_root() / "notes" / seed.notes
    return path.read_text() if path.exists() else ""


def _seed_file(name: str) -> SeedFile:
    path = library_root() / "seeds" / f"{name}.yaml"
    if not path.exists():
        raise DesignError(f"unknown seed {name!r}; known seeds: {', '.join(list_seeds())}")
    try:
        return SeedFile.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        raise DesignError(f"{path}: {field_error(exc)}") from exc


def load_seed(name: str) -> Design:
    """Build the seed design ``name`` from its YAML and the unit catalogue."""
    seed = _seed_file(name)
    cat = catalogue()
    units: dict[str, UnitSpec] = {}
    for uname, entry in seed.units.items():
        if uname not in cat:
            raise DesignError(f"seeds/{name}.yaml: unit {uname!r} is not in library/units")
        units[uname] = cat[uname].spec(entry.children, entry.hparams)
    try:
        return Design(name=seed.name, root=seed.root, units=units, summary=seed.summary)
    except ValidationError as exc:
        raise DesignError(f"seeds/{name}.yaml: {exc.errors()[0]['msg']}") from exc


def load_design(ref: str) -> Design:
    """A design from a JSON path or a seed name."""
    path = Path(ref)
    if path.suffix == ".json" or path.exists():
        return Design.load(path)
    return load_seed(ref)
