"""The verification engine: build a design's LM at a rung, train it, evaluate it, record it.

Design code is untrusted, so it runs only in :func:`export_entry`, in the design's sandboxed
process (:mod:`model_discovery.check.sandbox`), which builds the LM and exports its operator
graph and weights (:mod:`model_discovery.check.graph`) to a fresh directory. The judge's own
sandboxed process then runs :func:`sandbox_entry`, trusted code only: it trains the graph, tests
its causality after training (a leak fails the record before any fitness exists), evaluates it
with lm-eval and trains the probe graphs. The trusted parent prepares the token data (which
needs writes to the cache), logs the outcome to wandb and writes ``<out_dir>/verify_result.json``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil
import torch

from model_discovery.check import sandbox
from model_discovery.check.causality import CausalityLeak, test_causality
from model_discovery.check.graph import export_lm, load_graph_lm
from model_discovery.check.sandbox import DEFAULT_ALLOWED_IMPORTS, SandboxLimits, load_untrusted_module
from model_discovery.errors import one_line
from model_discovery.gau.compose import MODULE_IMPORTS, compile_design, load_module
from model_discovery.gau.library import load_design
from model_discovery.gau.scales import get_scale
from model_discovery.records import (CheckConfig, DataConfig, Design, DesignError, Replicate, ScaleConfig,
                                     TrainConfig, TrainResult, VerifyResult, over_seeds)
from model_discovery.paths import cache_root
from model_discovery.train.corpus import TokenData, corpus_documents, load_token_data
from model_discovery.train.loop import train
from model_discovery.verify.evaluation import evaluate
from model_discovery.verify.probes import PROBE_SCALE, PROBE_VOCAB, PROBES, ProbeConfig, init_seed, run_probes
from model_discovery.verify.tracking import log_verification

log = logging.getLogger(__name__)
SANDBOX_TARGET = "model_discovery.verify.engine:sandbox_entry"
EXPORT_TARGET = "model_discovery.verify.engine:export_entry"
TRAIN_DIR = "train"

# An executor runs the payload through sandbox_entry and returns
# (ok, result dict or None, one-line error, error kind, wall seconds, peak RSS bytes).
Executor = Callable[[dict[str, Any], Path], tuple[bool, dict[str, Any] | None, str, str, float, int]]


def _optional_module(name: str) -> Any | None:
    """Import ``name`` if it exists (a missing module returns None; a broken one raises)."""
    if importlib.util.find_spec(name.rsplit(".", 1)[0]) is None or importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


# -- the design's sandbox: build and export -----------------------------------------------------
def export_entry(payload: dict[str, Any]) -> dict[str, Any]:
    """Build the design's LM (and, with ``probes``, one fresh probe-rung LM per probe) and export
    their graph bundles into ``graph_dir`` (``lm/`` and ``probe/``). Runs design code: call it only
    inside the design's sandbox (``allowed_imports`` set) or on trusted designs in-process.

    ``payload``: ``design`` (JSON text), ``scale``, ``vocab_size``, ``seed``, ``micro_batch``,
    ``short_len`` (the random shorter length traced for the causality test), ``probes``,
    ``allowed_imports`` and ``graph_dir``. Returns the traced shapes.
    """

    design = Design.model_validate_json(payload["design"])
    scale = ScaleConfig.model_validate(payload["scale"])
    allowed = payload.get("allowed_imports")
    name = f"gau_{design.name.replace('-', '_')}"
    if allowed is None:  # trusted in-process path (tests on library seeds)
        module = load_module(compile_design(design), name=name)
    else:
        module = load_untrusted_module(compile_design(design), name, allowed)
    graph_dir = Path(payload["graph_dir"])
    T, micro = scale.context_len, int(payload["micro_batch"])
    torch.manual_seed(int(payload.get("seed", 0)))
    model = module.build_lm(scale.d_model, scale.n_block, int(payload["vocab_size"]), T)
    shapes = [("train", micro, T), ("eval", micro, T), ("eval", micro, int(payload["short_len"]))]
    export_lm(model, shapes, graph_dir / "lm")
    out = {"lm": shapes}
    if payload.get("probes"):
        cfg, ps = ProbeConfig(), PROBE_SCALE
        sets = {}
        for probe in PROBES:
            torch.manual_seed(init_seed(probe, 0))
            lm = module.build_lm(ps.d_model, ps.n_block, PROBE_VOCAB, ps.context_len)
            sets[probe] = {**dict(lm.named_parameters()), **dict(lm.named_buffers())}
        probe_shapes = [("train", cfg.batch_size, cfg.seq_len), ("eval", cfg.batch_size, cfg.seq_len)]
        export_lm(lm, probe_shapes, graph_dir / "probe", weights=sets)
        out["probe"] = probe_shapes
    return out


# -- the judge's sandbox: train, test, evaluate the graph ----------------------------------------
def sandbox_entry(payload: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one exported design; trusted code only (no design Python runs here).

    ``payload`` (JSON): ``graph_dir`` (bundles from :func:`export_entry`), ``scale`` (ScaleConfig
    dict), ``data_dir`` (a built token directory), ``data_config`` (DataConfig dict),
    ``cache_dir``, ``out_dir``, ``eval``, ``probes`` (bools), ``seed``, ``causality_seed`` and
    ``train`` (TrainConfig overrides, e.g. ``{"train_tokens": 20000}``). Returns a JSON dict:
    ``train`` (TrainResult dict), ``causality`` (figures), ``eval_metrics``, ``probe_scores`` and
    ``warnings``; or ``failure`` (``kind``, ``error``) when the trained graph is not causal.
    """
    scale = ScaleConfig.model_validate(payload["scale"])
    data = TokenData.open(payload["data_dir"])
    out_dir = Path(payload["out_dir"])
    graph_dir = Path(payload["graph_dir"])
    seed = int(payload.get("seed", 0))
    overrides = dict(payload.get("train") or {})
    train_tokens = overrides.pop("train_tokens", None)
    tolerances = CheckConfig()
    causal_seed = int(payload.get("causality_seed", seed))

    def causal(lm: Any) -> dict[str, Any]:
        return test_causality(lm, seed=causal_seed, tol_fp32=tolerances.causality_tol_fp32,
                              tol_fp64=tolerances.causality_tol_fp64)


    torch.manual_seed(seed)
    model = load_graph_lm(graph_dir / "lm")
    config = TrainConfig.from_scale(scale, model.num_params(), train_tokens=train_tokens,
                                    **{"seed": seed, "progress": False, **overrides})
    result = train(model, data, config, run_dir=out_dir / TRAIN_DIR)
    try:  # before any figure of the trained model counts
        causality = causal(model)
    except CausalityLeak as exc:
        return {"failure": {"kind": "causality", "error": f"after training: {exc}"}}

    warnings: list[str] = []
    eval_metrics: dict[str, float] = {}
    if payload.get("eval", True):
        try:
            config_data = DataConfig.model_validate(payload.get("data_config") or {})
            docs = corpus_documents("test", config_data, payload.get("cache_dir"))
            model.eval()
            eval_metrics = _floats(evaluate(model, data.tokenizer, scale, out_dir / "eval",
                                            documents=docs, eot_id=data.eot_id))
        except Exception as exc:  # noqa: BLE001 - a trained design keeps its result
            warnings.append(f"evaluation failed: {one_line(exc)}")
    probe_scores: dict[str, float] = {}
    if payload.get("probes", True) and (graph_dir / "probe").exists():
        try:
            # probes train at their own tiny rung: a property of the design, not of this rung
            probe_scores = _floats(run_probes(lambda name: load_graph_lm(graph_dir / "probe", weight_set=name),
                                              after_training=causal))
        except CausalityLeak as exc:
            return {"failure": {"kind": "causality", "error": f"probe LM after training: {exc}"}}
        except Exception as exc:  # noqa: BLE001 - a trained design keeps its result
            warnings.append(f"probes failed: {one_line(exc)}")
    return {"train": result.model_dump(mode="json"), "causality": causality, "eval_metrics": eval_metrics,
            "probe_scores": probe_scores, "warnings": warnings}


