"""Compile a :class:`Design` into one self-contained Python module and build its LM.

The module text holds the GAU runtime, every unit's source, the wiring, and ``build_lm(...)``.
It imports only ``torch`` and the standard library, so it runs inside the sandbox and inside a
Hugging Face export without ``model_discovery`` installed.

Executing a compiled module runs the design's code: call :func:`load_module` /
:func:`build_lm` only inside the sandboxed checker/verifier subprocess for untrusted designs.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import types
from pathlib import Path
from typing import Any

from model_discovery.records import Design, DesignError, ScaleConfig

RUNTIME_SOURCE_PATH = Path(__file__).with_name("runtime.py")


def runtime_source() -> str:
    return RUNTIME_SOURCE_PATH.read_text()


def strip_internal_imports(source: str) -> str:
    """Drop ``from model_discovery...`` imports (the runtime is inlined instead) and
    ``from __future__`` imports (hoisted to the top of the compiled module)."""
    lines = source.splitlines()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    drop: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("model_discovery", "__future__")):
            drop.update(range(node.lineno - 1, (node.end_lineno or node.lineno)))
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)


def top_level_names(source: str) -> list[str]:
    """Names a unit source binds at module level (classes, functions, assignments), in order."""
    names: dict[str, None] = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = None
        elif isinstance(node, ast.Assign):
            names.update((t.id, None) for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = None
    return list(names)


RUNTIME_NAMES = frozenset(top_level_names(runtime_source()))
#: import roots the compiled module itself uses besides the units' (the runtime and the wiring)
MODULE_IMPORTS = ("json", "contextvars")


def compile_design(design: Design) -> str:
    """Return the self-contained module source for ``design``.

    Raises :class:`DesignError` naming the unit when a source does not parse, does not define
    its class, or redefines a name that another unit or the runtime defines.
    """
    owner: dict[str, str] = {n: "<runtime>" for n in RUNTIME_NAMES}
    parts = [f'"""Design {design.name!r}: compiled GAU module (self-contained)."""',
             "from __future__ import annotations\n\nimport json",
             "# ---- GAU runtime " + "-" * 60, strip_internal_imports(runtime_source())]
    for name in design.walk():
        unit = design.units[name]
        src = strip_internal_imports(unit.source)
        try:
            defined = top_level_names(src)
        except SyntaxError as exc:
            raise DesignError(f"design {design.name}: unit {name}: syntax error line {exc.lineno}: {exc.msg}") from exc
        if name not in defined:
            raise DesignError(f"design {design.name}: unit {name}: source defines no class named {name!r}")
        for sym in sorted(defined):
            if sym in owner and not sym.isupper():
                raise DesignError(f"design {design.name}: unit {name}: top-level name {sym!r} "
                                  f"is already defined by {owner[sym]}")
            owner.setdefault(sym, f"unit {name}")
        parts += [f"# ---- unit {name} ({unit.role}) " + "-" * 50, src]
    wiring = {n: {"children": u.children, "hparams": u.hparams} for n, u in design.units.items()}
    parts += [
        "# ---- design " + "-" * 64,
        f"DESIGN_NAME = {design.name!r}",
        f"ROOT = {design.root!r}",
        f"WIRING = json.loads({json.dumps(json.dumps(wiring, sort_keys=True))})",
        "",
        "",
        "def build_lm(d_model: int, n_block: int, vocab_size: int, context_len: int) -> DesignLM:",
        '    """Build the LM of this design at the given scale."""',
        "    classes = {name: globals()[name] for name in WIRING if name in globals()}",
        "    return DesignLM(ROOT, WIRING, classes, d_model, n_block, vocab_size, context_len)",
        "",
    ]
    return "\n\n".join(parts)


def module_name(source: str, name: str) -> str:
    """Process-unique module name for compiled design source (``name`` plus a source hash)."""
    return f"{name}_{hashlib.sha1(source.encode()).hexdigest()[:12]}"


def load_module(source: str, name: str = "gau_design") -> types.ModuleType:
    """Execute compiled module source in a fresh module object (runs design code!).

    The module is registered in ``sys.modules`` under :func:`module_name`, as ``torch.compile``
    looks up the modules of the functions it traces.
    """
    module = types.ModuleType(module_name(source, name))
    sys.modules[module.__name__] = module
    module.__dict__["__file__"] = f"<{name}>"
    code = compile(source, f"<{name}>", "exec")
    exec(code, module.__dict__)  # noqa: S102 - only inside the sandbox for untrusted designs
    return module


def build_lm(design: Design, scale: ScaleConfig, vocab_size: int | None = None) -> Any:
    """Compile ``design`` and build its :class:`DesignLM` at ``scale`` (runs design code!)."""
    module = load_module(compile_design(design), name=f"gau_{design.name.replace('-', '_')}")
    return module.build_lm(scale.d_model, scale.n_block, vocab_size or scale.vocab_size, scale.context_len)
