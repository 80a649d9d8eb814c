"""System configuration: one pydantic model that round-trips to YAML (see etc/system.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field

from model_discovery.design.state import FlowConfig
from model_discovery.gau.scales import get_scale
from model_discovery.records import VerifyOptions
from model_discovery.records.config_file import ConfigError, ConfigFile
from model_discovery.select.policy import PolicyConfig
from model_discovery.select.selector import SelectorConfig

__all__ = ["ConfigError", "ConfigFile", "SystemConfig"]


class SystemConfig(ConfigFile):
    """Everything a discovery run needs; defaults give an offline CPU run."""

    model_config = ConfigDict(extra="forbid")
    run_dir: Path = Path("runs/default")
    tree_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in run_dir")
    cache_dir: Path | None = Field(None, description="built corpora, tokenizers and check reference figures; "
                                   "None: $MODIS_CACHE, else ~/.cache/model_discovery")
    agent_spec_dir: Path | None = Field(None, description="agent specs; None: symbolic agents")
    seeds: list[str] | None = Field(None, description="seed designs to start from; None: all")
    steps: int = Field(4, ge=0, description="design steps per request")
    ladder: list[str] = Field(default_factory=lambda: ["micro"], description="rungs verified in this run")
    budgets: dict[str, int] = Field(default_factory=dict, description="verify budget overrides per rung "
                                    "(training runs: a verification with 3 seeds uses 3)")
    selector: Literal["evolutionary", "random"] = "evolutionary"
    policy: PolicyConfig = Field(default_factory=PolicyConfig, description="selection rules "
                                 "(model_discovery.select.policy): warm-up, noise, successive halving, surrogate")
    pacing: float | None = Field(0.25, gt=0, description="a rung above the first may use at most pacing x "
                                 "what the rung below used; null: no pacing")
    runner: Literal["local", "ray", "beaker"] = "local"
    runner_options: dict[str, Any] = Field(default_factory=dict,
                                           description="RayRunnerConfig / BeakerJobConfig fields")
    workers: int = Field(1, ge=1, description="local verification workers running at once (runner 'local')")
    worker_threads: int | None = Field(None, ge=1, description="CPU threads per local worker; None: the "
                                       "machine's cores shared out evenly")
    worker_gpus: list[str] | None = Field(None, description="GPU indices, one per local worker "
                                          "(its CUDA_VISIBLE_DEVICES); None: what the rung's device says")
    lease_ttl_s: float = Field(600.0, gt=0, description="seconds a verification claim lives without its "
                               "heartbeat (a crashed node's picks are taken over after this)")
    flow: FlowConfig = Field(default_factory=FlowConfig)
    verify: VerifyOptions = Field(default_factory=VerifyOptions)
    seed: int = 0

    @property
    def resolved_tree_url(self) -> str:
        return self.tree_url or f"sqlite:///{(self.run_dir / 'tree.sqlite').resolve()}"

    def selector_config(self, **overrides: Any) -> SelectorConfig:
        """The :class:`~model_discovery.select.SelectorConfig` of this run (the one builder)."""
        fields: dict[str, Any] = dict(seed=self.seed, scales=self.ladder, budgets=self.budgets, policy=self.policy,
                                      pacing=self.pacing, k_parents=self.flow.n_parents,
                                      n_references=self.flow.n_references, lease_ttl_s=self.lease_ttl_s)
        return SelectorConfig(**{**fields, **overrides})

    def budget(self, scale: str) -> int:
        return self.budgets.get(scale, get_scale(scale).verify_budget)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

