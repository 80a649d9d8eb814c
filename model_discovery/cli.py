"""``modis``: the command line of model_discovery."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from model_discovery.agents import AgentSpecError, LLMError, StructuredOutputError
from model_discovery.agents.usage import BudgetExceeded
from model_discovery.check import check_command
from model_discovery.config import ConfigError, SystemConfig
from model_discovery.evolution import EvolutionTree, UnknownDesignError
from model_discovery.evolution.format import format_leaderboard, format_tree
from model_discovery.gau import get_scale, load_design
from model_discovery.gau.hf_export import export_hf, export_verified
from model_discovery.gau.library import list_seeds, load_seed
from model_discovery.genome.display import format_design_units
from model_discovery.records import DesignError
from model_discovery.system import BuildSystem
from model_discovery.verify import kill_sandboxes, verify_command

app = typer.Typer(help="Discover language-model architectures by evolutionary search over GAU trees.",
                  no_args_is_help=True, add_completion=False)
tree_app = typer.Typer(help="Inspect or export the evolution tree.", no_args_is_help=True)
app.add_typer(tree_app, name="tree")

RunDir = typer.Option(Path("runs/default"), "--run-dir", "-r", help="run directory (tree, checkpoints, results)")
ConfigOpt = typer.Option(None, "--config", "-c", help="system config YAML (see etc/system.yaml)")


#: failures of LLM agents and their specs: shown as one line, not a traceback
AGENT_ERRORS = (LLMError, StructuredOutputError, AgentSpecError, BudgetExceeded)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _stop(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop: the cleanup is not interrupted again
    raise SystemExit(128 + signum)


@contextmanager
def stoppable() -> Iterator[None]:
    """SIGTERM (the GUI's Stop) ends the command like Ctrl-C: ``finally`` blocks run, so the
    scheduler releases its leases, and then every sandboxed child of this process is killed
    (each removes its temporary folders)."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if main else None
    try:
        yield
    finally:
        kill_sandboxes()
        if main:
            signal.signal(signal.SIGTERM, previous)


def _tree(run_dir: Path) -> EvolutionTree:
    if not (run_dir / "tree.sqlite").exists():
        _fail(f"{run_dir}: no tree.sqlite here; run `modis discover --run-dir {run_dir}` first")
    return EvolutionTree(run_dir / "tree.sqlite")


def _system(config: Optional[Path], run_dir: Path, **overrides: object):  # noqa: ANN202
    """The system of ``config``; without one, the run dir's own ``config.yaml`` when it has one
    (a resumed run keeps its settings), else the defaults. Command-line options override either."""
    saved = run_dir / "config.yaml"
    if config is None and saved.is_file():
        typer.secho(f"using {saved} (pass --config to use another)", err=True)
        config = saved
    try:
        base = SystemConfig.load(config) if config else SystemConfig(run_dir=run_dir)
        data = base.model_dump()
        if not config or run_dir != Path("runs/default"):
            data["run_dir"] = run_dir
        for key, value in overrides.items():
            if isinstance(value, dict):  # a nested section: override the fields given
                data[key] = {**data[key], **{k: v for k, v in value.items() if v is not None}}
            elif value is not None:
                data[key] = value
        return BuildSystem(SystemConfig.parse(data, origin=str(config or "<command line>")))
    except (ConfigError, DesignError) as exc:
        _fail(str(exc))


@app.command()
def discover(
    request: str = typer.Argument("discover a new model", help="what to look for (passed to the proposer)"),
    steps: Optional[int] = typer.Option(None, "--steps", "-n", help="design steps (default: config, 4)"),
    scale: Optional[str] = typer.Option(None, "--scale", "-s", help="rung to verify at (default: config, micro)"),
    selector: Optional[str] = typer.Option(None, help="evolutionary | random (default: config)"),
    agents: Optional[Path] = typer.Option(None, "--agents", help="agent spec folder (default: symbolic)"),
    no_eval: bool = typer.Option(False, "--no-eval", help="skip lm-eval after training"),
    no_probes: bool = typer.Option(False, "--no-probes", help="skip synthetic probes"),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="local verification workers (default: config, 1)"),
    config: Optional[Path] = ConfigOpt,
    run_dir: Path = RunDir,
) -> None:
    """Run discovery steps (design, check) while the workers verify, and print the leaderboard."""
    system = _system(config, run_dir, selector=selector, agent_spec_dir=agents, steps=steps,
                     ladder=[scale] if scale else None, workers=workers,
                     verify={**({"eval": False} if no_eval else {}), **({"probes": False} if no_probes else {})})
    with stoppable():
        try:
            report = system(request)
        except AGENT_ERRORS as exc:
            _fail(str(exc))
        finally:
            system.close()
    typer.echo(report.summary())


