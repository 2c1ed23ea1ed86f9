"""The evaluation harness's results (``scattermotion evaluate --json``, e.g.
``benchmarks/results/evaluation.json``) as report tables and speed-vs-accuracy plots."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from scattermotion.errors import InputError
from scattermotion.evaluate import FLOW_COLUMNS, RECONSTRUCTION_COLUMNS
from scattermotion.report.page import Table
from scattermotion.report.svg import Point, method_colour, scatter_svg
from scattermotion.report.tables import fmt


def load_evaluation(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check an evaluation JSON; :class:`InputError` names the file when it is not one."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(report, dict) or not all(isinstance(report.get(k), list) for k in ("sets", "results")):
        raise InputError(
            path, "not an evaluation report of `scattermotion evaluate --json` (no sets/results)"
        )
    for result in report["results"]:
        if not isinstance(result, dict) or not {"set", "method", "metrics"} <= result.keys():
            raise InputError(path, "evaluation result without set, method and metrics")
    return report


def _number(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def evaluation_tables(report: dict[str, Any]) -> list[Table]:
    """One table for the sets with ground truth and one for reconstruction sets (as ``evaluate`` prints
    them); the best EPE, or PSNR, of each set in bold."""
    labels = {m.get("name"): m.get("label", m.get("name")) for m in report.get("methods", [])}
    sets = {s.get("name"): s for s in report["sets"] if isinstance(s, dict)}
    tables = []
    for kind, columns, best_key, lowest, caption in (
        ("flow", FLOW_COLUMNS, "epe", True, "Motion with ground truth (mean over pairs; EPE in pixels)"),
        (
            "reconstruction",
            RECONSTRUCTION_COLUMNS,
            "psnr",
            False,
            "Frame reconstruction, real frames without ground truth",
        ),
    ):
        results = [r for r in report["results"] if sets.get(r["set"], {}).get("kind") == kind]
        if not results:
            continue
        columns = tuple(
            c for c in columns if any(math.isfinite(_number(r["metrics"].get(c[1]))) for r in results)
        )
        headers = ["set", "W×H", "method", *(c[0] for c in columns), "ms/pair"]
        rows: list[list[str]] = []
        bold: set[tuple[int, int]] = set()
        best_column = (
            3 + [c[1] for c in columns].index(best_key) if best_key in [c[1] for c in columns] else None
        )
        for name in dict.fromkeys(r["set"] for r in results):
            group = [r for r in results if r["set"] == name]
            values = [_number(r["metrics"].get(best_key)) for r in group]
            finite = [v for v in values if math.isfinite(v)]
            best = (min(finite) if lowest else max(finite)) if len(finite) > 1 else None
            for result, value in zip(group, values, strict=True):
                if best is not None and best_column is not None and value == best:
                    bold.add((len(rows), best_column))
                rows.append(
                    [
                        str(name),
                        str(sets[name].get("size", "")),
                        str(labels.get(result["method"], result["method"])),
                        *(
                            fmt(result["metrics"].get(key), digits, scale)
                            for _, key, digits, scale in columns
                        ),
                        fmt(result.get("ms_per_pair"), 1),
                    ]
                )
        tables.append(Table(headers, rows, caption=caption, bold=bold, text_columns=3))
    return tables


def evaluation_plots(report: dict[str, Any]) -> list[str]:
    """Per evaluation set, an SVG of each method's time per pair against its EPE (or PSNR)."""
    labels = {m.get("name"): m.get("label", m.get("name")) for m in report.get("methods", [])}
    plots = []
    for info in report["sets"]:
        if not isinstance(info, dict):
            continue
        key, y_label, better = ("epe", "EPE px", "lower left")
        if info.get("kind") == "reconstruction":
            key, y_label, better = ("psnr", "PSNR dB", "upper left")
        points = [
            Point(
                str(labels.get(r["method"], r["method"])),
                _number(r.get("ms_per_pair")),
                _number(r["metrics"].get(key)),
                method_colour(str(r["method"])),
            )
            for r in report["results"]
            if r["set"] == info.get("name")
        ]
        svg = scatter_svg(
            points,
            "ms per pair (log scale)",
            y_label,
            f"{info.get('name')}: speed vs {key.upper()} ({better} is better)",
        )
        if svg:
            plots.append(svg)
    return plots


def evaluation_facts(report: dict[str, Any], path: str | os.PathLike) -> list[str]:
    machine = report.get("machine") or {}
    facts = [f"From {path}, run {report.get('date', 'at an unknown date')}."]
    if machine:
        facts.append(
            f"Machine: {machine.get('platform', '?')}, {machine.get('cpu_count', '?')} CPUs, torch "
            f"{machine.get('torch', '?')} ({machine.get('torch_threads', '?')} threads), OpenCV "
            f"{machine.get('opencv', '?')}. Times from another run are not comparable with this page's."
        )
    return facts
