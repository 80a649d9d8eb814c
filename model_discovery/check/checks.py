"""The checker: static checks in this process, dynamic checks in two sandboxed children.

Static (no design code runs): ``parse``, ``classes``, ``slots``, ``imports``, ``compile``.
Dynamic, in the design's sandboxed process (:mod:`model_discovery.check.dynamic`): ``build``,
``export``; then in the judge's own sandboxed process, from the exported graph
(:mod:`model_discovery.check.judge`): ``graph``, ``params``, ``forward``, ``causality``,
``gradients``, ``speed_memory``, ``effectiveness``. Speed and memory are judged
against the GPT-2 seed measured the same way at the same scale, once per process (and once per
``cache_dir`` when given).
"""

from __future__ import annotations

import ast
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from model_discovery.check.dynamic import DESIGN_CHECKS
from model_discovery.check.judge import JUDGE_CHECKS
from model_discovery.check.report import format_report
from model_discovery.check.sandbox import DEFAULT_ALLOWED_IMPORTS, SandboxLimits, SandboxOutcome, run_sandboxed
from model_discovery.gau.compose import compile_design
from model_discovery.gau.library import load_design, load_seed
from model_discovery.gau.scales import get_scale
from model_discovery.records import CheckConfig, CheckReport, CheckResult, Design, DesignError, ScaleConfig
from model_discovery.records.design import used_slots
from model_discovery.train.corpus import load_token_data

EXPORT_TARGET = "model_discovery.check.dynamic:export_design"
JUDGE_TARGET = "model_discovery.check.judge:judge_design"
REFERENCE_SEED = "gpt2"
# builtins a unit may not call: they bypass the import allowlist or touch the outside world
FORBIDDEN_CALLS = frozenset({"exec", "eval", "compile", "open", "__import__", "breakpoint", "input",
                             "globals", "vars", "exit", "quit"})
# internal imports that compile_design strips (the runtime is inlined)
INTERNAL_IMPORTS = ("model_discovery.gau.runtime", "model_discovery.gau")


class ReferenceFigures(BaseModel):
    """Speed and memory of the reference design (GPT-2 seed) at one scale."""

    model_config = ConfigDict(extra="forbid")

    design: str
    fingerprint: str
    scale: str
    fwd_bwd_ms: float
    train_mem_bytes: int


_REFERENCE_CACHE: dict[tuple[str, str], ReferenceFigures] = {}


# -------------------------------------------------------------------------------------------
# static checks


def _static_parse(design: Design) -> tuple[CheckResult, dict[str, ast.Module]]:
    trees: dict[str, ast.Module] = {}
    for name in design.walk():
        try:
            trees[name] = ast.parse(design.units[name].source)
        except SyntaxError as exc:
            return CheckResult(name="parse", passed=False, message=(
                f"parse: design {design.name}: unit {name}: syntax error line {exc.lineno}: {exc.msg}")), trees
    return CheckResult(name="parse", passed=True, figures={"units": len(trees)}), trees


def _static_classes(design: Design, trees: dict[str, ast.Module]) -> CheckResult:
    for name, tree in trees.items():
        classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
        if name not in classes:
            found = f" (found {', '.join(classes)})" if classes else ""
            return CheckResult(name="classes", passed=False, message=(
                f"classes: design {design.name}: unit {name}: source defines no top-level class "
                f"named {name!r}{found}; rename the class to match the unit"))
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
        methods = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if "_forward" not in methods:
            return CheckResult(name="classes", passed=False, message=(
                f"classes: design {design.name}: unit {name}: class {name} defines no _forward(self, X, **Z)"))
    return CheckResult(name="classes", passed=True, figures={"classes": len(trees)})


def _static_slots(design: Design) -> CheckResult:
    for name in design.walk():
        unit = design.units[name]
        used, declared = set(used_slots(unit.source)), set(unit.children)
        if used - declared:
            slot = sorted(used - declared)[0]
            return CheckResult(name="slots", passed=False, message=(
                f"slots: design {design.name}: unit {name}: builds child slot {slot!r} that the design "
                f"does not declare (declared: {sorted(declared) or 'none'}); add it to children"))
        if declared - used:
            slot = sorted(declared - used)[0]
            return CheckResult(name="slots", passed=False, message=(
                f"slots: design {design.name}: unit {name}: declares child slot {slot!r} that its source "
                f"never builds with self.build_child({slot!r})"))
    return CheckResult(name="slots", passed=True,
                       figures={"slots": sum(len(u.children) for u in design.units.values())})


