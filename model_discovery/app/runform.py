"""The settings a discovery run is started with from the GUI, and how they differ from the run's.

Continuing a run means starting it with its own ``config.yaml``: :func:`form_defaults` fills the
form from it, :func:`apply` puts the form's values into a copy of it, and :func:`differences`
lists every setting that would change, so the page can show them before anything starts. The
command then runs with the whole resulting config (written beside the run as
:data:`START_CONFIG`), never with the package defaults in place of the run's settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from model_discovery.config import ConfigError, SystemConfig

#: the config a run started from the GUI runs with (the run then rewrites its config.yaml)
START_CONFIG = "gui_start.yaml"


class RunForm(BaseModel):
    """What the Evolve form asks for."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(ge=0)
    ladder: list[str] = Field(min_length=1)
    selector: str
    agent_spec_dir: str = ""
    eval: bool = True
    probes: bool = True
    workers: int = Field(1, ge=1)
    train_tokens: int | None = Field(None, gt=0)


def run_base(run_dir: Path) -> tuple[SystemConfig, bool]:
    """The run's config (``config.yaml``) and True, or the defaults for a new run and False.

    Raises :class:`ConfigError` (one line naming the file and field) for a config that does not load.
    """
    path = run_dir / "config.yaml"
    if path.is_file():
        cfg = SystemConfig.load(path)
        return cfg.model_copy(update={"run_dir": run_dir}), True
    return SystemConfig(run_dir=run_dir), False


def form_defaults(cfg: SystemConfig) -> RunForm:
    """The form filled from ``cfg``."""
    return RunForm(steps=cfg.steps, ladder=list(cfg.ladder), selector=cfg.selector,
                   agent_spec_dir=str(cfg.agent_spec_dir or ""), eval=cfg.verify.eval, probes=cfg.verify.probes,
                   workers=cfg.workers, train_tokens=cfg.verify.train_tokens)


def apply(cfg: SystemConfig, form: RunForm) -> SystemConfig:
    """``cfg`` with the form's values (validated like a config file)."""
    data = cfg.model_dump(mode="json")
    data.update(steps=form.steps, ladder=form.ladder, selector=form.selector, workers=form.workers,
                agent_spec_dir=form.agent_spec_dir.strip() or None)
    data["verify"] = {**data["verify"], "eval": form.eval, "probes": form.probes, "train_tokens": form.train_tokens}
    return SystemConfig.parse(data, origin="the Evolve form")


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(base: SystemConfig, chosen: SystemConfig) -> list[tuple[str, Any, Any]]:
    """``(setting, the run's value, the value it would start with)`` for each setting that changes
    (``steps`` is how many more steps to take, not a setting of the run, and is left out)."""
    a, b = _flat(base.model_dump(mode="json")), _flat(chosen.model_dump(mode="json"))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if k != "steps" and a.get(k) != b.get(k)]


def start_args(cfg: SystemConfig, request: str) -> tuple[Path, list[str]]:
    """Write ``cfg`` beside the run and return (its path, the ``discover`` arguments that run it)."""
    path = Path(cfg.run_dir) / START_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cfg.to_yaml())
    return path, ["discover", request or "discover a new model", "--config", str(path), "--run-dir", str(cfg.run_dir)]


__all__ = ["ConfigError", "RunForm", "START_CONFIG", "apply", "differences", "form_defaults", "run_base", "start_args"]