@app.command()
def design(
    goal: str = typer.Argument("", help="goal passed to the proposer"),
    agents: Optional[Path] = typer.Option(None, "--agents", help="agent spec folder (default: symbolic)"),
    config: Optional[Path] = ConfigOpt,
    run_dir: Path = RunDir,
) -> None:
    """Run one design step (propose, review, implement, check, commit) without verifying."""
    system = _system(config, run_dir, agent_spec_dir=agents)
    with stoppable():
        try:
            system.bootstrap()
            outcome = system.design_step(goal)
        except AGENT_ERRORS as exc:
            _fail(str(exc))
        finally:
            system.close()
    typer.echo(outcome.model_dump_json(indent=2))
    raise typer.Exit(0 if outcome.status == "committed" else 1)


@app.command()
def check(ref: str = typer.Argument(..., help="design JSON path or seed name"),
          scale: str = typer.Option("micro", "--scale", "-s"),
          timeout: Optional[float] = typer.Option(None, "--timeout", min=1.0,
                                                  help="wall-clock seconds for the sandboxed checks (default 120 "
                                                       "per sandboxed process)")) -> None:
    """Check a design in the sandbox and print the report."""
    raise typer.Exit(check_command(ref, scale, timeout_s=timeout))


def _check_device(value: Optional[str]) -> Optional[str]:
    if value is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise typer.BadParameter(f"{value!r} is not cpu, cuda or cuda:N")
    return value


@app.command()
def verify(ref: str = typer.Argument(..., help="design JSON path or seed name"),
           scale: str = typer.Option("micro", "--scale", "-s"),
           out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="result folder"),
           train_tokens: Optional[int] = typer.Option(None, "--train-tokens", min=1,
                                                      help="token budget (default: the rung's)"),
           compile: bool = typer.Option(False, "--compile", help="torch.compile the model"),
           device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: the rung's)",
                                                callback=_check_device),
           no_eval: bool = typer.Option(False, "--no-eval", help="skip lm-eval after training"),
           no_probes: bool = typer.Option(False, "--no-probes", help="skip synthetic probes"),
           no_wandb: bool = typer.Option(False, "--no-wandb", help="no wandb run"),
           replicates: int = typer.Option(1, "--replicates", min=1, max=16,
                                          help="training seeds; the record holds their means and spread")) -> None:
    """Train and evaluate a design at one rung; write its result record."""
    overrides = {k: v for k, v in {"train_tokens": train_tokens, "compile": compile or None,
                                   "device": device}.items() if v is not None}
    with stoppable():
        code = verify_command(ref, scale, str(out_dir or Path("runs/verify") / f"{Path(ref).stem}@{scale}"),
                              eval=not no_eval, probes=not no_probes, wandb=not no_wandb,
                              train_overrides=overrides or None, replicates=replicates)
    raise typer.Exit(code)


@app.command()
def seeds() -> None:
    """List the seed designs of the library."""
    for name in list_seeds():
        typer.echo(f"{name:<12} {load_seed(name).summary}")