def _static_imports(design: Design, trees: dict[str, ast.Module], allowed: list[str]) -> CheckResult:
    allowed_set = set(allowed)
    for name, tree in trees.items():
        for node in ast.walk(tree):
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    return CheckResult(name="imports", passed=False, message=(
                        f"imports: design {design.name}: unit {name} line {node.lineno}: relative imports "
                        f"are not allowed"))
                mods = [node.module or ""]
            for mod in mods:
                if mod in INTERNAL_IMPORTS or mod.split(".")[0] in allowed_set:
                    continue
                return CheckResult(name="imports", passed=False, message=(
                    f"imports: design {design.name}: unit {name} line {node.lineno}: import of {mod!r} is "
                    f"not allowed (allowed: {', '.join(sorted(allowed_set))})"))
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in FORBIDDEN_CALLS):
                return CheckResult(name="imports", passed=False, message=(
                    f"imports: design {design.name}: unit {name} line {node.lineno}: call of builtin "
                    f"{node.func.id}() is not allowed in unit code"))
    return CheckResult(name="imports", passed=True)


def _static_compile(design: Design) -> tuple[CheckResult, str | None]:
    try:
        source = compile_design(design)
        compile(source, f"<design {design.name}>", "exec")  # syntax only: nothing executes
    except DesignError as exc:
        return CheckResult(name="compile", passed=False, message=f"compile: {exc}"), None
    except SyntaxError as exc:
        return CheckResult(name="compile", passed=False, message=(
            f"compile: design {design.name}: compiled module line {exc.lineno}: {exc.msg}")), None
    return CheckResult(name="compile", passed=True, figures={"lines": source.count("\n") + 1}), source


def static_checks(design: Design, allowed_imports: list[str] | None = None) -> tuple[list[CheckResult], str | None]:
    """Run the static checks in order, stopping at the first failure; return (results, source)."""
    allowed = list(allowed_imports or DEFAULT_ALLOWED_IMPORTS)
    results: list[CheckResult] = []

    def timed(fn: Any, *args: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args)
        res = out[0] if isinstance(out, tuple) else out
        res.seconds = round(time.perf_counter() - start, 4)
        results.append(res)
        return out

    parse, trees = timed(_static_parse, design)
    if not parse.passed:
        return results, None
    for fn, args in ((_static_classes, (design, trees)), (_static_slots, (design,)),
                     (_static_imports, (design, trees, allowed))):
        if not timed(fn, *args).passed:
            return results, None
    res, source = timed(_static_compile, design)
    return results, source if res.passed else None


# -------------------------------------------------------------------------------------------
# dynamic checks (sandboxed)


def _outcome_checks(outcome: SandboxOutcome) -> list[CheckResult]:
    """Check results from the outcome (final result, else the streamed ones)."""
    raw = (outcome.result or {}).get("checks")
    if raw is None:
        raw = [e["check"] for e in outcome.events if isinstance(e.get("check"), dict)]
    out = []
    for item in raw:
        try:
            out.append(CheckResult.model_validate(item))
        except ValueError:
            continue
    return out


def _sandbox_results(outcome: SandboxOutcome, design: Design, names: tuple[str, ...]) -> list[CheckResult]:
    """The child's check results among ``names`` (anything else it claims is ignored); a sandbox
    failure becomes a failing check named by its phase (the first of ``names`` if unknown)."""
    results = [r for r in _outcome_checks(outcome) if r.name in names]
    if not outcome.ok:
        phase = outcome.phase if outcome.phase in names else names[0]
        results = [r for r in results if r.name != phase]
        results.append(CheckResult(
            name=phase, passed=False, seconds=round(outcome.wall_s, 3),
            figures={"kind": outcome.kind, "peak_rss_bytes": outcome.peak_rss_bytes},
            message=f"{phase}: design {design.name}: {outcome.kind}: {outcome.error}"))
    return results