def _floats(scores: Any) -> dict[str, float]:
    if not isinstance(scores, dict):
        raise TypeError(f"expected a dict of scores, got {type(scores).__name__}")
    return {str(k): float(v) for k, v in scores.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


# -- executors ---------------------------------------------------------------------------------
def _graph_payload(payload: dict[str, Any], graph_dir: Path) -> dict[str, Any]:
    """Add what the export needs: the vocabulary, micro-batch and random shorter length."""
    scale = ScaleConfig.model_validate(payload["scale"])
    vocab = max(scale.vocab_size, TokenData.open(payload["data_dir"]).vocab_size)
    overrides = {k: v for k, v in dict(payload.get("train") or {}).items() if k != "train_tokens"}
    micro = TrainConfig.from_scale(scale, 1, **overrides).micro_size
    T = scale.context_len
    return {**payload, "graph_dir": str(graph_dir), "vocab_size": vocab, "micro_batch": micro,
            "short_len": secrets.SystemRandom().randint(max(2, T // 4), max(2, T - 1)),
            "causality_seed": secrets.randbelow(2**31)}


def _judged(result: dict[str, Any] | None, wall: float, peak: int
            ) -> tuple[bool, dict[str, Any] | None, str, str, float, int]:
    failure = (result or {}).get("failure")
    if isinstance(failure, dict):
        return False, None, str(failure.get("error") or "failed"), str(failure.get("kind") or "error"), wall, peak
    return True, result, "", "", wall, peak


def _execute_sandboxed(payload: dict[str, Any], out_dir: Path, limits: Any = None
                       ) -> tuple[bool, dict[str, Any] | None, str, str, float, int]:
    """Export in the design's sandbox (writes only a fresh graph dir), then train and evaluate the
    graph in the judge's sandbox (writes only ``out_dir``)."""
    if limits is None:
        limits = sandbox_limits(payload, out_dir)
    graph_dir = Path(tempfile.mkdtemp(prefix="modis-verify-graph-"))
    try:
        payload = _graph_payload(payload, graph_dir)
        design_limits = limits.model_copy(update={"writable_dirs": [graph_dir], "init_cuda": False,
                                                  "address_space_bytes": None})
        export = sandbox.run_sandboxed(EXPORT_TARGET, {**payload, "allowed_imports": list(limits.allowed_imports)},
                                       design_limits)
        wall, peak = float(export.wall_s or 0.0), int(export.peak_rss_bytes or 0)
        if not export.ok:
            error = " ".join(f"design export: {export.error or 'failed'}".split())
            return False, None, error, str(export.kind or ""), wall, peak
        reads = [graph_dir, Path(payload["data_dir"]), Path(payload["cache_dir"]), *limits.readable_paths]
        judge_limits = limits.model_copy(update={
            "readable_paths": [p for p in reads if p.exists()], "writable_dirs": [out_dir]})
        outcome = sandbox.run_sandboxed(SANDBOX_TARGET, payload, judge_limits)
        wall += float(outcome.wall_s or 0.0)
        peak = max(peak, int(outcome.peak_rss_bytes or 0))
        if not outcome.ok:
            return False, None, " ".join(str(outcome.error or "").split()), str(outcome.kind or ""), wall, peak
        return _judged(outcome.result, wall, peak)
    finally:
        shutil.rmtree(graph_dir, ignore_errors=True)


def sandbox_limits(payload: dict[str, Any], out_dir: Path, threads: int | None = None,
                   env: dict[str, str] | None = None) -> Any:
    """Default limits of a verification: ``out_dir`` writable, ``threads`` (default: the
    machine's), half its memory, ``env`` added to the child's environment (e.g. its
    ``CUDA_VISIBLE_DEVICES``), and a wall-clock limit of ``payload["time_limit_s"]`` (default
    15 min on CPU rungs, 48 h on GPU rungs). The compiled design module may also import ``json``."""
    scale = ScaleConfig.model_validate(payload["scale"])
    device = str((payload.get("train") or {}).get("device", scale.device))
    cpu_only = device == "cpu" or (device == "auto" and not _cuda_available())
    wall = float(payload.get("time_limit_s") or (900.0 if cpu_only else 48 * 3600.0))
    memory = max(4 * 2**30, int(psutil.virtual_memory().total * 0.5))
    return SandboxLimits(
        wall_time_s=wall, memory_bytes=memory, writable_dirs=[out_dir],
        threads=threads or max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1),
        env=dict(env or {}),
        # CUDA maps far more address space than it uses: do not cap it on GPU rungs
        address_space_bytes=None if cpu_only else 2**46,
        allowed_imports=sorted({*DEFAULT_ALLOWED_IMPORTS, *MODULE_IMPORTS}),
        allow_compilers=bool((payload.get("train") or {}).get("compile", False)), init_cuda=not cpu_only,
        max_file_bytes=64 * 2**30)


def _cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def sandbox_warmup(threads: int = 1) -> None:
    """Import what :func:`sandbox_entry` needs before the sandbox locks down; use ``threads``."""
    torch.set_num_threads(max(1, int(threads)))
    for name in _EVAL_IMPORTS:  # third-party modules lm-eval may import; some may be absent
        with suppress(Exception):  # reported when sandbox_entry uses it
            _optional_module(name)
    _quiet_lm_eval()


# Modules lm-eval imports lazily during an evaluation; some (fsspec) touch ctypes on import,
# which the sandbox forbids after lockdown, so they are imported during warm-up.
_EVAL_IMPORTS = ("fsspec.utils", "fsspec.compression", "datasets", "pandas", "pyarrow", "scipy.stats",
                 "sacrebleu", "lm_eval.evaluator", "lm_eval.tasks", "lm_eval.api.metrics", "lm_eval.filters",
                 "lm_eval.loggers", "jinja2", "xxhash", "zstandard")


def _quiet_lm_eval() -> None:
    """In the sandboxed child only: lm-eval records the git hash and environment details by
    running ``git`` and ``torch.utils.collect_env`` subprocesses, which the sandbox forbids;
    replace those two reporters with ones that record nothing."""
    try:
        import lm_eval.evaluator as evaluator
    except Exception:  # noqa: BLE001 - no lm-eval, nothing to quiet
        return
    evaluator.get_git_commit_hash = lambda: None
    evaluator.add_env_info = lambda storage: None


# -- the engine --------------------------------------------------------------------------------
def verify_design(design: Design, scale: ScaleConfig | str, out_dir: str | Path,
                  data_config: DataConfig | None = None, eval: bool = True, probes: bool = True,
                  wandb: bool = True, train_overrides: dict[str, Any] | None = None, seed: int = 0,
                  cache_dir: str | Path | None = None, limits: Any = None, replicates: int = 1,
                  threads: int | None = None, env: dict[str, str] | None = None) -> VerifyResult:
    """Train ``design`` at ``scale`` in the sandbox, evaluate it, and record the outcome.

    ``train_overrides`` adjusts the rung's recipe (any :class:`TrainConfig` field, plus
    ``train_tokens``). With ``replicates`` > 1 the design is trained and evaluated once per seed
    (``seed``, ``seed + 1``, ...; probes run once) and the record holds the means, their spread
    and each seed's result. The record is written to ``<out_dir>/verify_result.json`` and
    returned; a design that fails to build or train (with any seed) gives ``status="failed"`` with
    a one-line error rather than an exception. ``limits`` overrides the sandbox limits; else
    ``threads`` and ``env`` adjust the defaults (:func:`sandbox_limits`).
    """
    def execute(payload: dict[str, Any], out: Path) -> tuple[bool, dict[str, Any] | None, str, str, float, int]:
        return _execute_sandboxed(payload, out, limits or sandbox_limits(payload, out, threads, env))

    return _verify(design, scale, out_dir, data_config, eval, probes, wandb, train_overrides, seed,
                   cache_dir, execute, replicates)


def _verify(design: Design, scale: ScaleConfig | str, out_dir: str | Path, data_config: DataConfig | None,
            eval: bool, probes: bool, wandb: bool, train_overrides: dict[str, Any] | None, seed: int,
            cache_dir: str | Path | None, execute: Executor, replicates: int = 1) -> VerifyResult:
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    t0 = time.perf_counter()
    scale = get_scale(scale) if isinstance(scale, str) else scale
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_config = data_config or DataConfig()
    base: dict[str, Any] = {"design": design.name, "fingerprint": design.fingerprint(), "scale": scale.name,
                            "out_dir": str(out)}
    try:
        data = load_token_data(scale.vocab_size, data_config, cache_dir)
    except Exception as exc:  # noqa: BLE001 - data problems fail the record, with the cause
        record = VerifyResult(**base, status="failed", error=one_line(exc), error_kind="data",
                              wall_s=time.perf_counter() - t0)
        return _finish(record, out, wandb)
    payload = {"design": design.to_json(indent=None), "scale": scale.model_dump(mode="json"),
               "data_dir": str(data.path), "data_config": data_config.model_dump(mode="json"),
               "cache_dir": str(cache_root(cache_dir).resolve()), "out_dir": str(out),
               "eval": bool(eval), "probes": bool(probes), "seed": int(seed),
               "train": dict(train_overrides or {})}
    runs: list[tuple[int, Path, dict[str, Any]]] = []
    peak = 0
    for i in range(replicates):
        run_seed = seed + i
        run_out = out if i == 0 else out / "replicates" / f"seed{run_seed}"
        run_out.mkdir(parents=True, exist_ok=True)
        ok, result, error, kind, _wall, peak_rss = execute(
            {**payload, "seed": run_seed, "out_dir": str(run_out), "probes": bool(probes) and i == 0}, run_out)
        peak = max(peak, peak_rss)
        if not ok or result is None:
            which = f" (seed {run_seed})" if replicates > 1 else ""
            record = VerifyResult(**base, status="failed", error=(error or "verification failed") + which,
                                  error_kind=kind or "error", data_dir=str(data.path),
                                  peak_memory_bytes=peak, wall_s=time.perf_counter() - t0)
            return _finish(record, out, wandb)
        runs.append((run_seed, run_out, result))
    record = _record(base, runs, peak, str(data.path), time.perf_counter() - t0)
    return _finish(record, out, wandb)


def _record(base: dict[str, Any], runs: list[tuple[int, Path, dict[str, Any]]], peak_rss: int, data_dir: str,
            wall_s: float) -> VerifyResult:
    """The ``ok`` record of one or more trained seeds: means, spreads and per-seed results."""
    trains = [TrainResult.model_validate(result["train"]) for _, _, result in runs]
    train, first = trains[0], runs[0][2]
    peak = train.peak_memory_bytes if train.device.startswith("cuda") else max(train.peak_memory_bytes, peak_rss)
    metrics = [dict(result.get("eval_metrics", {})) for _, _, result in runs]
    warnings = [w for _, _, result in runs for w in result.get("warnings", []) if w]
    fields: dict[str, Any] = dict(eval_metrics=metrics[0], final_val_loss=train.final_val_loss)
    if len(runs) > 1:
        reps = [Replicate(seed=s, final_val_loss=t.final_val_loss, eval_metrics=m, out_dir=str(o))
                for (s, o, _), t, m in zip(runs, trains, metrics)]
        fields = dict(replicates=reps, **over_seeds(reps))
    return VerifyResult(**base, status="ok", seed=runs[0][0], train=train, probe_scores=first.get("probe_scores", {}),
                        tokens_per_s=train.tokens_per_s, peak_memory_bytes=peak,
                        warnings=list(dict.fromkeys(warnings)), data_dir=data_dir, wall_s=wall_s, **fields)


def _finish(record: VerifyResult, out: Path, wandb: bool) -> VerifyResult:
    if wandb:
        record.wandb_dir = log_verification(record, out)
    record.save(out)
    return record


def verify_command(ref: str, scale: str, out_dir: str, *, eval: bool = True, probes: bool = True,
                   wandb: bool = True, train_overrides: dict[str, Any] | None = None, replicates: int = 1) -> int:
    """``modis verify DESIGN --scale S --out DIR``: verify a seed name or design JSON, print a
    summary; returns 0 when the design trained, 1 when it failed, 2 on a bad argument."""
    try:
        design = load_design(ref)
        rung = get_scale(scale)
    except (DesignError, KeyError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    record = verify_design(design, rung, out_dir, eval=eval, probes=probes, wandb=wandb,
                           train_overrides=train_overrides, replicates=replicates)
    print(record.summary())
    print(f"record: {Path(out_dir) / 'verify_result.json'}")
    return 0 if record.ok else 1
