"""Non-embedding parameter counts of a design at a scale, without trusting its code.

Three ways, best first:

* **meta build, in-process**: when every unit's source is catalogue code (equal to a file in
  ``library/units`` up to comments and a renaming of top-level names), the design is trusted;
  it is built on ``torch.device("meta")`` (no memory, no compute) and its parameters counted.
* **meta build, sandboxed**: otherwise, the same build runs in the checker's sandbox
  (:func:`model_discovery.check.sandbox.run_sandboxed`) when that module is available.
* **static estimate**: a small abstract interpreter over each unit's ``__init__`` that sizes
  ``nn.Linear``, ``nn.Conv1d``, ``nn.Embedding``, norms and ``nn.Parameter(torch.*(shape))``
  from ``d_model`` and the unit's hyperparameters. It never executes design code.
"""

from __future__ import annotations

import ast
import math
import operator
from contextlib import suppress
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict

from model_discovery.agents.symbolic.draft import catalogue_keys
from model_discovery.agents.symbolic.source import init_defaults, source_key
from model_discovery.check.sandbox import DEFAULT_ALLOWED_IMPORTS, SandboxLimits, load_untrusted_module, run_sandboxed
from model_discovery.gau.compose import MODULE_IMPORTS, compile_design, load_module
from model_discovery.records import Design, ScaleConfig

Method = Literal["meta", "sandbox", "static"]
SANDBOX_TARGET = "model_discovery.agents.symbolic.params:sandbox_count"


class ParamEstimate(BaseModel):
    """A non-embedding parameter count and how it was obtained."""

    model_config = ConfigDict(extra="forbid")
    n_params: int
    method: Method
    exact: bool
    note: str = ""


def is_trusted(design: Design) -> bool:
    """Whether every unit of ``design`` is catalogue code (safe to execute in-process)."""
    keys = catalogue_keys()
    return all(source_key(u.source) in keys for u in design.units.values())


def count_params(design: Design, scale: ScaleConfig, meta_build: bool = True) -> ParamEstimate:
    """Non-embedding parameters of ``design`` at ``scale`` (see the module docstring)."""
    if meta_build and is_trusted(design):
        try:
            return ParamEstimate(n_params=meta_count(design, scale), method="meta", exact=True)
        except Exception as exc:  # noqa: BLE001 - a build error falls back to the static model
            note = f"meta build failed: {type(exc).__name__}: {exc}"
            return ParamEstimate(n_params=static_count(design, scale), method="static", exact=False, note=note)
    if meta_build:
        payload = {"design": design.model_dump(mode="json"), "scale": scale.model_dump(mode="json")}
        outcome = run_sandboxed(SANDBOX_TARGET, payload, SandboxLimits(wall_time_s=60.0))
        if outcome.ok and outcome.result and "n_params" in outcome.result:
            return ParamEstimate(n_params=int(outcome.result["n_params"]), method="sandbox", exact=True)
        note = f"sandboxed build failed: {outcome.kind}: {outcome.error}"
        return ParamEstimate(n_params=static_count(design, scale), method="static", exact=False, note=note)
    return ParamEstimate(n_params=static_count(design, scale), method="static", exact=False)


def meta_count(design: Design, scale: ScaleConfig) -> int:
    """Build ``design`` on the meta device in this process (trusted designs only) and count."""
    module = load_module(compile_design(design), name=f"gau_meta_{design.name.replace('-', '_')}")
    return _meta_params(module, scale)


def sandbox_count(payload: dict[str, Any]) -> dict[str, Any]:
    """Sandbox target: build the payload's design on the meta device and count parameters."""
    design = Design.model_validate(payload["design"])
    scale = ScaleConfig.model_validate(payload["scale"])
    module = load_untrusted_module(compile_design(design), "gau_meta_count",
                                   (*DEFAULT_ALLOWED_IMPORTS, *MODULE_IMPORTS))
    return {"n_params": _meta_params(module, scale)}


