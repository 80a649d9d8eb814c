"""Running named checks inside a sandboxed child: each result is streamed to the parent at once,
so a timeout or a crash still leaves the earlier verdicts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from model_discovery.check.sandbox import report
from model_discovery.records import CheckResult

# turns a check's exception into (one-line message without the check name, figures)
Describe = Callable[[BaseException], tuple[str, dict[str, Any]]]


class CheckRunner:
    """Runs checks in order; ``describe`` words the failures of this child's checks."""

    def __init__(self, describe: Describe) -> None:
        self.describe = describe
        self.results: list[CheckResult] = []

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> bool:
        """Run one check (``fn`` returns its figures or raises); stream and keep the result."""
        report({"phase": name})
        start = time.perf_counter()
        try:
            result = CheckResult(name=name, passed=True, figures=fn() or {})
        except Exception as exc:  # noqa: BLE001 - design code or a graph may raise anything
            message, figures = self.describe(exc)
            result = CheckResult(name=name, passed=False, figures=figures, message=f"{name}: {message}")
        result.seconds = round(time.perf_counter() - start, 4)
        self.results.append(result)
        report({"check": result.model_dump()})
        return result.passed
