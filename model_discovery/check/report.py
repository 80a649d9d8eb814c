"""Check results, the check configuration, and the readable report table."""

from __future__ import annotations

from typing import Any

from model_discovery.records import CheckReport


def _fmt(value: Any, key: str = "") -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        if key.endswith("_bytes"):
            return f"{value / 2**20:.1f}MiB"
        return f"{value:,}"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 0.01:
            return f"{value:.3g}"
        return f"{value:.1e}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt(v) for v in value[:4]) + (",…" if len(value) > 4 else "") + "]"
    return str(value)


# figures worth a column, per check, in order; the rest stay in the JSON report
KEY_FIGURES: dict[str, tuple[str, ...]] = {
    "parse": ("units",),
    "build": ("build_s", "total_params"),
    "params": ("non_embedding_params", "limits"),
    "forward": ("shape",),
    "export": ("graphs",),
    "causality": ("cases", "lengths", "max_change_fp32", "max_change_fp64"),
    "gradients": ("grad_norm", "zero_grad_params"),
    "speed_memory": ("fwd_bwd_ms", "slowdown", "train_mem_bytes", "memory_ratio"),
    "effectiveness": ("loss_before", "loss_after", "rel_drop"),
}


def format_report(report: CheckReport, width: int = 100) -> str:
    """A readable table: check, PASS/FAIL, seconds, key figures; then the first error."""
    verdict = "PASSED" if report.passed else "FAILED"
    lines = [f"design {report.design} @ {report.scale}: {verdict} in {report.total_seconds:.1f} s", ""]
    header = f"{'check':<14} {'result':<6} {'seconds':>8}  figures"
    lines += [header, "-" * min(width, max(len(header), 60))]
    for c in report.checks:
        keys = KEY_FIGURES.get(c.name) or tuple(c.figures)[:4]
        figs = "  ".join(f"{k}={_fmt(c.figures[k], k)}" for k in keys if k in c.figures)
        row = f"{c.name:<14} {'pass' if c.passed else 'FAIL':<6} {c.seconds:>8.2f}  {figs}"
        lines.append(row if len(row) <= width else row[: width - 1] + "…")
    lines.append("")
    lines.append(f"first error: {report.first_error}" if report.first_error else "all checks passed")
    return "\n".join(lines)
