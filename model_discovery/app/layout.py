"""Layered layout of the evolution tree and its plotly figure (pure Python, no graph library).

Designs sit on one row per generation (seeds on top). Within a row, designs are ordered by the
mean position of their parents (the barycenter heuristic), so that children sit under their
parents and edges cross little. Cost is O(nodes log nodes + edges): a 1,000-design tree lays
out in milliseconds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

#: show text labels next to nodes only for trees up to this size
LABEL_LIMIT = 60
NO_FITNESS_COLOUR = "#b0b7c3"
EDGE_COLOUR = "rgba(120,130,150,0.45)"
REF_EDGE_COLOUR = "rgba(230,140,60,0.45)"


def layered_positions(nodes: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """``name -> (x, y)``: y = generation, x = centred slot within the generation's row."""
    parents: dict[str, list[str]] = defaultdict(list)
    for e in edges:
        if e.get("kind", "parent") == "parent":
            parents[e["child"]].append(e["parent"])
    rows: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for order, node in enumerate(nodes):
        rows[int(node.get("generation") or 0)].append((order, node["name"]))
    pos: dict[str, tuple[float, float]] = {}
    for gen in sorted(rows):
        row = rows[gen]

        def key(item: tuple[int, str]) -> tuple[float, int]:
            xs = [pos[p][0] for p in parents.get(item[1], []) if p in pos]
            return (sum(xs) / len(xs) if xs else float("-inf") if gen else 0.0, item[0])

        ordered = sorted(row, key=key) if gen else row
        width = len(ordered)
        for i, (_, name) in enumerate(ordered):
            pos[name] = (i - (width - 1) / 2.0, float(gen))
    return pos


def robust_range(values: Sequence[float], q: float = 0.05) -> tuple[float, float] | None:
    """Colour-scale limits an outlier cannot stretch: the ``q`` and ``1 − q`` quantiles of
    ``values`` (nearest rank); None for fewer than two distinct values."""
    vals = sorted(values)
    if len(vals) < 2 or vals[0] == vals[-1]:
        return None
    k = int(q * (len(vals) - 1) + 0.5)
    lo, hi = vals[k], vals[len(vals) - 1 - k]
    return (lo, hi) if hi > lo else (vals[0], vals[-1])


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def tree_figure(nodes: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, Any]], *,
                show_references: bool = False, highlight: str | None = None,
                height: int | None = None) -> go.Figure:
    """The lineage graph: one edge trace, nodes coloured by fitness (grey: not verified yet).

    Every node carries its name in ``customdata`` so that a selection maps back to a design.
    """
    pos = layered_positions(nodes, edges)
    fig = go.Figure()
    for kind, colour in (("parent", EDGE_COLOUR), ("reference", REF_EDGE_COLOUR)):
        if kind == "reference" and not show_references:
            continue
        xs: list[float | None] = []
        ys: list[float | None] = []
        for e in edges:
            if e.get("kind", "parent") != kind or e["child"] not in pos or e["parent"] not in pos:
                continue
            (x0, y0), (x1, y1) = pos[e["parent"]], pos[e["child"]]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                     name=f"{kind} edges",
                                     line={"color": colour, "width": 1, "dash": "dot" if kind == "reference" else "solid"}))
    with_fit = [n for n in nodes if n.get("fitness") is not None]
    without = [n for n in nodes if n.get("fitness") is None]
    labels = len(nodes) <= LABEL_LIMIT
    hover = ("<b>%{customdata[0]}</b><br>operator: %{customdata[1]}<br>fitness: %{customdata[2]}"
             "<br>generation: %{customdata[3]}<br>status: %{customdata[4]}<extra></extra>")

    def trace(group: Sequence[Mapping[str, Any]], name: str, marker: dict[str, Any]) -> go.Scatter:
        return go.Scatter(
            x=[pos[n["name"]][0] for n in group], y=[pos[n["name"]][1] for n in group],
            mode="markers+text" if labels else "markers", name=name,
            text=[n["name"] for n in group] if labels else None, textposition="top center",
            textfont={"size": 10},
            customdata=[[n["name"], n.get("operator") or ("seed" if n.get("seed") else "—"),
                         _fmt(n.get("fitness")), n.get("generation"), n.get("status")] for n in group],
            hovertemplate=hover, marker=marker)

    size = 14 if len(nodes) <= 200 else 9 if len(nodes) <= 600 else 7
    if without:
        fig.add_trace(trace(without, "not verified", {"color": NO_FITNESS_COLOUR, "size": size,
                                                      "line": {"width": 1, "color": "#6b7280"}}))
    if with_fit:
        limits = robust_range([n["fitness"] for n in with_fit])
        fig.add_trace(trace(with_fit, "fitness", {
            "color": [n["fitness"] for n in with_fit], "colorscale": "Viridis", "size": size,
            **({"cmin": limits[0], "cmax": limits[1]} if limits else {}),
            "showscale": True, "colorbar": {"title": {"text": "fitness<br>(5–95 %)"}, "thickness": 14},
            "line": {"width": 1, "color": "#1f2937"}}))
    if highlight and highlight in pos:
        x, y = pos[highlight]
        fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers", hoverinfo="skip", showlegend=False,
                                 name="selected", marker={"size": size + 10, "color": "rgba(0,0,0,0)",
                                                          "line": {"width": 3, "color": "#ef4444"}}))
    max_gen = max((p[1] for p in pos.values()), default=0)
    fig.update_layout(
        height=height or int(min(1400, max(420, 110 * (max_gen + 1) + 120))),
        margin={"l": 10, "r": 10, "t": 30, "b": 10}, dragmode="pan", clickmode="event+select",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        xaxis={"visible": False}, plot_bgcolor="white",
        yaxis={"title": "generation", "autorange": "reversed", "dtick": 1, "zeroline": False, "gridcolor": "#eef0f3"})
    return fig
