"""``BuildSystem``: the one place that wires the parts into a callable discovery system.

    system = BuildSystem()                     # offline defaults: symbolic agents, SQLite, micro rung
    report = system("discover a new model")    # design steps + verifications, best designs back
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from model_discovery.agents import AgentSpec, build_agents, default_spec_dir, load_agent_specs
from model_discovery.agents.usage import USAGE_FILE, BudgetExceeded, UsageLedger
from model_discovery.check import run_checks
from model_discovery.config import ConfigError, SystemConfig
from model_discovery.design import DesignFlow, DesignOutcome, FlowConfig
from model_discovery.design.context import OBSERVATION_FILE
from model_discovery.evolution import EvolutionTree
from model_discovery.evolution.format import format_leaderboard
from model_discovery.gau.library import list_seeds, load_seed
from model_discovery.knowledge import KnowledgeConfig, KnowledgeEngine
from model_discovery.records import (CheckReport, Design, LeaderboardRow, ResultRecord, VerifyJob, VerifyOptions, VerifyPick,
                                     VerifyResult)
from model_discovery.runners import Runner, make_runner
from model_discovery.safe_io import write_text
from model_discovery.scheduler import Emit, Scheduler, json_events, no_events
from model_discovery.select import RandomSelector, Selector
from model_discovery.select.fitness import read_metrics

log = logging.getLogger(__name__)


class DiscoveryReport(BaseModel):
    """What one call of the system did and the best designs so far."""

    model_config = ConfigDict(extra="forbid")
    request: str
    outcomes: list[DesignOutcome] = Field(default_factory=list)
    verified: list[str] = Field(default_factory=list, description="design@scale verified in this call")
    best: list[LeaderboardRow] = Field(default_factory=list)
    findings: list[str] = Field(default_factory=list, description="what the run can claim, with its evidence")
    stats: dict[str, Any] = Field(default_factory=dict)
    usage: str = Field("", description="the LLM agents' calls, tokens and cost, per role (usage.json has each call)")
    stopped: str | None = Field(None, description="why the design steps stopped early (e.g. the agent budget)")

    def pass_at_k(self) -> dict[int, float]:
        """Share of checked designs that passed within k check attempts (k = 1 .. most tried)."""
        checked = [o for o in self.outcomes if o.status in ("committed", "failed")]
        most = max((o.check_attempts for o in checked), default=0)
        return {k: sum(o.status == "committed" and o.check_attempts <= k for o in checked) / len(checked)
                for k in range(1, most + 1)}

    def summary(self) -> str:
        ok = sum(o.status == "committed" for o in self.outcomes)
        passes = ", ".join(f"pass@{k} {v:.2f}" for k, v in self.pass_at_k().items())
        dup = sum(o.status == "duplicate" for o in self.outcomes)
        lines = [f"{len(self.outcomes)} design steps: {ok} committed, "
                 f"{sum(o.status == 'failed' for o in self.outcomes)} failed checks, "
                 f"{sum(o.status == 'rejected' for o in self.outcomes)} rejected"
                 + (f", {dup} duplicates" if dup else "")
                 + (f" ({passes})" if passes else "") + f"; {len(self.verified)} verifications"]
        lines += [f"stopped: {self.stopped}"] if self.stopped else []
        lines += [self.usage] if self.usage else []
        return "\n".join(lines + [format_leaderboard(self.best)] + self.findings)


class DiscoverySystem:
    """A configured discovery system over one run directory (resumable).

    The one place that builds the parts: the tree, the selector, the runner, and (on first use)
    the knowledge engine, the agents and the design flow. :meth:`discover` takes design steps
    while a :class:`~model_discovery.scheduler.Scheduler` keeps the verification workers busy;
    :meth:`serve` is a verification node without design steps (``modis serve``).
    """

    def __init__(self, config: SystemConfig) -> None:
        self.config = config
        config.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(config.run_dir / "config.yaml", config.to_yaml())
        self.tree = EvolutionTree(config.resolved_tree_url)
        self.selector = self._make_selector()
        self.usage = UsageLedger(budget=config.flow.budget)
        self.usage_path = config.run_dir / USAGE_FILE
        self.usage.load(self.usage_path)  # a resumed run keeps what it spent
        self.runner = self._make_runner()
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._state_path = config.run_dir / "state.json"

    # -- wiring -----------------------------------------------------------------------------
    def _make_selector(self) -> Selector:
        cfg = self.config.selector_config()
        return RandomSelector(cfg) if self.config.selector == "random" else Selector(cfg)

    def _make_runner(self) -> Runner:
        cfg = self.config
        if cfg.runner == "local":
            return make_runner("local", workers=cfg.workers, threads=cfg.worker_threads, gpus=cfg.worker_gpus)
        return make_runner(cfg.runner, **cfg.runner_options)

    def check(self, design: Design, scale: str) -> CheckReport:
        """The sandboxed checks of ``design`` at rung ``scale``, with this run's cache."""
        return run_checks(design, scale, cache_dir=self.config.cache_dir)

    @property
    def verify_options(self) -> VerifyOptions:
        """What every verification job of this run does (with this run's cache unless it names one)."""
        opts, cache = self.config.verify, self.config.cache_dir
        return opts if opts.cache_dir or cache is None else opts.model_copy(update={"cache_dir": str(cache)})

    @cached_property
    def knowledge(self) -> KnowledgeEngine:
        return KnowledgeEngine(KnowledgeConfig(cache_dir=self.config.run_dir / "knowledge_cache",
                                               sources=list(self.config.flow.knowledge_sources)))

    @cached_property
    def specs(self) -> dict[str, AgentSpec]:
        """The agent specs of the spec folder (default: the symbolic specs), by role."""
        specs = load_agent_specs(self.config.agent_spec_dir or default_spec_dir() / "symbolic")
        return {role: spec.model_copy(update={"options": {**spec.options, "seed": self.config.seed}})
                if spec.provider == "symbolic" and role == "proposer" else spec for role, spec in specs.items()}

    @cached_property
    def agents(self) -> dict[str, Any]:
        """The agents of the specs, by role."""
        return build_agents(self.specs, ledger=self.usage, knowledge=self.knowledge)

    @cached_property
    def flow(self) -> DesignFlow:
        a = self.agents
        return DesignFlow(self.tree, self.selector, a["proposer"], a["reviewer"], a["coder"], check=self.check,
                          config=flow_config(self.config.flow, self.specs),
                          checkpoint_path=self.config.run_dir / "flow_checkpoints.sqlite",
                          knowledge=self.knowledge, planner=a.get("planner"))

    def scheduler(self, owner: str | None = None, emit: Emit = no_events, select_every_s: float = 1.0) -> Scheduler:
        """A scheduler over this system's tree and runner, with a selector of its own."""
        cfg = self.config
        return Scheduler(self.tree, self._make_selector(), self.runner,
                         budgets={s: cfg.budget(s) for s in cfg.ladder}, owner=owner or self.owner,
                         run_dir=cfg.run_dir, options=self.verify_options,
                         on_result=self._observe, emit=emit, select_every_s=select_every_s)

    # -- state ------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return json.loads(self._state_path.read_text()) if self._state_path.exists() else {"step": 0}

    def _save_state(self, state: dict[str, Any]) -> None:
        write_text(self._state_path, json.dumps(state))

    # -- operations -------------------------------------------------------------------------
    def release_orphaned_leases(self) -> list[str]:
        """Release live leases held by processes of this host that no longer exist (a killed run)."""
        host = socket.gethostname()
        freed = []
        for lease in self.tree.leases(live_only=True):
            owner_host, _, pid = lease.owner.rpartition(":")
            if owner_host == host and pid.isdigit() and not psutil.pid_exists(int(pid)):
                if self.tree.release(lease.design, lease.scale, lease.owner):
                    freed.append(f"{lease.design}@{lease.scale}")
        return freed

    def bootstrap(self) -> list[str]:
        """Put the seed designs into the tree (idempotent), each with its check report; free the
        verification leases a killed run of this host left behind."""
        for key in self.release_orphaned_leases():
            log.info("released the lease of a stopped run on %s", key)
        names = []
        for seed in self.config.seeds or list_seeds():
            design = load_seed(seed)
            existing = self.tree.find_fingerprint(design.fingerprint())
            if existing is not None:
                names.append(existing.name)
                continue
            if self.tree.has_design(design.name):  # a run keeps the seed it started with
                log.info("seed %s: the run keeps its stored version (the library's source differs)", seed)
                names.append(design.name)
                continue
            report = self.check(design, self.config.flow.check_scale)
            if not report.passed:
                raise ConfigError(f"seed {seed!r} fails its check: {report.first_error}")
            names.append(self.tree.add_design(design, check=report, operator="seed").name)
        return names

    def design_step(self, goal: str = "") -> DesignOutcome:
        """One design run (resumes an interrupted one first)."""
        state = self._state()
        thread = state.get("thread") or f"design-{state['step']:05d}"
        self._save_state({**state, "thread": thread})
        rng = getattr(self.agents["proposer"], "rng", None)
        if rng is not None:  # reproducible per step, also after a resume
            rng.seed(f"{self.config.seed}:{state['step']}")
        try:
            with self.usage.design_scope(thread):  # LLM calls are tagged with the step, then its design
                outcome = self.flow.run(thread, goal=goal)
            if outcome.design and outcome.status in ("committed", "failed"):
                self.usage.retag(thread, outcome.design)
        finally:
            self.usage.save(self.usage_path)
        self._save_state({"step": state["step"] + 1, "thread": None})
        with (self.config.run_dir / "outcomes.jsonl").open("a") as fh:
            fh.write(outcome.model_dump_json() + "\n")
        return outcome

    def _observe(self, job: VerifyJob, pick: VerifyPick, row: ResultRecord, result: VerifyResult) -> None:
        """The observer's note on a first verification, beside its record (``observation.md``);
        the design flow shows it to the agents with the result."""
        observer = self.agents.get("observer")
        if observer is None or pick.replicate or not result.ok:
            return

        def flat(fit: float | None, res: VerifyResult) -> dict[str, Any]:
            return {"fitness": fit, "final_val_loss": res.final_val_loss, **res.eval_metrics, **res.probe_scores}

        results = flat(row.fitness, result)
        parents = self.tree.parents(job.design.name)
        for res in self.tree.results(parents[0], job.scale) if parents else []:
            results.update({f"parent_{k}": v for k, v in flat(res.fitness, res.result).items()})
        note = observer.observe(job.design, {k: v for k, v in results.items() if v is not None})
        write_text(Path(job.out_dir) / OBSERVATION_FILE, note + "\n")

    def discover(self, steps: int | None = None, goal: str = "", progress: bool = True) -> DiscoveryReport:
        """Bootstrap, then ``steps`` design steps while the scheduler verifies what the selector
        picks (seeds first); returns when the steps are taken and nothing is left to verify."""
        self.bootstrap()
        report = DiscoveryReport(request=goal)
        sched = self.scheduler()
        until, abort = threading.Event(), threading.Event()
        failure: list[BaseException] = []

        def verify() -> None:
            try:
                sched.run(until=until, abort=abort, progress=progress)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                failure.append(exc)
                abort.set()

        worker = threading.Thread(target=verify, name="scheduler", daemon=True)
        worker.start()
        try:
            n = self.config.steps if steps is None else steps
            for _ in tqdm(range(n), desc="discover", disable=not progress):
                report.stopped = self.usage.exceeded()
                if abort.is_set() or report.stopped:
                    break
                try:
                    report.outcomes.append(self.design_step(goal))
                except BudgetExceeded as exc:  # the step resumes from its checkpoint in a later run
                    report.stopped = str(exc)
                    break
            until.set()
            worker.join()  # a stop (KeyboardInterrupt, SystemExit) while waiting aborts the scheduler
        except BaseException:
            abort.set()
            raise
        finally:
            until.set()
            worker.join()
        if failure:
            raise failure[0]
        report.verified = list(sched.done)
        report.best = self.leaderboard(limit=5)
        report.findings = self.findings()
        report.stats = self.tree.stats().model_dump(mode="json")
        report.usage = self.usage.summary()
        return report

    def serve(self, owner: str | None = None, *, max_jobs: int | None = None, exit_when_idle: bool = False,
              poll_s: float = 10.0, emit: Emit = json_events) -> list[str]:
        """Be a verification node: claim picks (within the budgets of the ladder), verify them on
        the runner, store the results, repeat; each event is one JSON line on stdout. Stops after
        ``max_jobs`` results, or with ``exit_when_idle`` when nothing is left to claim and no
        live lease remains at its rungs. Returns the ``design@scale`` pairs verified."""
        sched = self.scheduler(owner, emit, select_every_s=poll_s)
        emit("start", owner=sched.owner, tree=redact_url(self.config.resolved_tree_url), budgets=sched.budgets)
        try:
            return sched.run(exit_when_idle=exit_when_idle, max_jobs=max_jobs, poll_s=poll_s)
        finally:
            emit("exit", owner=sched.owner, verified=len(sched.done))

    def findings(self) -> list[str]:
        """What the run may claim at each rung: the recommended design, whether it is confirmed
        better than the best seed, which metrics count, the surrogate's record, the training spent."""
        lines = []
        for scale in self.config.ladder:
            rows = [r for r in self.tree.results(scale=scale) if r.status == "ok"]
            results = [r.result for r in rows]
            if not results:
                continue
            est = self.selector.estimates(self.tree, scale)
            best, confirmed = self.selector.best(self.tree, scale)
            runs = sum(r.seeds for r in rows)
            tokens = sum((r.train.tokens if r.train else 0) * len(r.seeds()) for r in results)
            lines.append(f"{scale}: {len(results)} designs verified, {runs} training runs, {tokens:,} training tokens")
            need = self.selector.policy.min_seeds
            if confirmed is not None:
                lines.append(f"  best: {confirmed} {est[confirmed]}: its lower bound beats every seed's mean")
            elif best is not None:
                lines.append(f"  leading: {best} {est[best]}; not confirmed better than the best seed "
                             f"(needs {need} seeds, and mean - {self.selector.policy.z:g} SE above the best seed's mean "
                             f"on {need} seeds)")
            counted = self.selector.counted_tasks(self.tree, scale)
            tasks = sorted({t for r in results for t in read_metrics(r).evals})
            dropped = [t for t in tasks if t not in counted]
            lines.append("  fitness counts: loss" + (f", tasks {', '.join(sorted(counted))}" if counted else "")
                         + (f"; left out at chance: {', '.join(dropped)}" if dropped else ""))
        if lines and not self.selector.random_choices:
            lines.append(self.selector.surrogate_report(self.tree))
        return lines

    def leaderboard(self, scale: str | None = None, limit: int = 20) -> list[LeaderboardRow]:
        return self.tree.leaderboard(scale=scale, limit=limit)

    def __call__(self, request: str = "discover a new model", steps: int | None = None,
                 progress: bool = True) -> DiscoveryReport:
        return self.discover(steps=steps, goal=request, progress=progress)

    def close(self) -> None:
        if "flow" in self.__dict__:
            self.flow.close()
        self.runner.close()
        self.tree.close()


def flow_config(flow: FlowConfig, specs: dict[str, AgentSpec]) -> FlowConfig:
    """The flow's config with the agent specs' ``max_rounds`` applied (reviewer: review rounds,
    coder: debug tries): a spec that sets it overrides ``flow`` for its agent."""
    update = {}
    if "reviewer" in specs and specs["reviewer"].max_rounds is not None:
        update["max_review_rounds"] = specs["reviewer"].max_rounds
    if "coder" in specs and specs["coder"].max_rounds is not None:
        update["max_debug_tries"] = specs["coder"].max_rounds
    return flow.model_copy(update=update)


def redact_url(url: str) -> str:
    """``url`` without a password."""
    head, sep, tail = url.rpartition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    return f"{scheme}://{creds.split(':', 1)[0]}@{tail}"


def BuildSystem(config: SystemConfig | dict[str, Any] | str | Path | None = None) -> DiscoverySystem:  # noqa: N802
    """Build a discovery system from a config object, a dict, a YAML path, or defaults."""
    if isinstance(config, dict):
        config = SystemConfig.parse(config)
    elif config is not None and not isinstance(config, SystemConfig):
        config = SystemConfig.load(config)
    return DiscoverySystem(config or SystemConfig())
