"""``BuildSystem``: the one place that wires the parts into a callable discovery system.

    system = BuildSystem()                     # offline defaults: symbolic agents, SQLite, micro rung
    report = system("discover a new model")    # design steps + verifications, best designs back
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from model_discovery.agents.usage import UsageLedger
from model_discovery.config import ConfigError, SystemConfig
from model_discovery.design import DesignFlow, DesignOutcome
from model_discovery.evolution import LeaderboardRow
from model_discovery.gau.library import list_seeds, load_seed
from model_discovery.safe_io import write_text

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

    def pass_at_k(self) -> dict[int, float]:
        """Share of checked designs that passed within k check attempts (k = 1 .. most tried)."""
        checked = [o for o in self.outcomes if o.status in ("committed", "failed")]
        most = max((o.check_attempts for o in checked), default=0)
        return {k: sum(o.status == "committed" and o.check_attempts <= k for o in checked) / len(checked)
                for k in range(1, most + 1)}

    def summary(self) -> str:
        ok = sum(o.status == "committed" for o in self.outcomes)
        passes = ", ".join(f"pass@{k} {v:.2f}" for k, v in self.pass_at_k().items())
        lines = [f"{len(self.outcomes)} design steps: {ok} committed, "
                 f"{sum(o.status == 'failed' for o in self.outcomes)} failed checks, "
                 f"{sum(o.status == 'rejected' for o in self.outcomes)} rejected"
                 + (f" ({passes})" if passes else "") + f"; {len(self.verified)} verifications"]
        from model_discovery.evolution.format import format_leaderboard

        return "\n".join(lines + [format_leaderboard(self.best)] + self.findings)


class DiscoverySystem:
    """A configured discovery system over one run directory (resumable)."""

    def __init__(self, config: SystemConfig) -> None:
        from model_discovery.check import run_checks
        from model_discovery.evolution import EvolutionTree
        from model_discovery.runners import make_runner

        self.config = config
        config.run_dir.mkdir(parents=True, exist_ok=True)
        (config.run_dir / "config.yaml").write_text(config.to_yaml())
        self.tree = EvolutionTree(config.resolved_tree_url)
        self.selector = self._make_selector()
        self.usage = UsageLedger()
        self.knowledge = self._make_knowledge()
        proposer, reviewer, coder = self._make_agents()
        self.proposer = proposer
        self._run_checks = run_checks
        self.flow = DesignFlow(self.tree, self.selector, proposer, reviewer, coder, check=run_checks,
                               config=config.flow, checkpoint_path=config.run_dir / "flow_checkpoints.sqlite",
                               knowledge=self.knowledge, planner=self.planner)
        self.runner = make_runner(config.runner, **config.runner_options)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._state_path = config.run_dir / "state.json"

    # -- wiring -----------------------------------------------------------------------------
    def _make_selector(self) -> Any:
        from model_discovery.select import RandomSelector, Selector

        cfg = self.config.selector_config()
        return RandomSelector(cfg) if self.config.selector == "random" else Selector(cfg)

    def _make_agents(self) -> tuple[Any, Any, Any]:
        """Proposer, reviewer, coder from the spec folder (default: the symbolic specs)."""
        from model_discovery.agents import build_agents, default_spec_dir, load_agent_specs

        specs = load_agent_specs(self.config.agent_spec_dir or default_spec_dir() / "symbolic")
        specs = {role: spec.model_copy(update={"options": {**spec.options, "seed": self.config.seed}})
                 if spec.provider == "symbolic" and role == "proposer" else spec for role, spec in specs.items()}
        agents = build_agents(specs, ledger=self.usage, knowledge=self.knowledge)
        self.planner, self.observer = agents.get("planner"), agents.get("observer")
        return agents["proposer"], agents["reviewer"], agents["coder"]

    def _make_knowledge(self) -> Any:
        from model_discovery.knowledge import KnowledgeConfig, KnowledgeEngine

        return KnowledgeEngine(KnowledgeConfig(cache_dir=self.config.run_dir / "knowledge_cache"))

    # -- state ------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return json.loads(self._state_path.read_text()) if self._state_path.exists() else {"step": 0}

    def _save_state(self, state: dict[str, Any]) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self._state_path)

    # -- operations -------------------------------------------------------------------------
    def release_orphaned_leases(self) -> list[str]:
        """Release live leases held by processes of this host that no longer exist (a killed run)."""
        import psutil

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
            report = self._run_checks(design, self.config.flow.check_scale)
            if not report.passed:
                raise ConfigError(f"seed {seed!r} fails its check: {report.first_error}")
            names.append(self.tree.add_design(design, check=report, operator="seed").name)
        return names

    def design_step(self, goal: str = "") -> DesignOutcome:
        """One design run (resumes an interrupted one first)."""
        state = self._state()
        thread = state.get("thread") or f"design-{state['step']:05d}"
        self._save_state({**state, "thread": thread})
        rng = getattr(self.proposer, "rng", None)
        if rng is not None:  # reproducible per step, also after a resume
            rng.seed(f"{self.config.seed}:{state['step']}")
        outcome = self.flow.run(thread, goal=goal)
        self._save_state({"step": state["step"] + 1, "thread": None})
        with (self.config.run_dir / "outcomes.jsonl").open("a") as fh:
            fh.write(outcome.model_dump_json() + "\n")
        return outcome

    def verify_pending(self, progress: bool = True) -> list[str]:
        """Verify what the selector picks within the per-rung budgets; record results."""
        from model_discovery.runners import VerifyJob

        budgets = {s: self.config.budget(s) for s in self.config.ladder}
        picks = self.selector.select_verifications(self.tree, budgets, owner=self.owner)  # claimed
        jobs = [(pick, VerifyJob.for_pick(self.tree.get_design(pick.design).design, pick.scale, pick.seeds,
                                          pick.first_seed, self.config.run_dir, self.config.verify))
                for pick in picks]
        done: list[str] = []
        try:
            for pick, job in tqdm(jobs, desc="verify", disable=not progress or not jobs):
                record = self.runner.run([job])[0]
                stored = self.selector.record_result(self.tree, pick.design, pick.scale, record,
                                                     status=record.get("status", "ok"))
                if not pick.replicate:
                    self._observe(job, stored.fitness, record)
                done.append(job.key + (f" (+{pick.seeds} seeds)" if pick.replicate else ""))
        finally:
            for pick in picks:  # leases of jobs that did not finish (a result releases its lease)
                self.tree.release(pick.design, pick.scale, self.owner)
        return done

    def _observe(self, job: Any, fitness: float | None, record: dict[str, Any]) -> None:
        """The observer's note on a verification, beside its record (``observation.md``)."""
        if self.observer is None or record.get("status") != "ok":
            return

        def flat(fit: float | None, rec: dict[str, Any]) -> dict[str, Any]:
            return {"fitness": fit, "final_val_loss": rec.get("final_val_loss"),
                    **rec.get("eval_metrics", {}), **rec.get("probe_scores", {})}

        results = flat(fitness, record)
        parents = self.tree.parents(job.design.name)
        for res in self.tree.results(parents[0], job.scale) if parents else []:
            results.update({f"parent_{k}": v for k, v in flat(res.fitness, res.record).items()})
        note = self.observer.observe(job.design, {k: v for k, v in results.items() if v is not None})
        write_text(Path(job.out_dir) / "observation.md", note + "\n")

    def discover(self, steps: int | None = None, goal: str = "", progress: bool = True) -> DiscoveryReport:
        """Bootstrap, then ``steps`` rounds of (design step, verifications)."""
        self.bootstrap()
        report = DiscoveryReport(request=goal)
        report.verified += self.verify_pending(progress)
        n = self.config.steps if steps is None else steps
        for _ in tqdm(range(n), desc="discover", disable=not progress):
            outcome = self.design_step(goal)
            report.outcomes.append(outcome)
            report.verified += self.verify_pending(progress)
        report.best = self.leaderboard(limit=5)
        report.findings = self.findings()
        report.stats = self.tree.stats().model_dump(mode="json")
        return report

    def findings(self) -> list[str]:
        """What the run may claim at each rung: the recommended design, whether it is confirmed
        better than the best seed, which metrics count, the surrogate's record, the training spent."""
        from model_discovery.select.fitness import read_metrics

        lines = []
        for scale in self.config.ladder:
            results = [r for r in self.tree.results(scale=scale) if r.status == "ok"]
            if not results:
                continue
            est = self.selector.estimates(self.tree, scale)
            best, confirmed = self.selector.best(self.tree, scale)
            runs = sum(r.seeds for r in results)
            tokens = sum(int((r.record.get("train") or {}).get("tokens", 0)) * r.seeds for r in results)
            lines.append(f"{scale}: {len(results)} designs verified, {runs} training runs, {tokens:,} training tokens")
            need = self.selector.policy.min_seeds
            if confirmed is not None:
                lines.append(f"  best: {confirmed} {est[confirmed]}: its lower bound beats every seed's mean")
            elif best is not None:
                lines.append(f"  leading: {best} {est[best]}; not confirmed better than the best seed "
                             f"(needs {need} seeds and mean - {self.selector.policy.z:g} SE above the seed's mean)")
            counted = self.selector.counted_tasks(self.tree, scale)
            tasks = sorted({t for r in results for t in read_metrics(r.record).evals})
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
        self.flow.close()
        self.runner.close()


def BuildSystem(config: SystemConfig | dict[str, Any] | str | Path | None = None) -> DiscoverySystem:  # noqa: N802
    """Build a discovery system from a config object, a dict, a YAML path, or defaults."""
    if config is None:
        cfg = SystemConfig()
    elif isinstance(config, SystemConfig):
        cfg = config
    elif isinstance(config, dict):
        cfg = SystemConfig.parse(config)
    else:
        cfg = SystemConfig.load(config)
    return DiscoverySystem(cfg)