def _meta_params(module: Any, scale: ScaleConfig) -> int:
    """Non-embedding parameters of the LM ``module`` builds at ``scale`` on the meta device."""
    with torch.device("meta"):
        lm = module.build_lm(scale.d_model, scale.n_block, scale.vocab_size, scale.context_len)
    return int(lm.num_params(non_embedding=True))


# -- static model -----------------------------------------------------------------------------
def static_count(design: Design, scale: ScaleConfig) -> int:
    """Parameter estimate from the sources alone (children counted once per slot reference;
    the children of an all-block combinator are averaged, as one of them is built per layer)."""
    cache: dict[str, float] = {}

    def total(name: str) -> float:
        if name in cache:
            return cache[name]
        unit = design.units[name]
        own = unit_own_params(unit.source, name, scale.d_model, {**init_defaults(unit.source, name), **unit.hparams},
                              scale.context_len)
        kids = [total(c) for c in unit.children.values()]
        blocks = unit.children and all(design.units[c].role == "block" for c in unit.children.values())
        cache[name] = own + (sum(kids) / len(kids) if blocks else sum(kids))
        return cache[name]

    return int(round(scale.n_block * total(design.root)))


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_FUNCS = {"int": int, "float": float, "max": max, "min": min, "round": round, "abs": abs,
          "ceil": math.ceil, "floor": math.floor, "sqrt": math.sqrt}


class _Unknown(Exception):
    pass


def _eval(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool, str)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        raise _Unknown(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        key = f"self.{node.attr}"
        if key in env:
            return env[key]
        raise _Unknown(key)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, env), _eval(node.right, env)
        if isinstance(left, (int, float)) and isinstance(right, (int, float)):
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise _Unknown("power")
            return _BINOPS[type(node.op)](left, right)
        raise _Unknown("binop")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, env)
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, env) else node.orelse, env)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        left, right = _eval(node.left, env), _eval(node.comparators[0], env)
        ops = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.Gt: operator.gt,
               ast.LtE: operator.le, ast.GtE: operator.ge}
        if type(node.ops[0]) in ops:
            return ops[type(node.ops[0])](left, right)
        raise _Unknown("compare")
    if isinstance(node, ast.Call) and _call_name(node) in _FUNCS and not node.keywords:
        return _FUNCS[_call_name(node)](*[_eval(a, env) for a in node.args])
    raise _Unknown(type(node).__name__)


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def _kw(node: ast.Call, name: str, pos: int, env: dict[str, Any], default: Any) -> Any:
    for kw in node.keywords:
        if kw.arg == name:
            return _eval(kw.value, env)
    if len(node.args) > pos:
        return _eval(node.args[pos], env)
    return default


