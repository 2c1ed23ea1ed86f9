"""Score tables and speed plots of one report input (methods side by side, best value in bold)."""

from __future__ import annotations

import math
from typing import Any

from scattermotion.report.analysis import InputAnalysis
from scattermotion.report.page import Table
from scattermotion.report.svg import Point, method_colour, scatter_svg

# (header, score key, digits, scale)
RECONSTRUCTION_COLUMNS = (("PSNR dB", "psnr", 2, 1.0), ("SSIM", "ssim", 3, 1.0))
ACCURACY_COLUMNS = (
    ("EPE px", "epe", 2, 1.0),
    ("boundary EPE", "epe_boundary", 2, 1.0),
    ("<1px %", "acc_1px", 1, 100.0),
    ("<3px %", "acc_3px", 1, 100.0),
    ("Fl-all %", "fl_all", 1, 100.0),
)


def fmt(value: Any, digits: int = 2, scale: float = 1.0) -> str:
    """A number for a table cell; missing or non-finite values (JSON stores NaN as null) print as "–"."""
    number = math.nan if value is None else float(value)
    return f"{number * scale:.{digits}f}" if math.isfinite(number) else "–"


def _best_row(values: list[float], lowest: bool) -> int | None:
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if len(finite) < 2:
        return None
    return (min(finite) if lowest else max(finite))[1]


def input_table(analysis: InputAnalysis) -> Table:
    """Per method: ms per pair, mean reconstruction scores, and accuracy when there is ground truth; a
    greyed "no motion" reference row; the best EPE (or, without ground truth, PSNR) in bold."""
    has_truth = analysis.input.ground_truth is not None
    columns = RECONSTRUCTION_COLUMNS + (ACCURACY_COLUMNS if has_truth else ())
    headers = ["method", "ms/pair", *(c[0] for c in columns)]
    summaries = [r.summary() for r in analysis.results]
    rows = [
        [result.label, fmt(summary["ms_per_pair"], 1), *(fmt(summary.get(k), d, s) for _, k, d, s in columns)]
        for result, summary in zip(analysis.results, summaries, strict=True)
    ]
    rows.append(
        ["no motion (reference)", "–", *(fmt(analysis.no_motion.get(k), d, s) for _, k, d, s in columns)]
    )
    key, lowest = ("epe", True) if has_truth else ("psnr", False)
    column = 2 + [c[1] for c in columns].index(key)
    best = _best_row([float(s.get(key, math.nan)) for s in summaries], lowest)
    pairs = len(analysis.pairs)
    caption = f"Mean over {pairs} pair{'s' if pairs != 1 else ''}"
    return Table(
        headers,
        rows,
        caption=caption,
        bold=set() if best is None else {(best, column)},
        muted={len(rows) - 1},
    )


def input_plot(analysis: InputAnalysis) -> str:
    """Speed against EPE (with ground truth) or PSNR (without) for the methods of one input, as SVG."""
    has_truth = analysis.input.ground_truth is not None
    key, y_label, better = ("epe", "EPE px", "lower left") if has_truth else ("psnr", "PSNR dB", "upper left")
    points = [
        Point(r.label, r.ms_per_pair, float(r.summary().get(key, math.nan)), method_colour(r.name))
        for r in analysis.results
    ]
    return scatter_svg(
        points, "ms per pair (log scale)", y_label, f"Speed vs {y_label.split()[0]} ({better} is better)"
    )
