"""Code-level mutations of existing units (catalogue or hand-written), CodeIt style.

Each edit parses a unit's source, finds the spot it needs by the ``ast`` (the ``_forward``
returns, the ``q``/``k`` assignments, the activation calls) and rewrites only those lines, so the
result keeps the original's layout and comments. An edit that finds nothing to change raises
:class:`EditNotApplicable`. Edits never execute the code: the result goes through the sandboxed
checker like any other unit.

Edits keep incremental decoding exact (see ``model_discovery/gau/runtime.py``). A unit whose
``_forward`` only calls its ``_step`` (every generated mixer) is edited in ``_step``; a unit whose
``_step`` only calls ``_forward(X, state)`` (the stateful catalogue units) is edited in
``_forward``, and a token shift there keeps the last input in ``state`` when decoding. A unit with
a separate ``_step`` gets the same output gate or token shift there (the shift keeps the last
input in the decoding state); the edits of q, k or the decay remove that ``_step`` instead, so
the unit decodes by replay. Token shift makes a position-wise unit a stateful one: it gets a
``_step`` that runs ``_forward`` on the new inputs after the last earlier one, or, when it builds
children (whose decoding state that would disturb), it decodes by replay.

Edits: ``swap_activation``, ``add_output_gate``, ``add_qk_norm``, ``change_feature_map``,
``add_token_shift``, ``change_decay``.
"""

from __future__ import annotations

import ast
import random
import textwrap
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
    """The parsed unit: its class, ``__init__``, ``_forward`` and ``_step`` and a list of pending text edits.

    ``body`` is the method that computes the outputs (``_step`` when ``_forward`` only calls it, else
    ``_forward``); ``mirror`` is a separate ``_step`` that an edit of ``body`` must change as well
    or remove; ``x`` is the name of ``body``'s input; ``state`` names ``_forward``'s decoding-state
    parameter when ``_step`` runs through ``_forward`` (else None).
    """

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
        self.init, self.forward, self.step = methods["__init__"], methods["_forward"], methods.get("_step")
        delegates = self.step is not None and any(_is_self_call(n, "_step") for n in ast.walk(self.forward))
        through_forward = self.step is not None and any(_is_self_call(n, "_forward") for n in ast.walk(self.step))
        self.body = self.step if delegates and self.step is not None else self.forward
        self.mirror = None if delegates or through_forward else self.step
        params = [a.arg for a in self.forward.args.args]
        self.state = params[2] if through_forward and len(params) > 2 else None
        self.positionwise = next((n for n in self.cls.body if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "positionwise" for t in n.targets)), None)
        self.x = self.input_of(self.body)
        init_args = [a.arg for a in self.init.args.args]
        self.d_model = init_args[1] if len(init_args) > 1 else "d_model"
        self.lines = source.splitlines(keepends=True)
        self.edits: list[tuple[int, int, int, int, str]] = []  # (line, col, end line, end col, text), 1-based lines

    def input_of(self, fn: ast.FunctionDef) -> str:
        args = [a.arg for a in fn.args.args]
        if len(args) < 2 or (fn.name == "_step" and len(args) < 3):
            raise EditNotApplicable(f"{self.cls.name}.{fn.name} takes no input")
        return args[1]

    def names_used(self) -> set[str]:
        """Attribute names and string constants of the class (state keys among them)."""
        return {n.attr for n in ast.walk(self.cls) if isinstance(n, ast.Attribute)} | {
            n.value for n in ast.walk(self.cls) if isinstance(n, ast.Constant) and isinstance(n.value, str)}

    def replace(self, node: ast.AST, text: str) -> None:
        self.edits.append((node.lineno, node.col_offset, node.end_lineno or node.lineno,  # type: ignore[attr-defined]
                           node.end_col_offset or 0, text))  # type: ignore[attr-defined]

    def insert_after(self, stmt: ast.stmt, text: str) -> None:
        """Insert ``text`` as a new statement after ``stmt``, at its indentation."""
        end = stmt.end_lineno or stmt.lineno
        indent = " " * stmt.col_offset
        self.edits.append((end + 1, 0, end + 1, 0, f"{indent}{text}\n"))

    def insert_before(self, stmt: ast.stmt, text: str) -> None:
        """Insert ``text`` (one or more lines) before ``stmt``, at its indentation."""
        indent = " " * stmt.col_offset
        self.edits.append((stmt.lineno, 0, stmt.lineno, 0, "".join(f"{indent}{line}\n" for line in text.splitlines())))

    def remove(self, node: ast.stmt) -> None:
        """Delete the lines of ``node`` (with its decorators and one blank line before it)."""
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        if first > 1 and not self.lines[first - 2].strip():
            first -= 1
        self.edits.append((first, 0, (node.end_lineno or node.lineno) + 1, 0, ""))

    def add_method(self, text: str) -> None:
        """Append the method ``text`` (dedented source) to the class."""
        indent = " " * self.forward.col_offset
        end = self.cls.end_lineno or self.cls.lineno
        lines = textwrap.dedent(text).strip("\n").splitlines()
        self.edits.append((end + 1, 0, end + 1, 0, "\n" + "".join(f"{indent}{line}\n" for line in lines)))

    def drop_mirror(self) -> str:
        """Remove the separate ``_step`` (the unit then decodes by replay); a note for the edit's description."""
        if self.mirror is None:
            return ""
        self.remove(self.mirror)
        return "; _step removed (decodes by replay)"

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

        # bottom-up; at one start, the longer edit (a removal) before an insertion there
        for line, col, end_line, end_col, new in sorted(self.edits, key=lambda e: e[:4], reverse=True):
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
        """``stem`` or ``stem_2``, ... : a name no attribute or string constant of the class uses."""
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