@app.command()
def leaderboard(scale: Optional[str] = typer.Option(None, "--scale", "-s"),
                metric: str = typer.Option("fitness", "--metric", "-m",
                                           help="fitness, or a dotted path into the result record, e.g. "
                                                "eval_metrics.local_ppl/bits_per_byte or final_val_loss"),
                limit: int = typer.Option(20, "--limit"), run_dir: Path = RunDir) -> None:
    """Best designs by fitness or by any recorded metric (per rung)."""
    tree = _tree(run_dir)
    typer.echo(format_leaderboard(tree.leaderboard(scale=scale, metric=metric, limit=limit),
                                  metric=None if metric == "fitness" else metric))


@tree_app.command("show")
def tree_show(run_dir: Path = RunDir, limit: int = typer.Option(50, "--limit")) -> None:
    """Print the evolution tree as an indented lineage list."""
    typer.echo(format_tree(_tree(run_dir), limit=limit))


@tree_app.command("units")
def tree_units(ref: str = typer.Argument(..., help="design name in the run's tree, design JSON path or seed name"),
             unit: Optional[str] = typer.Option(None, "--unit", "-u", help="show only this unit"),
             no_source: bool = typer.Option(False, "--no-source", help="omit the units' code"),
             run_dir: Path = RunDir) -> None:
    """Print a design's units: where each came from, an invented unit's genome, and the code."""
    design = None
    if (run_dir / "tree.sqlite").exists():
        try:
            design = EvolutionTree(run_dir / "tree.sqlite").get_design(ref).design
        except UnknownDesignError:
            design = None
    try:
        design = design or load_design(ref)
        typer.echo(format_design_units(design, unit, source=not no_source))
    except (DesignError, KeyError) as exc:
        _fail(str(exc).strip("'\""))


@tree_app.command("export")
def tree_export(out: Path = typer.Argument(..., help="JSONL file to write"), run_dir: Path = RunDir) -> None:
    """Export every design, review, check and result as JSONL."""
    n = _tree(run_dir).export(out)
    typer.echo(f"wrote {n} records to {out}")


@tree_app.command("get")
def tree_get(name: str = typer.Argument(..., help="design name"), run_dir: Path = RunDir) -> None:
    """Print one design as JSON: the design, its place in the tree, proposal, reviews, checks,
    results and the coder's attempts."""
    tree = _tree(run_dir)
    try:
        rec = tree.get_design(name)
        dump = {"record": rec.model_dump(mode="json"),
                "proposals": [json.loads(p.model_dump_json()) for p in tree.proposals(name)],
                "reviews": [json.loads(r.model_dump_json()) for r in tree.reviews(name)],
                "checks": [json.loads(c.model_dump_json()) for c in tree.checks(name)],
                "results": [json.loads(r.model_dump_json()) for r in tree.results(name)],
                "attempts": [a.model_dump(mode="json") for a in tree.attempts(name)]}
    except UnknownDesignError as exc:
        _fail(f"{run_dir}: {str(exc).strip(chr(39) + chr(34))}")
    finally:
        tree.close()
    typer.echo(json.dumps(dump, indent=1))


def _budget(text: str) -> tuple[str, int]:
    scale, sep, value = text.partition("=")
    if not sep or not value.strip().isdigit():
        _fail(f"--budget {text!r}: expected SCALE=N, e.g. micro=8")
    return scale.strip(), int(value)


