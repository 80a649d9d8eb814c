"""Source-level tools for symbolic edits: ast-based renaming and identity modulo renaming.

Units taken from different designs may share a name while differing in code or wiring; merging
them into one design means renaming one unit *and* its class, plus any other top-level name of
its source that another unit already defines (compiled designs need unique top-level names).
Renaming is done at the positions the ``ast`` reports, so comments and layout survive.
"""

from __future__ import annotations

import ast
import hashlib
import re
from functools import lru_cache

from model_discovery.gau.compose import strip_internal_imports, top_level_names
from model_discovery.gau.library import class_init_defaults
from model_discovery.records.design import HParam, normalise_source

#: Module-level metadata constant a combinator unit may define to declare its slots' roles.
SLOT_ROLES_NAME = "SLOT_ROLES"
_SUFFIX = re.compile(r"_\d+$")


def base_name(name: str) -> str:
    """A unit name without the ``_<n>`` suffix added when it was forked or renamed."""
    return _SUFFIX.sub("", name) or name


def fresh_name(name: str, taken: set[str]) -> str:
    """``name`` if free, else ``<base>_<n>`` with the smallest free ``n >= 2``."""
    if name not in taken:
        return name
    base = base_name(name)
    n = 2
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


def _def_name_offsets(source: str) -> dict[tuple[int, str], tuple[int, int]]:
    """(lineno, name) of each ``def``/``class`` statement -> (line, byte column) of its name."""
    out: dict[tuple[int, str], tuple[int, int]] = {}
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            line = lines[node.lineno - 1].encode()
            m = re.search(rb"\b(?:def|class)\s+(" + re.escape(node.name.encode()) + rb")\b", line)
            if m:
                out[(node.lineno, node.name)] = (node.lineno, m.start(1))
    return out


def rename_identifiers(source: str, mapping: dict[str, str]) -> str:
    """Rename module-level identifiers in ``source`` (classes, functions, globals) by ``mapping``.

    Every ``Name`` node, ``def``/``class`` name and ``global`` statement that refers to an old
    name is rewritten in place; attribute names (``obj.name``) and keyword arguments are left
    alone, since they are not references to the module-level binding.
    """
    mapping = {k: v for k, v in mapping.items() if k != v}
    if not mapping:
        return source
    tree = ast.parse(source)
    edits: list[tuple[int, int, str, str]] = []  # (line, byte col, old, new)
    defs = _def_name_offsets(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in mapping:
            edits.append((node.lineno, node.col_offset, node.id, mapping[node.id]))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in mapping:
            pos = defs.get((node.lineno, node.name))
            if pos:
                edits.append((pos[0], pos[1], node.name, mapping[node.name]))
        elif isinstance(node, ast.Global):
            for name in node.names:
                if name in mapping:
                    line = source.splitlines()[node.lineno - 1].encode()
                    m = re.search(rb"\b" + re.escape(name.encode()) + rb"\b", line[node.col_offset:])
                    if m:
                        edits.append((node.lineno, node.col_offset + m.start(), name, mapping[name]))
    lines = source.splitlines(keepends=True)
    by_line: dict[int, list[tuple[int, str, str]]] = {}
    for lineno, col, old, new in edits:
        by_line.setdefault(lineno, []).append((col, old, new))
    for lineno, items in by_line.items():
        raw = lines[lineno - 1].encode()
        for col, old, new in sorted(set(items), reverse=True):
            if raw[col:col + len(old.encode())] == old.encode():
                raw = raw[:col] + new.encode() + raw[col + len(old.encode()):]
        lines[lineno - 1] = raw.decode()
    out = "".join(lines)
    ast.parse(out)  # the rename must keep the source valid
    return out


@lru_cache(maxsize=4096)
def _defined_names(source: str) -> frozenset[str]:
    try:
        return frozenset(top_level_names(strip_internal_imports(source)))
    except SyntaxError:
        return frozenset()


def defined_names(source: str) -> set[str]:
    """Top-level names a unit source defines once compiled (internal imports dropped)."""
    return set(_defined_names(source))


def rename_unit_source(source: str, old: str, new: str, taken: set[str]) -> tuple[str, dict[str, str]]:
    """Rename class ``old`` to ``new`` and any other top-level name that clashes with ``taken``.

    Returns the new source and the full mapping used. Helper names get the same ``_<n>`` suffix
    scheme as units; the ``SLOT_ROLES`` metadata constant is never renamed.
    """
    mapping = {old: new} if old != new else {}
    used = set(taken) | {new}
    for sym in sorted(defined_names(source)):
        if sym in (old, SLOT_ROLES_NAME) or sym not in taken:
            continue
        mapping[sym] = fresh_name(sym, used | defined_names(source))
        used.add(mapping[sym])
    return rename_identifiers(source, mapping), mapping


@lru_cache(maxsize=4096)
def canonical_source(source: str) -> str:
    """Source normalised and with its top-level names replaced by placeholders in order.

    Two sources with equal canonical forms behave the same: they differ at most in comments,
    docstrings, layout and a consistent renaming of their module-level names.
    """
    try:
        stripped = strip_internal_imports(source)
        names = [n for n in top_level_names(stripped) if n != SLOT_ROLES_NAME]
    except SyntaxError:
        return source.strip()
    mapping = {n: f"__top{i}" for i, n in enumerate(names)}
    try:
        return normalise_source(rename_identifiers(stripped, mapping))
    except SyntaxError:
        return normalise_source(stripped)


def source_key(source: str) -> str:
    """Short hash of :func:`canonical_source`."""
    return hashlib.sha256(canonical_source(source).encode()).hexdigest()[:16]


def slot_roles_declared(source: str) -> dict[str, str]:
    """The ``SLOT_ROLES = {slot: role}`` literal a combinator unit declares, if any."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == SLOT_ROLES_NAME
                                                 for t in node.targets)):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return {}
            if isinstance(value, dict):
                return {str(k): str(v) for k, v in value.items()}
    return {}


def init_defaults(source: str, class_name: str) -> dict[str, HParam]:
    """Literal keyword defaults of ``class_name.__init__`` (see :func:`class_init_defaults`)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    return {} if cls is None else class_init_defaults(cls)


def string_choices(source: str, hparam: str) -> list[str]:
    """String constants ``source`` compares the hyperparameter ``hparam`` against.

    Finds ``hparam == "x"``, ``self.hparam != "x"`` and ``hparam in ("x", "y")`` so a string
    hyperparameter can be mutated to another value the unit understands.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found: list[str] = []

    def is_ref(node: ast.AST) -> bool:
        return ((isinstance(node, ast.Name) and node.id == hparam)
                or (isinstance(node, ast.Attribute) and node.attr == hparam))

    def consts(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        return []

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, right = node.left, node.comparators[0]
            if is_ref(left):
                vals = consts(right)
            elif is_ref(right):
                vals = consts(left)
            else:
                continue
            found += [v for v in vals if v not in found]
    return found
