"""What the LLM agents are shown besides the proposal: the prompt sections built from the unit
catalogue, the tree's neighbours and results, the rung, the unit rules and the debug history.

Every function returns prompt text (markdown headings and fenced code), empty when there is
nothing to show, so a role assembles its prompt as a list of sections:

* :func:`catalogue_section` - every catalogue unit: name, role, child slots, hyperparameters,
  one-line doc;
* :func:`reuse_section` - the full source of catalogue units a proposal names but the parents
  do not contain;
* :func:`neighbours_section`, :func:`results_section` - siblings and nearest designs with their
  fitness and status; parent and reference results with the observer's notes;
* :func:`rung_section`, :func:`unit_rules_section` - the rung's d_model, context and parameter
  band; ``GAUBase`` and the unit rules of ``library/README.md``;
* :func:`debug_section` - the check table, the traceback and the earlier rejected versions.
"""

from __future__ import annotations

import inspect
import json
import re
from functools import lru_cache

from model_discovery.check.report import format_report
from model_discovery.gau.library import catalogue, library_root
from model_discovery.gau.runtime import GAUBase
from model_discovery.records import (CheckReport, CoderContext, Design, DesignDigest, Proposal, ResultDigest,
                                     ScaleConfig, UnitAttempt)

#: the heading of the unit rules in ``library/README.md``
RULES_HEADING = "## Rules for a unit file"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def catalogue_section() -> str:
    """Every catalogue unit, one line each, by role."""
    units = catalogue()
    if not units:
        return ""
    lines = ["# Unit catalogue (reuse a unit by naming it; its source is shown when you do)"]
    for name, u in sorted(units.items(), key=lambda kv: (kv[1].role, kv[0])):
        slots = ", ".join(u.slots) or "-"
        hp = json.dumps(u.defaults) if u.defaults else "{}"
        lines.append(f"- {name} [{u.role}] slots: {slots}; hparams: {hp} - {_first_line(u.doc)}")
    return "\n".join(lines)