def _layer_params(node: ast.Call, env: dict[str, Any]) -> int | None:
    """Parameters of one ``nn.*`` layer or ``nn.Parameter`` call, or None if not a layer."""
    name = _call_name(node)
    if name == "Linear":
        i, o = _kw(node, "in_features", 0, env, None), _kw(node, "out_features", 1, env, None)
        bias = _kw(node, "bias", 2, env, True)
        return int(i) * int(o) + (int(o) if bias else 0)
    if name in ("Conv1d", "Conv2d"):
        i, o, k = (_kw(node, n, p, env, None) for n, p in (("in_channels", 0), ("out_channels", 1), ("kernel_size", 2)))
        groups = _kw(node, "groups", 6, env, 1)
        bias = _kw(node, "bias", 7, env, True)
        kk = int(k) if name == "Conv1d" else int(k) ** 2
        return int(o) * (int(i) // int(groups)) * kk + (int(o) if bias else 0)
    if name == "Embedding":
        return int(_kw(node, "num_embeddings", 0, env, None)) * int(_kw(node, "embedding_dim", 1, env, None))
    if name in ("LayerNorm", "GroupNorm"):
        d = _kw(node, "normalized_shape" if name == "LayerNorm" else "num_channels", 0 if name == "LayerNorm" else 1, env, None)
        affine = _kw(node, "elementwise_affine" if name == "LayerNorm" else "affine", 2, env, True)
        bias = _kw(node, "bias", 3, env, True) if name == "LayerNorm" else True
        return (int(d) + (int(d) if bias else 0)) if affine else 0
    if name == "RMSNorm":
        return int(_kw(node, "normalized_shape", 0, env, None))
    if name == "Parameter" and node.args and isinstance(node.args[0], ast.Call):
        inner = node.args[0]
        if isinstance(inner.func, ast.Attribute) and inner.func.attr in ("zeros", "ones", "randn", "rand", "empty", "full"):
            dims = inner.args[:-1] if inner.func.attr == "full" else inner.args
            shape = [int(_eval(d, env)) for d in dims]
            if len(shape) == 1 and isinstance(dims[0], (ast.Tuple, ast.List)):
                shape = [int(_eval(e, env)) for e in dims[0].elts]
            return math.prod(shape)
        if isinstance(inner.func, ast.Attribute) and inner.func.attr == "tensor":
            return 1
    return None


def unit_own_params(source: str, class_name: str, d_model: int, hparams: dict[str, Any],
                    context_len: int = 2048) -> int:
    """Static estimate of the parameters a unit's ``__init__`` creates itself (children excluded).

    Straight-line assignments are interpreted in order; layers inside ``if`` branches count when
    the condition evaluates, loops over ``range(n)`` multiply their body. Anything the
    interpreter cannot evaluate counts as zero.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return 0
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    init = next((n for n in (cls.body if cls else []) if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:
        return 0
    env: dict[str, Any] = {"d_model": d_model, "self.d_model": d_model, "self.max_seq_len": context_len, **hparams}
    for node in tree.body:  # module-level constants
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with suppress(_Unknown, ArithmeticError, TypeError, ValueError):
                env[node.targets[0].id] = _eval(node.value, env)
    return int(_run(init.body, env))


def _count_expr(node: ast.AST, env: dict[str, Any]) -> int:
    if isinstance(node, ast.IfExp):
        with suppress(_Unknown, ArithmeticError, TypeError, ValueError):
            return _count_expr(node.body if _eval(node.test, env) else node.orelse, env)
    if isinstance(node, ast.Call):
        try:
            n = _layer_params(node, env)
        except (_Unknown, ArithmeticError, TypeError, ValueError):
            n = None
        if n is not None:
            return n
    return sum(_count_expr(child, env) for child in ast.iter_child_nodes(node))


def _run(body: list[ast.stmt], env: dict[str, Any], depth: int = 0) -> int:
    total = 0
    for stmt in body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            value = stmt.value
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if value is None:
                continue
            total += _count_expr(value, env)
            try:
                result = _eval(value, env)
            except (_Unknown, ArithmeticError, TypeError, ValueError):
                continue
            for t in targets:
                if isinstance(t, ast.Name):
                    env[t.id] = result
                elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
                    env[f"self.{t.attr}"] = result
        elif isinstance(stmt, ast.If) and depth < 8:
            try:
                cond = bool(_eval(stmt.test, env))
            except (_Unknown, ArithmeticError, TypeError, ValueError):
                cond = True
            total += _run(stmt.body if cond else stmt.orelse, env, depth + 1)
        elif isinstance(stmt, ast.For) and depth < 8:
            reps = 1
            it = stmt.iter
            if isinstance(it, ast.Call) and _call_name(it) == "range" and len(it.args) == 1:
                try:
                    reps = int(_eval(it.args[0], env))
                except (_Unknown, ArithmeticError, TypeError, ValueError):
                    reps = 1
            total += reps * _run(stmt.body, env, depth + 1)
        elif isinstance(stmt, ast.With) and depth < 8:
            total += _run(stmt.body, env, depth + 1)
        elif isinstance(stmt, ast.Expr):
            total += _count_expr(stmt.value, env)
    return total