def graph_shapes(scale: ScaleConfig, batch: int, rng: secrets.SystemRandom | None = None) -> list[list[Any]]:
    """Graphs to export: train and eval at the rung's length, eval at a random shorter length."""
    T = scale.context_len
    short = (rng or secrets.SystemRandom()).randint(max(2, T // 4), max(2, T - 1))
    return [["train", batch, T], ["eval", batch, T], ["eval", batch, short]]


def run_dynamic(design: Design, source: str, scale: ScaleConfig, limits: SandboxLimits,
                config: CheckConfig, only: list[str] | None = None, cache_dir: str | None = None,
                timeout_s: float | None = None) -> tuple[list[CheckResult], SandboxOutcome]:
    """The design's process builds and exports; the judge's process computes every other verdict.

    Two sandboxed children: :func:`~model_discovery.check.dynamic.export_design` (design code,
    may write only the graph directory) and :func:`~model_discovery.check.judge.judge_design`
    (no design code; reads the graph as data). Sandbox failures become failing checks. With
    ``timeout_s`` both children together get that many wall-clock seconds. The judge reads the
    corpus's tokens at the rung's vocabulary, built here (under ``cache_dir`` when given).
    """
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None

    def within(lim: SandboxLimits) -> SandboxLimits:
        if deadline is None:
            return lim
        return lim.model_copy(update={"wall_time_s": max(0.5, deadline - time.monotonic())})

    data = load_token_data(scale.vocab_size, cache_dir=cache_dir)
    graph_dir = Path(tempfile.mkdtemp(prefix="modis-check-graph-"))
    try:
        export = {"design": design.model_dump(mode="json"), "source": source, "scale": scale.model_dump(mode="json"),
                  "allowed_imports": list(limits.allowed_imports), "seed": config.seed,
                  "shapes": graph_shapes(scale, config.train_batch), "graph_dir": str(graph_dir)}
        outcome = run_sandboxed(EXPORT_TARGET, export, within(limits.model_copy(update={"writable_dirs": [graph_dir]})))
        results = _sandbox_results(outcome, design, DESIGN_CHECKS)
        if outcome.ok and all(r.passed for r in results) and any(r.name == "export" for r in results):
            judge = {"graph_dir": str(graph_dir), "scale": scale.model_dump(mode="json"),
                     "config": config.model_dump(mode="json"), "data_dir": str(data.path), "only": only,
                     "causality_seed": secrets.randbelow(2**31)}
            outcome = run_sandboxed(JUDGE_TARGET, judge, within(limits.model_copy(update={
                "readable_paths": [*limits.readable_paths, data.path, graph_dir], "writable_dirs": []})))
            results += _sandbox_results(outcome, design, ("graph", *JUDGE_CHECKS))
    finally:
        shutil.rmtree(graph_dir, ignore_errors=True)
    for r in results:
        if r.name == "effectiveness":
            r.figures["tokens"] = data.path.name
    return results, outcome


def reference_figures(scale: ScaleConfig, limits: SandboxLimits | None = None, config: CheckConfig | None = None,
                      cache_dir: str | Path | None = None) -> ReferenceFigures:
    """Speed/memory of the GPT-2 seed at ``scale``: cached per process and per ``cache_dir``."""
    seed = load_seed(REFERENCE_SEED)
    key = (scale.name, seed.fingerprint())
    if key in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[key]
    path = Path(cache_dir) / f"check_reference_{scale.name}.json" if cache_dir else None
    if path is not None and path.exists():
        with suppress(ValueError):
            ref = ReferenceFigures.model_validate_json(path.read_text())
            if ref.fingerprint == key[1]:
                _REFERENCE_CACHE[key] = ref
                return ref
    source = compile_design(seed)
    results, outcome = run_dynamic(seed, source, scale, limits or SandboxLimits(), config or CheckConfig(),
                                   only=["speed_memory"], cache_dir=None)
    speed = next((r for r in results if r.name == "speed_memory" and r.passed), None)
    if speed is None:
        raise RuntimeError(f"reference seed {REFERENCE_SEED} failed its speed check at {scale.name}: "
                           f"{outcome.error or [r.message for r in results if not r.passed]}")
    ref = ReferenceFigures(design=seed.name, fingerprint=key[1], scale=scale.name,
                           fwd_bwd_ms=float(speed.figures["fwd_bwd_ms"]),
                           train_mem_bytes=int(speed.figures["train_mem_bytes"]))
    _REFERENCE_CACHE[key] = ref
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ref.model_dump_json(indent=2))
    return ref


def _judge_speed(result: CheckResult, ref: ReferenceFigures, config: CheckConfig) -> None:
    slow = float(result.figures["fwd_bwd_ms"]) / max(ref.fwd_bwd_ms, 1e-6)
    mem = float(result.figures["train_mem_bytes"]) / max(ref.train_mem_bytes, 1)
    result.figures.update({"slowdown": round(slow, 3), "memory_ratio": round(mem, 3),
                           "ref_fwd_bwd_ms": ref.fwd_bwd_ms, "ref_train_mem_bytes": ref.train_mem_bytes})
    if slow > config.max_slowdown:
        result.passed = False
        result.message = (f"speed_memory: forward+backward takes {result.figures['fwd_bwd_ms']:.1f} ms, "
                          f"{slow:.1f}x the {ref.design} seed (limit {config.max_slowdown:g}x)")
    elif mem > config.max_memory_ratio:
        result.passed = False
        result.message = (f"speed_memory: training memory {result.figures['train_mem_bytes'] / 2**20:.1f} MiB is "
                          f"{mem:.1f}x the {ref.design} seed (limit {config.max_memory_ratio:g}x)")


def run_checks(design: Design, scale: str | ScaleConfig = "micro", reference: ReferenceFigures | None = None,
               limits: SandboxLimits | None = None, config: CheckConfig | None = None,
               cache_dir: str | Path | None = None, timeout_s: float | None = None) -> CheckReport:
    """Check ``design`` at ``scale``: static checks here, dynamic checks in one sandboxed child.

    ``reference`` gives the GPT-2 figures to judge speed/memory against; when None they are
    measured once per process (and stored in ``cache_dir`` when given). ``timeout_s`` bounds the
    wall-clock time of the design's sandboxed checks. Never raises for a bad design: every
    problem becomes a failing check, and ``first_error`` is its one-line message.
    """
    start = time.perf_counter()
    sc = scale if isinstance(scale, ScaleConfig) else get_scale(scale)
    limits = limits or SandboxLimits()
    config = config or CheckConfig()
    results, source = static_checks(design, list(limits.allowed_imports))
    if source is not None:
        dyn, _ = run_dynamic(design, source, sc, limits, config,
                             cache_dir=str(cache_dir) if cache_dir else None, timeout_s=timeout_s)
        results += dyn
        speed = next((r for r in results if r.name == "speed_memory" and r.passed), None)
        if speed is not None:
            try:
                ref = reference or reference_figures(sc, limits, config, cache_dir)
            except RuntimeError as exc:
                speed.figures["reference"] = f"unavailable: {exc}"
            else:
                _judge_speed(speed, ref, config)
    failed = [r for r in results if not r.passed]
    return CheckReport(design=design.name, scale=sc.name, passed=not failed and source is not None,
                       checks=results, first_error=failed[0].message if failed else None,
                       total_seconds=round(time.perf_counter() - start, 3))


def check_command(ref: str, scale: str = "micro", timeout_s: float | None = None) -> int:
    """CLI body of ``modis check PATH_OR_DESIGN``: print the report; 0 passed, 1 failed, 2 bad input.

    SIGTERM ends the check like Ctrl-C: the sandboxed children die and temporary directories go.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        design = load_design(ref)
        sc = get_scale(scale)
    except (DesignError, KeyError) as exc:
        print(f"error: {str(exc).strip(chr(34))}")
        return 2
    report = run_checks(design, sc, timeout_s=timeout_s)
    print(format_report(report))
    return 0 if report.passed else 1
