"""Runners: where verification work executes. ``LocalRunner`` is the default."""

from model_discovery.records import Placement, VerifyJob
from model_discovery.runners.base import Runner, execute_job, failed_result
from model_discovery.runners.beaker_runner import BeakerRunner
from model_discovery.runners.local import LocalRunner
from model_discovery.runners.ray_runner import RayRunner


def make_runner(kind: str, **kwargs: object) -> Runner:
    """The runner named ``kind`` ('local', 'ray' or 'beaker'), built from ``kwargs``."""
    if kind == "local":
        return LocalRunner(**kwargs)  # type: ignore[arg-type]
    if kind == "ray":
        return RayRunner(**kwargs)  # type: ignore[arg-type]
    if kind == "beaker":
        return BeakerRunner(**kwargs)  # type: ignore[arg-type]
    raise ValueError(f"unknown runner {kind!r}; known: local, ray, beaker")


__all__ = ["Runner", "VerifyJob", "Placement", "LocalRunner", "execute_job", "failed_result", "make_runner"]