@app.command()
def serve(
    config: Optional[Path] = ConfigOpt,
    run_dir: Path = RunDir,
    tree_url: Optional[str] = typer.Option(None, "--tree-url", help="shared tree, e.g. postgresql+psycopg://..."),
    scale: Optional[list[str]] = typer.Option(None, "--scale", "-s", help="rung to verify (repeatable)"),
    budget: Optional[list[str]] = typer.Option(None, "--budget", help="SCALE=N budget override (repeatable)"),
    runner: Optional[str] = typer.Option(None, "--runner", help="local | ray | beaker (default: config)"),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="local verification workers"),
    owner: Optional[str] = typer.Option(None, "--owner", help="lease owner name (default host:pid)"),
    lease_ttl: Optional[float] = typer.Option(None, "--lease-ttl", help="seconds a claim lives without a heartbeat"),
    train_tokens: Optional[int] = typer.Option(None, "--train-tokens", help="override every rung's token budget"),
    replicates: Optional[int] = typer.Option(None, "--replicates", help="training seeds per verification"),
    no_eval: bool = typer.Option(False, "--no-eval", help="skip lm-eval after training"),
    no_probes: bool = typer.Option(False, "--no-probes", help="skip synthetic probes"),
    no_wandb: bool = typer.Option(False, "--no-wandb", help="no wandb run per verification"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile every model trained"),
    max_jobs: Optional[int] = typer.Option(None, "--max-jobs", help="stop after this many verifications"),
    exit_when_idle: bool = typer.Option(False, "--exit-when-idle", help="stop when nothing is left to claim"),
    poll: float = typer.Option(10.0, "--poll", help="seconds between selection rounds when idle"),
) -> None:
    """Run a verification node: claim, verify and record picks from a (shared) tree."""
    budgets = dict(_budget(b) for b in budget or [])
    verify = {"train_tokens": train_tokens, "replicates": replicates,
              **({"eval": False} if no_eval else {}), **({"probes": False} if no_probes else {}),
              **({"wandb": False} if no_wandb else {}), **({"compile": True} if compile else {})}
    system = _system(config, run_dir, tree_url=tree_url, ladder=scale or None, runner=runner, workers=workers,
                     lease_ttl_s=lease_ttl, budgets=budgets or None, verify=verify)
    with stoppable():
        try:
            done = system.serve(owner, max_jobs=max_jobs, exit_when_idle=exit_when_idle, poll_s=poll)
        finally:
            system.close()
    typer.echo(f"verified {len(done)}: {', '.join(done) or '-'}")


@app.command()
def gui(port: int = typer.Option(8501, "--port"), run_dir: Path = RunDir,
        address: str = typer.Option("127.0.0.1", "--address",
                                    help="interface to listen on (the GUI starts processes: "
                                         "0.0.0.0 exposes that to the network)")) -> None:
    """Start the Streamlit front-end (listens on 127.0.0.1 unless --address says otherwise)."""
    main = Path(__file__).with_name("app") / "main.py"
    env = {**os.environ, "MODIS_RUN_DIR": str(run_dir)}
    raise typer.Exit(subprocess.call([sys.executable, "-m", "streamlit", "run", str(main),
                                      "--server.port", str(port), "--server.address", address,
                                      "--server.headless", "true",
                                      "--client.toolbarMode", "minimal"], env=env))


@app.command()
def export(ref: str = typer.Argument(..., help="design name in --run-dir's tree, design JSON path or seed name"),
           out_dir: Path = typer.Argument(..., help="Hugging Face model folder to write"),
           scale: Optional[str] = typer.Option(None, "--scale", "-s", help="rung (default: a run's best verified "
                                               "rung, else micro)"),
           run_dir: Optional[Path] = typer.Option(None, "--run-dir", "-r", help="run whose tree holds the design: "
                                                  "its trained weights are exported when it was verified"),
           trained: Optional[Path] = typer.Option(None, "--from", help="verification folder: export its trained "
                                                  "weights and tokenizer")) -> None:
    """Export a design as a Hugging Face model folder (loads with trust_remote_code=True)."""
    try:
        if run_dir is not None:
            tree = _tree(run_dir)
            try:
                design = tree.get_design(ref).design
                results = [r for r in tree.results(ref) if r.status == "ok" and (scale is None or r.scale == scale)]
            finally:
                tree.close()
            if trained is None and results:
                trained = Path(max(results, key=lambda r: get_scale(r.scale).d_model).result.out_dir)
        else:
            design = load_design(ref)
        path = (export_verified(design, trained, out_dir) if trained
                else export_hf(design, get_scale(scale or "micro"), out_dir))
    except (DesignError, KeyError, UnknownDesignError) as exc:
        _fail(str(exc).strip("'\""))
    typer.echo(json.dumps({"exported": str(path), "trained": str(trained) if trained else None}))


if __name__ == "__main__":
    app()
