"""Inline SVG plots (no plotting library): a speed-vs-quality scatter with a log time axis."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

METHOD_COLOURS = {
    "ours": "#d62728",
    "tvl1": "#1f77b4",
    "dis": "#2ca02c",
    "dis-fast": "#17becf",
    "farneback": "#9467bd",
    "zero": "#7f7f7f",
}
FALLBACK_COLOUR = "#444444"


def method_colour(method: str) -> str:
    """One colour per method key, the same in every plot of the page."""
    return METHOD_COLOURS.get(method, FALLBACK_COLOUR)


@dataclass
class Point:
    label: str
    x: float
    y: float
    colour: str = FALLBACK_COLOUR


def _nice_step(span: float, target_ticks: int = 5) -> float:
    raw = span / max(target_ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def linear_ticks(low: float, high: float) -> list[float]:
    """Round tick values covering ``[low, high]`` (about five)."""
    if high <= low:
        low, high = low - 1.0, high + 1.0
    step = _nice_step(high - low)
    start = math.floor(low / step) * step
    count = int(math.ceil((high - start) / step - 1e-9)) + 1
    return [round(start + i * step, 10) for i in range(count)]


def decade_ticks(low: float, high: float) -> list[float]:
    """Powers of ten covering ``[low, high]`` (both > 0), at least two."""
    first = math.floor(math.log10(low))
    last = max(math.ceil(math.log10(high)), first + 1)
    return [10.0**k for k in range(first, last + 1)]


def _format_tick(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:g}"
    return f"{value:.10g}"


def scatter_svg(
    points: Sequence[Point],
    x_label: str,
    y_label: str,
    title: str,
    width: int = 440,
    height: int = 290,
) -> str:
    """An SVG scatter plot of ``points`` with a log-scaled x axis (times span orders of magnitude) and a
    linear y axis, each point labelled. Points with a non-finite or non-positive x, or a non-finite y, are
    left out; with none left the result is an empty string."""
    shown = [p for p in points if math.isfinite(p.x) and p.x > 0 and math.isfinite(p.y)]
    if not shown:
        return ""
    left, right, top, bottom = 58, 120, 30, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    x_ticks = decade_ticks(min(p.x for p in shown), max(p.x for p in shown))
    y_ticks = linear_ticks(min(p.y for p in shown), max(p.y for p in shown))
    x_lo, x_hi = math.log10(x_ticks[0]), math.log10(x_ticks[-1])
    y_lo, y_hi = y_ticks[0], y_ticks[-1]

    def sx(x: float) -> float:
        return left + (math.log10(x) - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        return top + (1 - (y - y_lo) / (y_hi - y_lo)) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" class="plot">',
        f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
    ]
    for tick in x_ticks:
        x = sx(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#e4e4e4"/>')
        parts.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 15}" font-size="11" text-anchor="middle">'
            f"{_format_tick(tick)}</text>"
        )
    for tick in y_ticks:
        y = sy(tick)
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
            f"{_format_tick(tick)}</text>"
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" font-size="12" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">{escape(y_label)}</text>'
    )
    for point in shown:
        x, y = sx(point.x), sy(point.y)
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{point.colour}"><title>{escape(point.label)}: '
            f"{point.x:.3g} ms, {point.y:.3g}</title></circle>"
        )
        parts.append(
            f'<text x="{x + 8:.1f}" y="{y + 4:.1f}" font-size="11" fill="{point.colour}">'
            f"{escape(point.label)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
