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

from model_discovery.config import ConfigError, SystemConfig
from model_discovery.design import DesignFlow, DesignOutcome
from model_discovery.gau.library import list_seeds, load_seed

log = logging.getLogger(__name__)


class LeaderboardRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    design: str
    scale: str
    fitness: float


class DiscoveryReport(BaseModel):
    """What one call of the system did and the best designs so far."""

    model_config = ConfigDict(extra="forbid")
    request: str
    outcomes: list[DesignOutcome] = Field(default_factory=list)
    verified: list[str] = Field(default_factory=list, description="design@scale verified in this call")
    best: list[LeaderboardRow] = Field(default_factory=list)
    stats: dict[str, Any] = Field(default_factory=dict)

    def summary(self) -> str:
        ok = sum(o.status == "committed" for o in self.outcomes)
        lines = [f"{len(self.outcomes)} design steps: {ok} committed, "
                 f"{sum(o.status == 'failed' for o in self.outcomes)} failed checks, "
                 f"{sum(o.status == 'rejected' for o in self.outcomes)} rejected; "
                 f"{len(self.verified)} verifications"]
        lines += [f"  {i + 1}. {r.design:<48} {r.scale:>6}  fitness {r.fitness:.4f}" for i, r in enumerate(self.best)]
        return "\n".join(lines)


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
        proposer, reviewer, coder = self._make_agents()
        self._run_checks = run_checks
        self.flow = DesignFlow(self.tree, self.selector, proposer, reviewer, coder, check=run_checks,
                               config=config.flow, checkpoint_path=config.run_dir / "flow_checkpoints.sqlite",
                               knowledge=self._make_knowledge())
        self.runner = make_runner(config.runner)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._state_path = config.run_dir / "state.json"

    # -- wiring -----------------------------------------------------------------------------
    def _make_selector(self) -> Any:
        from model_discovery.select import RandomSelector, Selector, SelectorConfig

        cfg = SelectorConfig(seed=self.config.seed)
        return RandomSelector(cfg) if self.config.selector == "random" else Selector(cfg)

    def _make_agents(self) -> tuple[Any, Any, Any]:
        from model_discovery.agents import build_agents

        return build_agents(self.config.agent_spec_dir, seed=self.config.seed)

    def _make_knowledge(self) -> Any:
        try:
            from model_discovery.knowledge import KnowledgeEngine
        except ImportError:
            return None
        return KnowledgeEngine(cache_dir=self.config.run_dir / "knowledge_cache", online=False)

    # -- state ------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return json.loads(self._state_path.read_text()) if self._state_path.exists() else {"step": 0}

    def _save_state(self, state: dict[str, Any]) -> None:
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self._state_path)

    # -- operations -------------------------------------------------------------------------
    def bootstrap(self) -> list[str]:
        """Put the seed designs into the tree (idempotent), each with its check report."""
        names = []
        for seed in self.config.seeds or list_seeds():
            design = load_seed(seed)
            if self.tree.has_fingerprint(design.fingerprint()):
                names.append(self.tree.get_by_fingerprint(design.fingerprint()).name)
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
        outcome = self.flow.run(thread, goal=goal)
        self._save_state({"step": state["step"] + 1, "thread": None})
        with (self.config.run_dir / "outcomes.jsonl").open("a") as fh:
            fh.write(outcome.model_dump_json() + "\n")
        return outcome

    def verify_pending(self, progress: bool = True) -> list[str]:
        """Verify what the selector picks within the per-rung budgets; record results."""
        from model_discovery.runners import VerifyJob

        budgets = {s: self.config.budget(s) for s in self.config.ladder}
        picks = self.selector.select_verifications(self.tree, budgets)
        done: list[str] = []
        for name, scale in tqdm(picks, desc="verify", disable=not progress or not picks):
            if not self.tree.claim_verification(name, scale, self.owner, ttl_s=6 * 3600):
                continue
            try:
                job = VerifyJob(design=self.tree.get_design(name).design, scale=scale,
                                out_dir=str(self.config.run_dir / "verify" / f"{name}@{scale}"),
                                options=self.config.verify)
                record = self.runner.run([job])[0]
                self.tree.add_result(name, scale, record, fitness=self.selector.fitness(self.tree, record))
                done.append(f"{name}@{scale}")
            finally:
                self.tree.release_verification(name, scale, self.owner)
        return done

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
        report.stats = self.tree.stats()
        return report

    def leaderboard(self, scale: str | None = None, limit: int = 20) -> list[LeaderboardRow]:
        rows = self.tree.leaderboard(scale=scale, limit=limit)
        return [LeaderboardRow.model_validate(r.model_dump() if hasattr(r, "model_dump") else r) for r in rows]

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
