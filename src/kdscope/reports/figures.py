"""Plotly figures for the report, built from Results data only. Names shown in a figure are HTML-escaped first:
plotly renders some tags inside labels, and a model or layer name is the user's text."""

from __future__ import annotations

import math
from html import escape

import plotly.graph_objects as go

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
LAYOUT = {"template": "plotly_white", "height": 340, "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
          "font": {"size": 12}}


def _error_bars(intervals: list[list[float]]) -> dict:
    return {"type": "data", "symmetric": False, "array": [high - mean for mean, _low, high in intervals],
            "arrayminus": [mean - low for mean, low, _high in intervals]}


def interval_bars(title: str, categories: list[str], series: dict[str, list[list[float] | None]],
                  y_title: str, y_range: tuple[float, float] | None = None) -> dict:
    """Grouped bars with 95% intervals: one group per category, one bar per series (missing values left out)."""
    figure = go.Figure()
    for index, (name, intervals) in enumerate(series.items()):
        kept = [(c, i) for c, i in zip(categories, intervals) if i is not None]
        figure.add_bar(name=escape(name), x=[escape(c) for c, _ in kept], y=[i[0] for _, i in kept],
                       error_y=_error_bars([i for _, i in kept]), marker_color=PALETTE[index % len(PALETTE)])
    figure.update_layout(title=escape(title), yaxis_title=escape(y_title), barmode="group", **LAYOUT)
    figure.update_xaxes(categoryorder="array", categoryarray=[escape(c) for c in categories])
    if y_range is not None:
        figure.update_yaxes(range=list(y_range))
    return figure.to_plotly_json()


def interval_lines(title: str, series: dict[str, tuple[list[float], list[list[float]]]], x_title: str,
                   y_title: str, threshold: float | None = None, x_labels: list[str] | None = None) -> dict:
    """One line per series with a shaded 95% band; an optional dashed threshold."""
    figure = go.Figure()
    for index, (name, (xs, intervals)) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        lows, highs = [i[1] for i in intervals], [i[2] for i in intervals]
        figure.add_scatter(x=xs + xs[::-1], y=highs + lows[::-1], fill="toself", fillcolor=colour, opacity=0.15,
                           line={"width": 0}, hoverinfo="skip", showlegend=False)
        figure.add_scatter(x=xs, y=[i[0] for i in intervals], mode="lines+markers", name=escape(name),
                           line={"color": colour})
    if threshold is not None:
        figure.add_hline(y=threshold, line_dash="dash", line_color="#555",
                         annotation_text=f"threshold {threshold:g}", annotation_position="top left")
    figure.update_layout(title=escape(title), xaxis_title=escape(x_title), yaxis_title=escape(y_title), **LAYOUT)
    if x_labels is not None:
        figure.update_xaxes(tickvals=list(range(1, len(x_labels) + 1)), ticktext=[escape(t) for t in x_labels])
    return figure.to_plotly_json()


def heatmap(title: str, values: list[list[float | None]], rows: list[str], columns: list[str], x_title: str,
            y_title: str, z_range: tuple[float, float] = (0.0, 1.0), colour_scale: str = "Viridis") -> dict:
    """A matrix with each cell's value written in it."""
    text = [["n/a" if v is None or math.isnan(v) else f"{v:.2f}" for v in row] for row in values]
    figure = go.Figure(go.Heatmap(z=values, x=[escape(c) for c in columns], y=[escape(r) for r in rows],
                                  zmin=z_range[0], zmax=z_range[1], colorscale=colour_scale, text=text,
                                  texttemplate="%{text}", hovertemplate="%{y} → %{x}: %{z:.3f}<extra></extra>"))
    figure.update_layout(title=escape(title), xaxis_title=escape(x_title), yaxis_title=escape(y_title), **LAYOUT)
    figure.update_yaxes(autorange="reversed")
    return figure.to_plotly_json()
