"""Bar charts as inline SVG, drawn on the server (no script, no external assets)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 46
BAR_COLOUR = "#2f6f9f"
GRID_COLOUR = "#d9dee3"
TEXT_STYLE = 'font-family="system-ui, sans-serif" font-size="12" fill="#333"'


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k that is at least ``value`` (1 for zero)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def _grid(top_value: float) -> list[str]:
    """Horizontal grid lines and their values at 0, 1/2 and the top."""
    parts = []
    plot_height = HEIGHT - TOP - BOTTOM
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_height * (1 - fraction)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="{GRID_COLOUR}"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" {TEXT_STYLE}>'
            f"{top_value * fraction:g}</text>"
        )
    return parts


def _bar(index: int, slot: float, label: str, value: float, top_value: float, unit: str) -> str:
    """One bar with a tooltip title."""
    plot_height = HEIGHT - TOP - BOTTOM
    height = plot_height * value / top_value
    x = LEFT + index * slot + slot * 0.15
    y = TOP + plot_height - height
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{height:.1f}" fill="{BAR_COLOUR}">'
        f"<title>{escape(label)}: {value:g} {escape(unit)}</title></rect>"
    )


def _label(index: int, slot: float, label: str) -> str:
    """An x-axis label under bar ``index``."""
    x = LEFT + index * slot + slot / 2
    y = HEIGHT - BOTTOM + 16
    return f'<text x="{x:.1f}" y="{y}" text-anchor="middle" {TEXT_STYLE}>{escape(label)}</text>'


def bar_chart(
    data: Sequence[tuple[str, float]], *, title: str, unit: str = "", label_every: int = 1
) -> Markup:
    """A bar chart of ``(label, value)`` pairs; every ``label_every``-th label is written."""
    top_value = nice_ceiling(max((value for _, value in data), default=0))
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(data))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        *_grid(top_value),
    ]
    for index, (label, value) in enumerate(data):
        parts.append(_bar(index, slot, label, value, top_value, unit))
        if index % max(1, label_every) == 0:
            parts.append(_label(index, slot, label))
    if not any(value for _, value in data):
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" {TEXT_STYLE}>no data yet</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704  every label and title above is escaped