def named_catalogue_units(text: str, exclude: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Catalogue unit names that occur as words in ``text``, minus ``exclude``, in catalogue order."""
    return [n for n in sorted(catalogue()) if n not in exclude and re.search(rf"\b{re.escape(n)}\b", text)]


def proposal_text(proposal: Proposal) -> str:
    """Every name-bearing field of a proposal, for finding the units it names."""
    parts = [proposal.title, proposal.motivation, proposal.change]
    for u in proposal.units:
        parts += [u.name, u.description, *u.children.values(), u.replaces or ""]
    return "\n".join(parts)


def reuse_section(proposal: Proposal, designs: list[Design]) -> str:
    """Full source of the catalogue units ``proposal`` names that none of ``designs`` contains
    (their source is shown with those designs already) and that the proposal does not rewrite."""
    have = {n for d in designs for n in d.units} | {u.name for u in proposal.units}
    names = named_catalogue_units(proposal_text(proposal), exclude=have)
    if not names:
        return ""
    units = catalogue()
    return "\n\n".join(["# Catalogue units named for reuse (full source)"]
                       + [f"## {n} [{units[n].role}]\n```python\n{units[n].source.strip()}\n```" for n in names])


def _fitness(d: DesignDigest) -> str:
    if not d.fitness:
        return "not verified"
    return ", ".join(f"{s}: {'-' if f is None else f'{f:.4g}'}" for s, f in d.fitness.items())


def neighbours_section(neighbours: list[DesignDigest], title: str = "Designs near this one in the tree") -> str:
    """Siblings and nearest designs with status, fitness and units (to avoid proposing them again)."""
    if not neighbours:
        return ""
    lines = [f"# {title} (do not propose one of these again)"]
    for d in neighbours:
        sim = f", {d.similarity:.0%} shared units" if d.similarity is not None else ""
        lines.append(f"- {d.name} ({d.relation}{sim}): status {d.status}, fitness {_fitness(d)}; "
                     f"operator {d.operator or '-'}; parents {', '.join(d.parents) or '-'}")
        if d.summary:
            lines.append(f"  summary: {d.summary}")
        if d.units:
            lines.append(f"  units: {', '.join(d.units)}")
    return "\n".join(lines)


def results_section(results: list[ResultDigest]) -> str:
    """Verification results (fitness, losses, task and probe scores) and the observer's notes."""
    if not results:
        return ""
    lines = ["# Verification results of the parents and references"]
    for r in results:
        head = f"- {r.design} @ {r.scale}: {r.status}"
        if r.fitness is not None:
            se = f" ± {r.fitness_se:.2g}" if r.fitness_se is not None else ""
            head += f", fitness {r.fitness:.4g}{se}"
        if r.final_val_loss is not None:
            head += f", val loss {r.final_val_loss:.4g}"
        if r.error:
            head += f", error: {r.error}"
        lines.append(head)
        if r.eval_metrics:
            lines.append("  tasks: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.eval_metrics.items())))
        if r.probe_scores:
            lines.append("  probes: " + ", ".join(f"{k}={v:.3g}" for k, v in sorted(r.probe_scores.items())))
        if r.note:
            lines.append(f"  observer: {r.note.strip()}")
    return "\n".join(lines)


def rung_section(scale: ScaleConfig | None) -> str:
    """The rung the design is checked at: shape, context and the parameter band it must meet."""
    if scale is None:
        return ""
    lo, hi = scale.param_limits()
    return (f"# Target rung {scale.name}\n"
            f"d_model {scale.d_model}, {scale.n_block} blocks, context {scale.context_len} tokens, "
            f"vocabulary {scale.vocab_size}. Non-embedding parameters of the whole LM must lie in "
            f"[{lo:,}, {hi:,}] (about {scale.reference_params:,} for a GPT-2 block stack of this shape), "
            f"so one block has about {scale.reference_params // scale.n_block:,} parameters.")


@lru_cache(maxsize=1)
def _unit_rules() -> str:
    path = library_root() / "README.md"
    try:
        text = path.read_text()
    except OSError:
        return ""
    start = text.find(RULES_HEADING)
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(RULES_HEADING))
    return text[start + len(RULES_HEADING):end if end > 0 else None].strip()


def unit_rules_section() -> str:
    """``GAUBase`` (the base class every unit extends) and the unit rules of ``library/README.md``."""
    parts = ["# GAUBase (model_discovery.gau.runtime; do not redefine it)",
             f"```python\n{inspect.getsource(GAUBase).strip()}\n```"]
    rules = _unit_rules()
    if rules:
        parts += ["# Unit rules", rules]
    return "\n\n".join(parts)


def check_table(report: CheckReport) -> str:
    """The readable table of every check (the checker's own format)."""
    return format_report(report)


def check_traceback(report: CheckReport) -> str:
    """The traceback the first failed check recorded (frames in the compiled module), or ''."""
    for c in report.failed:
        trace = c.figures.get("traceback")
        if trace:
            return "\n".join(trace) if isinstance(trace, list) else str(trace)
    return ""


def _attempt(a: UnitAttempt) -> str:
    why = f"\nrationale: {a.rationale}" if a.rationale else ""
    return (f"## Attempt {a.attempt} (rejected){why}\nerror: {a.error}\n"
            f"```python\n{a.source.strip()}\n```")


def debug_section(context: CoderContext | None, error: str, current: str = "") -> str:
    """The failed check: its one-line error, the full table, the traceback, and the earlier
    rejected versions of the unit other than ``current`` (shown on its own by the caller)."""
    parts = ["# Checker error (fix it)", error.strip()]
    if context is None:
        return "\n\n".join(parts)
    if context.check_table:
        parts += ["# Check table of the failed attempt", f"```\n{context.check_table.strip()}\n```"]
    if context.traceback:
        parts += ["# Traceback (lines of the compiled design module)", f"```\n{context.traceback.strip()}\n```"]
    earlier = [a for a in context.attempts if a.source.strip() != current.strip()]
    if earlier:
        parts += ["# Earlier rejected versions of this unit (do not repeat their mistakes)"]
        parts += [_attempt(a) for a in earlier]
    return "\n\n".join(parts)
