"""Run every motion method on one report input and score it: time per pair, frame reconstruction (PSNR,
SSIM) on every pair, accuracy against ground truth where it exists, and our network's confidence.

All methods see the same frames, one clip at a time (so a clip model gets its temporal context); the time
per pair is the wall time of the method's own call divided by the pairs of the clip.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scattermotion.errors import InputError
from scattermotion.estimator import (
    DEFAULT_WEIGHTS,
    METHODS,
    OURS,
    FlowEstimator,
    MotionEstimator,
    get_estimator,
)
from scattermotion.io.visualize import sequence_max_flow
from scattermotion.metrics import aggregate, flow_metrics, reconstruction_metrics
from scattermotion.report.confidence import estimate_with_confidence
from scattermotion.report.sources import ReportInput

DEFAULT_METHODS = (OURS, "tvl1", "dis")
MIN_COLOUR_RADIUS = 1.0  # px: a near-static input is not blown up into saturated colour noise


@dataclass
class Method:
    """A motion method ready to run: its key, the label shown in the report and the estimator."""

    name: str
    label: str
    estimator: FlowEstimator


def prepare_methods(
    methods: Sequence[str],
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
) -> tuple[list[Method], list[str]]:
    """Estimators for ``methods`` (in order) and notes for the page.

    ``ours`` uses ``weights`` or the packaged default model; when neither exists it is left out with a note
    instead of failing the report (the baselines still say something). Unknown methods, a missing weights
    file or weights without ``ours`` raise :class:`InputError`.
    """
    names = list(dict.fromkeys(methods))
    if not names:
        raise InputError(None, f"no method given; choose from {', '.join(METHODS)}")
    for name in names:
        if name not in METHODS:
            raise InputError(None, f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    if weights is not None and OURS not in names:
        raise InputError(weights, f"--weights applies to {OURS}, which is not among the methods")
    prepared, notes = [], []
    for name in names:
        if name != OURS:
            prepared.append(Method(name, name, get_estimator(name)))
        elif weights is None and not DEFAULT_WEIGHTS.is_file():
            notes.append(
                f"{OURS} is not shown: this install has no packaged default model ({DEFAULT_WEIGHTS.name}); "
                "pass --weights FILE.safetensors"
            )
        else:
            label = f"{OURS} ({Path(weights).name})" if weights is not None else f"{OURS} (default model)"
            prepared.append(Method(name, label, get_estimator(name, weights, device=device)))
    if not prepared:
        raise InputError(None, "no method left to run: " + "; ".join(notes))
    return prepared, notes


@dataclass
class MethodResult:
    """One method on one input: per-pair motion, scores and (ours) confidence, in pair order."""

    name: str
    label: str
    flows: list[np.ndarray]
    seconds: float
    reconstruction: list[dict[str, float]]
    accuracy: list[dict[str, float]] | None = None
    confidence: list[np.ndarray] | None = None

    @property
    def ms_per_pair(self) -> float:
        return 1000.0 * self.seconds / len(self.flows)

    def summary(self) -> dict[str, float]:
        """Mean reconstruction (and accuracy) scores over the pairs, plus ``ms_per_pair``."""
        scores = aggregate(self.reconstruction)
        if self.accuracy is not None:
            scores.update(aggregate(self.accuracy))
        scores.pop("samples", None)
        scores["ms_per_pair"] = self.ms_per_pair
        return scores


@dataclass
class InputAnalysis:
    """Everything the page shows about one input. ``max_flow`` is the colour-wheel radius shared by all its
    motion pictures (ground truth included); ``key_pair`` indexes the pair drawn as stills."""

    input: ReportInput
    pairs: list[tuple[np.ndarray, np.ndarray]]
    results: list[MethodResult]
    no_motion: dict[str, float]
    max_flow: float
    key_pair: int


def colour_radius(truth: list[np.ndarray] | None, results: Sequence[MethodResult]) -> float:
    """The colour-wheel radius shared by every motion picture of one input: the 99th percentile of the
    ground truth's motion when there is ground truth, else the median over the methods of each method's
    99th percentile (so one method gone wild cannot wash out the others' colours)."""
    if truth is not None:
        return sequence_max_flow(truth)
    return float(np.median([sequence_max_flow(r.flows) for r in results]))


def _run(method: Method, clip: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None, float]:
    start = time.perf_counter()
    if isinstance(method.estimator, MotionEstimator):
        flows, confidence = estimate_with_confidence(method.estimator, clip)
    else:
        flows, confidence = method.estimator.estimate_clip(clip), None
    return flows, confidence, time.perf_counter() - start


def analyse_input(
    report_input: ReportInput,
    methods: Sequence[Method],
    progress: Callable[[str], None] | None = None,
) -> InputAnalysis:
    """Run and score every method on ``report_input``."""
    pairs = [(clip[t], clip[t + 1]) for clip in report_input.clips for t in range(len(clip) - 1)]
    truth = report_input.ground_truth
    results = []
    for method in methods:
        if isinstance(method.estimator, MotionEstimator):  # first call pays one-off set-up: keep it out
            method.estimator.estimate(*pairs[0])
        flows: list[np.ndarray] = []
        confidence: list[np.ndarray] = []
        seconds = 0.0
        for clip in report_input.clips:
            clip_flows, clip_confidence, took = _run(method, clip)
            flows.extend(clip_flows)
            if clip_confidence is not None:
                confidence.extend(clip_confidence)
            seconds += took
        reconstruction = [reconstruction_metrics(a, b, f) for (a, b), f in zip(pairs, flows, strict=True)]
        accuracy = None
        if truth is not None:
            accuracy = [flow_metrics(f, gt) for f, gt in zip(flows, truth, strict=True)]
        result = MethodResult(
            method.name, method.label, flows, seconds, reconstruction, accuracy, confidence or None
        )
        results.append(result)
        if progress:
            plural = "s" if len(flows) != 1 else ""
            progress(f"{method.label}: {len(flows)} pair{plural}, {result.ms_per_pair:.0f} ms/pair")
    zero = np.zeros((*pairs[0][0].shape[:2], 2), dtype=np.float32)
    no_motion = aggregate(reconstruction_metrics(a, b, zero) for a, b in pairs)
    no_motion.pop("samples", None)
    if truth is not None:
        no_motion.update(aggregate(flow_metrics(zero, gt) for gt in truth))
        no_motion.pop("samples", None)
    max_flow = max(colour_radius(truth, results), MIN_COLOUR_RADIUS)
    return InputAnalysis(report_input, pairs, results, no_motion, max_flow, key_pair=(len(pairs) - 1) // 2)
