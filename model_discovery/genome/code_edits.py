"""Code-level mutations of existing units (catalogue or hand-written), CodeIt style.

Each edit parses a unit's source, finds the spot it needs by the ``ast`` (the ``_forward``
returns, the ``q``/``k`` assignments, the activation calls) and rewrites only those lines, so the
result keeps the original's layout and comments. An edit that finds nothing to change raises
:class:`EditNotApplicable`. Edits never execute the code: the result goes through the sandboxed
checker like any other unit.

Edits: ``swap_activation``, ``add_output_gate``, ``add_qk_norm``, ``change_feature_map``,
``add_token_shift``, ``change_decay``.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass
from typing import Callable

ACTIVATION_CALLS: tuple[str, ...] = ("F.gelu", "F.silu", "F.relu", "F.mish")
FEATURE_MAP_LINES: dict[str, str] = {
    "elu1": "q, k = F.elu(q) + 1, F.elu(k) + 1",
    "relu": "q, k = F.relu(q), F.relu(k)",
    "silu": "q, k = F.silu(q), F.silu(k)",
}
QK_NORM_LINE = "q, k = (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) for t in (q, k))"
_IMPORTS = {"torch": "import torch\n", "nn": "import torch.nn as nn\n", "F": "import torch.nn.functional as F\n"}


class EditNotApplicable(ValueError):
    """The unit offers nothing for this edit to change."""


@dataclass(frozen=True)
class CodeEdit:
    """An edited source and a one-line description of the edit."""

    source: str
    edit: str


class _Unit:
    """The parsed unit: its class, ``__init__`` and ``_forward`` and a list of pending text edits."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tree = ast.parse(source)
        classes = [n for n in self.tree.body if isinstance(n, ast.ClassDef)]
        if not classes:
            raise EditNotApplicable("the source defines no class")
        self.cls = classes[0]
        methods = {n.name: n for n in self.cls.body if isinstance(n, ast.FunctionDef)}
        if "__init__" not in methods or "_forward" not in methods:
            raise EditNotApplicable(f"class {self.cls.name} has no __init__ or no _forward")
        self.init, self.forward = methods["__init__"], methods["_forward"]
        args = [a.arg for a in self.forward.args.args]
        if len(args) < 2:
            raise EditNotApplicable(f"{self.cls.name}._forward takes no input")
        self.x = args[1]
        init_args = [a.arg for a in self.init.args.args]
        self.d_model = init_args[1] if len(init_args) > 1 else "d_model"
        self.lines = source.splitlines(keepends=True)
        self.edits: list[tuple[int, int, int, int, str]] = []  # (line, col, end line, end col, text), 1-based lines

    def names_used(self) -> set[str]:
        return {n.attr for n in ast.walk(self.cls) if isinstance(n, ast.Attribute)}

    def replace(self, node: ast.AST, text: str) -> None:
        self.edits.append((node.lineno, node.col_offset, node.end_lineno or node.lineno,  # type: ignore[attr-defined]
                           node.end_col_offset or 0, text))  # type: ignore[attr-defined]

    def insert_after(self, stmt: ast.stmt, text: str) -> None:
        """Insert ``text`` as a new statement after ``stmt``, at its indentation."""
        end = stmt.end_lineno or stmt.lineno
        indent = " " * stmt.col_offset
        self.edits.append((end + 1, 0, end + 1, 0, f"{indent}{text}\n"))

    def insert_before(self, stmt: ast.stmt, text: str) -> None:
        self.edits.append((stmt.lineno, 0, stmt.lineno, 0, f"{' ' * stmt.col_offset}{text}\n"))

    def render(self) -> str:
        """The source with every pending edit applied (bottom-up) and the imports the edits need."""
        text = "".join(self.lines)
        offsets = [0]
        for line in self.lines:
            offsets.append(offsets[-1] + len(line))

        def pos(line: int, col: int) -> int:
            if line - 1 >= len(self.lines):
                return len(text)
            return offsets[line - 1] + len(self.lines[line - 1].encode()[:col].decode())

        for line, col, end_line, end_col, new in sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True):
            text = text[:pos(line, col)] + new + text[pos(end_line, end_col):]
        return _ensure_imports(text)

    def body_start(self, fn: ast.FunctionDef) -> ast.stmt:
        """First statement of ``fn`` after its docstring."""
        body = fn.body
        if (len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            return body[1]
        return body[0]

    def add_init(self, text: str) -> None:
        self.insert_after(self.init.body[-1], text)

    def fresh_attr(self, stem: str) -> str:
        used = self.names_used()
        name, n = stem, 2
        while name in used:
            name, n = f"{stem}_{n}", n + 1
        return name


def _ensure_imports(source: str) -> str:
    tree = ast.parse(source)
    imported = {alias.asname or alias.name for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    missing = [line for name, line in _IMPORTS.items() if name not in imported and f"{name}." in source]
    if not missing:
        return source
    first = next(n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    lines = source.splitlines(keepends=True)
    lines.insert(first.lineno - 1, "".join(missing))
    return "".join(lines)


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
        return f"{node.func.value.id}.{node.func.attr}"
    return None


def swap_activation(rng: random.Random, source: str) -> CodeEdit:
    """Replace every call of one activation (e.g. ``F.silu``) by another (gelu, silu, relu, mish)."""
    unit = _Unit(source)
    calls = [n for n in ast.walk(unit.cls) if _call_name(n) in ACTIVATION_CALLS]
    if not calls:
        raise EditNotApplicable("no activation call to swap")
    old = _call_name(rng.choice(calls))
    new = rng.choice([a for a in ACTIVATION_CALLS if a != old])
    for call in calls:
        if _call_name(call) == old:
            unit.replace(call.func, new)  # type: ignore[attr-defined]
    return CodeEdit(unit.render(), f"swap activation {old} -> {new}")


def _returns(unit: _Unit) -> list[ast.Return]:
    out = [n for n in ast.walk(unit.forward) if isinstance(n, ast.Return)
           and isinstance(n.value, ast.Tuple) and len(n.value.elts) == 2]
    if not out:
        raise EditNotApplicable(f"{unit.cls.name}._forward returns no (Y, Z) tuple")
    return out


def add_output_gate(rng: random.Random, source: str) -> CodeEdit:
    """Multiply the unit's output by ``sigmoid(W x)`` (a new d -> d projection of its input)."""
    unit = _Unit(source)
    attr = unit.fresh_attr("out_gate")
    returns = _returns(unit)
    unit.add_init(f"self.{attr} = nn.Linear({unit.d_model}, {unit.d_model}, bias=False)")
    for ret in returns:
        y = ret.value.elts[0]  # type: ignore[union-attr]
        text = ast.get_source_segment(source, y) or ast.unparse(y)
        unit.replace(y, f"({text}) * torch.sigmoid(self.{attr}({unit.x}))")
    return CodeEdit(unit.render(), f"add output gate sigmoid(self.{attr}({unit.x}))")


def add_token_shift(rng: random.Random, source: str) -> CodeEdit:
    """Mix each input token with the previous one by a learned per-channel weight before the unit runs."""
    unit = _Unit(source)
    attr = unit.fresh_attr("shift_mix")
    x = unit.x
    unit.add_init(f"self.{attr} = nn.Parameter(torch.full(({unit.d_model},), 0.5))")
    unit.insert_before(unit.body_start(unit.forward),
                       f"{x} = {x} + self.{attr}.to({x}.dtype) * (F.pad({x}, (0, 0, 1, 0))[:, :-1] - {x})")
    return CodeEdit(unit.render(), "add token shift (learned mix with the previous token)")


def _assigns(stmt: ast.stmt, name: str) -> bool:
    if not isinstance(stmt, ast.Assign):
        return False
    for target in stmt.targets:
        names = target.elts if isinstance(target, ast.Tuple) else [target]
        if any(isinstance(n, ast.Name) and n.id == name for n in names):
            return True
    return False


def _after_qk(unit: _Unit) -> ast.stmt:
    """The last top-level statement of ``_forward`` that assigns ``q`` or ``k`` (both must be assigned)."""
    body = unit.forward.body
    q = [s for s in body if _assigns(s, "q")]
    k = [s for s in body if _assigns(s, "k")]
    if not q or not k:
        raise EditNotApplicable(f"{unit.cls.name}._forward assigns no q and k at its top level")
    return max(q[-1], k[-1], key=lambda s: s.lineno)


def add_qk_norm(rng: random.Random, source: str) -> CodeEdit:
    """RMS-normalise queries and keys over the head dimension right after they are made."""
    if QK_NORM_LINE in source:
        raise EditNotApplicable("the unit already normalises q and k")
    unit = _Unit(source)
    unit.insert_after(_after_qk(unit), QK_NORM_LINE)
    return CodeEdit(unit.render(), "add qk-norm (RMS over the head dimension)")


def change_feature_map(rng: random.Random, source: str) -> CodeEdit:
    """Apply (or change) a positive feature map on q and k of a linear-attention unit."""
    if "scaled_dot_product_attention" in source or "softmax" in source:
        raise EditNotApplicable("softmax attention has no feature map to change")
    unit = _Unit(source)
    current = [(name, line) for name, line in FEATURE_MAP_LINES.items() if line in source]
    choices = [name for name in FEATURE_MAP_LINES if not current or name != current[0][0]]
    new = rng.choice(choices)
    if current:
        stmt = next(s for s in unit.forward.body if ast.get_source_segment(source, s) == current[0][1])
        unit.replace(stmt, FEATURE_MAP_LINES[new])
        return CodeEdit(unit.render(), f"change feature map {current[0][0]} -> {new}")
    unit.insert_after(_after_qk(unit), FEATURE_MAP_LINES[new])
    return CodeEdit(unit.render(), f"change feature map identity -> {new}")


def change_decay(rng: random.Random, source: str) -> CodeEdit:
    """Reparameterise a decay: ``logsigmoid(z)`` -> ``-softplus(z) * exp(rate)``, or a softplus step -> sigmoid."""
    unit = _Unit(source)
    logsig = [n for n in ast.walk(unit.forward) if _call_name(n) == "F.logsigmoid"]
    if logsig:
        attr = unit.fresh_attr("decay_log_rate")
        unit.add_init(f"self.{attr} = nn.Parameter(torch.tensor(-2.0))")
        for call in logsig:
            arg = ast.get_source_segment(source, call.args[0]) or ast.unparse(call.args[0])  # type: ignore[attr-defined]
            unit.replace(call, f"(-F.softplus({arg}) * torch.exp(self.{attr}))")
        return CodeEdit(unit.render(), "change decay logsigmoid(z) -> -softplus(z) * exp(rate)")
    softplus = [n for n in ast.walk(unit.forward) if _call_name(n) == "F.softplus"]
    if softplus:
        for call in softplus:
            unit.replace(call.func, "torch.sigmoid")  # type: ignore[attr-defined]
        return CodeEdit(unit.render(), "change decay step softplus(z) -> sigmoid(z)")
    raise EditNotApplicable("no logsigmoid or softplus decay to reparameterise")


CodeEditFn = Callable[[random.Random, str], CodeEdit]
CODE_EDITS: dict[str, CodeEditFn] = {
    "swap_activation": swap_activation, "add_output_gate": add_output_gate, "add_qk_norm": add_qk_norm,
    "change_feature_map": change_feature_map, "add_token_shift": add_token_shift, "change_decay": change_decay,
}
#: edits that only make sense on sequence mixers (they read q/k or mix positions)
MIXER_ONLY: frozenset[str] = frozenset({"add_qk_norm", "change_feature_map", "add_token_shift", "change_decay"})


def edit_unit(rng: random.Random, source: str, role: str, edits: list[str] | None = None) -> tuple[str, CodeEdit]:
    """Apply one applicable code edit, drawn at random (from ``edits`` if given); returns (edit name, result)."""
    names = [e for e in (edits or list(CODE_EDITS)) if role == "mixer" or e not in MIXER_ONLY]
    rng.shuffle(names)
    reasons = []
    for name in names:
        try:
            return name, CODE_EDITS[name](rng, source)
        except EditNotApplicable as exc:
            reasons.append(f"{name}: {exc}")
    raise EditNotApplicable("; ".join(reasons) or f"no code edit applies to a {role} unit")