def _is_self_call(node: ast.AST, method: str) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "self")


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


def _returns(unit: _Unit, fn: ast.FunctionDef) -> list[ast.Return]:
    return [n for n in ast.walk(fn) if isinstance(n, ast.Return)
            and isinstance(n.value, ast.Tuple) and len(n.value.elts) == 2]


def add_output_gate(rng: random.Random, source: str) -> CodeEdit:
    """Multiply the unit's output by ``sigmoid(W x)`` (a new d -> d projection of its input), in ``_step`` too."""
    unit = _Unit(source)
    attr = unit.fresh_attr("out_gate")
    returns = _returns(unit, unit.body)
    if not returns:
        raise EditNotApplicable(f"{unit.cls.name}.{unit.body.name} returns no (Y, Z) tuple")
    gated = [(ret, unit.x) for ret in returns]
    mirrored = _returns(unit, unit.mirror) if unit.mirror is not None else []
    note = unit.drop_mirror() if unit.mirror is not None and not mirrored else ""
    if mirrored:
        gated += [(ret, unit.input_of(unit.mirror)) for ret in mirrored]  # type: ignore[arg-type]
    unit.add_init(f"self.{attr} = nn.Linear({unit.d_model}, {unit.d_model}, bias=False)")
    for ret, x in gated:
        y = ret.value.elts[0]  # type: ignore[union-attr]
        text = ast.get_source_segment(source, y) or ast.unparse(y)
        unit.replace(y, f"({text}) * torch.sigmoid(self.{attr}({x}))")
    return CodeEdit(unit.render(), f"add output gate sigmoid(self.{attr}({unit.x})){note}")


#: ``_step`` of a position-wise unit given a token shift: ``_forward`` on the new inputs after the last earlier one
_SHIFT_STEP = '''
def _step(self, X, state, **Z):
    """Position-wise but for the token shift: the last earlier input is kept in ``state``."""
    full = X if "{key}" not in state else torch.cat([state["{key}"], X], dim=1)
    state["{key}"] = X[:, -1:]
    Y, Z = self._forward(full, **Z)
    return Y[:, full.size(1) - X.size(1):], Z
'''


def _shift_from_state(unit: _Unit, fn: ast.FunctionDef, attr: str) -> None:
    """Token shift at the start of the ``_step`` ``fn``; its state keeps the last earlier input under ``attr``."""
    x, state = unit.input_of(fn), [a.arg for a in fn.args.args][2]
    start = unit.body_start(fn)
    unit.insert_before(start, f'{attr}_prev = torch.cat([{state}.get("{attr}", torch.zeros_like({x}[:, :1])), '
                              f'{x}[:, :-1]], dim=1)\n'
                              f'{x}, {state}["{attr}"] = {x} + self.{attr}.to({x}.dtype) * ({attr}_prev - {x}), '
                              f'{x}[:, -1:]')


