"""Checker: static checks of a design, then its export in one sandboxed process and the judge's
verdicts, computed from the exported graph, in another (see docs/security.md).

``run_checks(design, scale) -> CheckReport``; ``format_report(report)``; ``check_command(ref, scale)``
for the CLI; ``sandbox.run_sandboxed(target, payload, limits) -> SandboxOutcome`` for any trusted
code that must execute untrusted design code (the verifier uses it too); ``graph.GraphLM`` runs an
exported design without its Python; ``causality.test_causality`` is the judge's causality test.
"""

from model_discovery.check.channel import SandboxViolation
from model_discovery.check.checks import ReferenceFigures, check_command, reference_figures, run_checks, static_checks
from model_discovery.check.report import format_report
from model_discovery.check.sandbox import SandboxLimits, SandboxOutcome, run_sandboxed
from model_discovery.records import CheckConfig, CheckReport

__all__ = ["run_checks", "static_checks", "check_command", "format_report", "reference_figures",
           "ReferenceFigures", "CheckConfig", "CheckReport", "SandboxLimits", "SandboxOutcome",
           "SandboxViolation", "run_sandboxed"]
