"""Plain-text views of the tree for terminals: the leaderboard table and the lineage outline."""

from __future__ import annotations

from collections.abc import Sequence

from model_discovery.evolution.tree import EvolutionTree
from model_discovery.records import LeaderboardRow


def _fit(r: LeaderboardRow) -> str:
    """Fitness as mean ± standard error when the error is known."""
    if r.fitness is None:
        return "-"
    return f"{r.fitness:+.4f}" + (f" ± {r.fitness_se:.4f}" if r.fitness_se is not None else "")


def format_leaderboard(rows: Sequence[LeaderboardRow], metric: str | None = None) -> str:
    """A fixed-width table: rank, design, rung, fitness ± SE, seeds, [metric,] operator, generation, status."""
    if not rows:
        return "(no verified designs yet)"
    width = max(12, *(len(r.design) for r in rows))
    label = (metric or "").rsplit(".", 1)[-1]
    extra = f"  {label:>{max(10, len(label))}}" if metric else ""
    head = (f"{'#':>3}  {'design':<{width}}  {'scale':>6}  {'fitness ± SE':>17}  {'seeds':>5}{extra}  "
            f"{'operator':<11} {'gen':>3}  status")
    lines = [head, "-" * len(head)]
    for r in rows:
        value = ("-" if r.value is None else f"{r.value:.4f}").rjust(max(10, len(label))) if metric else ""
        lines.append(f"{r.rank:>3}  {r.design:<{width}}  {r.scale:>6}  {_fit(r):>17}  {r.seeds:>5}"
                     f"{'  ' + value if metric else ''}  {(r.operator or '-'):<11} {r.generation:>3}  {r.status}")
    return "\n".join(lines)


def format_tree(tree: EvolutionTree, limit: int | None = 50) -> str:
    """Each design under its first parent, seeds at the top level, best fitness beside it."""
    graph = tree.graph()
    nodes = {n.name: n for n in graph.nodes}
    kids: dict[str, list[str]] = {}
    has_parent: set[str] = set()
    for e in graph.edges:
        if e.kind == "parent" and e.child not in has_parent:
            kids.setdefault(e.parent, []).append(e.child)
            has_parent.add(e.child)
    lines: list[str] = []

    def visit(name: str, depth: int) -> None:
        if limit is not None and len(lines) >= limit:
            return
        n = nodes[name]
        fit = "" if n.fitness is None else f"  fitness {n.fitness:+.4f}@{n.best_scale}"
        lines.append(f"{'  ' * depth}{'└─ ' if depth else ''}{name}  [{n.status}, {n.operator or 'seed'}]{fit}")
        for child in kids.get(name, []):
            visit(child, depth + 1)

    for name in nodes:
        if name not in has_parent:
            visit(name, 0)
    more = len(nodes) - len(lines)
    if more > 0:
        lines.append(f"... {more} more designs (use --limit)")
    return "\n".join(lines) if lines else "(empty tree)"