def add_token_shift(rng: random.Random, source: str) -> CodeEdit:
    """Mix each input token with the previous one by a learned per-channel weight before the unit runs."""
    unit = _Unit(source)
    attr = unit.fresh_attr("shift_mix")
    x, note = unit.x, ""
    unit.add_init(f"self.{attr} = nn.Parameter(torch.full(({unit.d_model},), 0.5))")
    if unit.body is unit.step:
        _shift_from_state(unit, unit.body, attr)
    elif unit.state is not None:
        state = unit.state
        unit.insert_before(unit.body_start(unit.forward),
                           f"{attr}_prev = F.pad({x}, (0, 0, 1, 0))[:, :-1] if {state} is None else torch.cat(\n"
                           f'    [{state}.get("{attr}", torch.zeros_like({x}[:, :1])), {x}[:, :-1]], dim=1)\n'
                           f"if {state} is not None:\n"
                           f'    {state}["{attr}"] = {x}[:, -1:]\n'
                           f"{x} = {x} + self.{attr}.to({x}.dtype) * ({attr}_prev - {x})")
    else:
        unit.insert_before(unit.body_start(unit.forward),
                           f"{x} = {x} + self.{attr}.to({x}.dtype) * (F.pad({x}, (0, 0, 1, 0))[:, :-1] - {x})")
        if unit.mirror is not None:
            _shift_from_state(unit, unit.mirror, attr)
        elif unit.positionwise is not None:
            unit.remove(unit.positionwise)
            if any(_is_self_call(n, "build_child") for n in ast.walk(unit.cls)):
                note = "; no longer position-wise (decodes by replay)"
            else:
                unit.add_method(_SHIFT_STEP.replace("{key}", attr))
                note = "; no longer position-wise (its _step keeps the last input)"
    return CodeEdit(unit.render(), f"add token shift (learned mix with the previous token){note}")


def _assigns(stmt: ast.stmt, name: str) -> bool:
    if not isinstance(stmt, ast.Assign):
        return False
    for target in stmt.targets:
        names = target.elts if isinstance(target, ast.Tuple) else [target]
        if any(isinstance(n, ast.Name) and n.id == name for n in names):
            return True
    return False


def _after_qk(unit: _Unit) -> ast.stmt:
    """The last top-level statement of the unit's body that assigns ``q`` or ``k`` (both must be assigned)."""
    body = unit.body.body
    q = [s for s in body if _assigns(s, "q")]
    k = [s for s in body if _assigns(s, "k")]
    if not q or not k:
        raise EditNotApplicable(f"{unit.cls.name}.{unit.body.name} assigns no q and k at its top level")
    return max(q[-1], k[-1], key=lambda s: s.lineno)


def add_qk_norm(rng: random.Random, source: str) -> CodeEdit:
    """RMS-normalise queries and keys over the head dimension right after they are made."""
    if QK_NORM_LINE in source:
        raise EditNotApplicable("the unit already normalises q and k")
    unit = _Unit(source)
    unit.insert_after(_after_qk(unit), QK_NORM_LINE)
    note = unit.drop_mirror()
    return CodeEdit(unit.render(), f"add qk-norm (RMS over the head dimension){note}")


def change_feature_map(rng: random.Random, source: str) -> CodeEdit:
    """Apply (or change) a positive feature map on q and k of a linear-attention unit."""
    if "scaled_dot_product_attention" in source or "softmax" in source:
        raise EditNotApplicable("softmax attention has no feature map to change")
    unit = _Unit(source)
    current = [(name, line) for name, line in FEATURE_MAP_LINES.items() if line in source]
    choices = [name for name in FEATURE_MAP_LINES if not current or name != current[0][0]]
    new = rng.choice(choices)
    stmt = next((s for s in unit.body.body if current and ast.get_source_segment(source, s) == current[0][1]), None)
    if stmt is not None:
        unit.replace(stmt, FEATURE_MAP_LINES[new])
        note = unit.drop_mirror()
        return CodeEdit(unit.render(), f"change feature map {current[0][0]} -> {new}{note}")
    unit.insert_after(_after_qk(unit), FEATURE_MAP_LINES[new])
    note = unit.drop_mirror()
    return CodeEdit(unit.render(), f"change feature map identity -> {new}{note}")


def change_decay(rng: random.Random, source: str) -> CodeEdit:
    """Reparameterise a decay: ``logsigmoid(z)`` -> ``-softplus(z) * exp(rate)``, or a softplus step -> sigmoid."""
    unit = _Unit(source)
    logsig = [n for n in ast.walk(unit.body) if _call_name(n) == "F.logsigmoid"]
    if logsig:
        attr = unit.fresh_attr("decay_log_rate")
        unit.add_init(f"self.{attr} = nn.Parameter(torch.tensor(-2.0))")
        for call in logsig:
            arg = ast.get_source_segment(source, call.args[0]) or ast.unparse(call.args[0])  # type: ignore[attr-defined]
            unit.replace(call, f"(-F.softplus({arg}) * torch.exp(self.{attr}))")
        note = unit.drop_mirror()
        return CodeEdit(unit.render(), f"change decay logsigmoid(z) -> -softplus(z) * exp(rate){note}")
    softplus = [n for n in ast.walk(unit.body) if _call_name(n) == "F.softplus"]
    if softplus:
        for call in softplus:
            unit.replace(call.func, "torch.sigmoid")  # type: ignore[attr-defined]
        note = unit.drop_mirror()
        return CodeEdit(unit.render(), f"change decay step softplus(z) -> sigmoid(z){note}")
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
