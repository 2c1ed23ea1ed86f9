"""Run every motion method on one report input and score it: time per pair, frame reconstruction (PSNR,
SSIM) on every pair, accuracy against ground truth where it exists, and our network's confidence.

All methods see the same frames, one clip at a time (so a clip model gets its temporal context), through the
scorer every verb uses (:func:`scattermotion.scoring.score_clips`); the time per pair is the wall time of the
method's own call divided by the pairs of the clip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scattermotion.clipsets import ClipSet
from scattermotion.estimator import FlowEstimator, MotionEstimator, get_estimator
from scattermotion.io.visualize import sequence_max_flow
from scattermotion.methods import OURS, build_estimators, method_label
from scattermotion.metrics import aggregate
from scattermotion.report.confidence import estimate_with_confidence
from scattermotion.scoring import score_clips

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
) -> list[Method]:
    """The methods to run, in order, labelled (:func:`scattermotion.methods.build_estimators`)."""
    estimators = build_estimators(methods, weights, device)
    return [Method(name, method_label(name, weights), e) for name, e in estimators.items()]


@dataclass
class MethodResult:
    """One method on one input: per-pair motion, scores (:func:`scattermotion.scoring.score_pair`: frame
    reconstruction, and accuracy where there is ground truth) and (ours) confidence, in pair order."""

    name: str
    label: str
    flows: list[np.ndarray]
    seconds: float
    scores: list[dict[str, float]]
    confidence: list[np.ndarray] | None = None

    @property
    def ms_per_pair(self) -> float:
        return 1000.0 * self.seconds / len(self.flows)

    def summary(self) -> dict[str, float]:
        """Mean scores over the pairs, plus ``ms_per_pair``."""
        scores = aggregate(self.scores)
        scores.pop("samples", None)
        scores["ms_per_pair"] = self.ms_per_pair
        return scores


@dataclass
class InputAnalysis:
    """Everything the page shows about one input. ``max_flow`` is the colour-wheel radius shared by all its
    motion pictures (ground truth included); ``key_pair`` indexes the pair drawn as stills."""

    input: ClipSet
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


class _WithConfidence:
    """Our network as the scorer calls it (``estimate_clip``), its confidence kept aside for the page."""

    def __init__(self, estimator: MotionEstimator):
        self.estimator = estimator
        self.confidence: list[np.ndarray] = []

    def estimate_clip(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        flows, confidence = estimate_with_confidence(self.estimator, list(frames))
        self.confidence.extend(confidence)
        return flows


def analyse_input(
    report_input: ClipSet,
    methods: Sequence[Method],
    progress: Callable[[str], None] | None = None,
) -> InputAnalysis:
    """Run and score every method on ``report_input``."""
    clips = list(report_input.clips)
    pairs = [(c.frames[t], c.frames[t + 1]) for c in clips for t in range(c.pair_count)]
    runners: dict[str, Any] = {}
    for method in methods:
        if isinstance(method.estimator, MotionEstimator):  # first call pays one-off set-up: keep it out
            method.estimator.estimate(*pairs[0])
            runners[method.name] = _WithConfidence(method.estimator)
        else:
            runners[method.name] = method.estimator
    scored = score_clips(clips, runners, reconstruction=True, keep_flows=True)
    results = []
    for method in methods:
        run = scored[method.name]
        confidence = getattr(runners[method.name], "confidence", None)
        result = MethodResult(method.name, method.label, run.flows, run.seconds, run.metrics, confidence)
        results.append(result)
        if progress:
            plural = "s" if len(result.flows) != 1 else ""
            progress(f"{method.label}: {len(result.flows)} pair{plural}, {result.ms_per_pair:.0f} ms/pair")
    zero = score_clips(clips, {"zero": get_estimator("zero")}, reconstruction=True)["zero"]
    no_motion = zero.summary()
    no_motion.pop("samples", None)
    truth = report_input.ground_truth
    max_flow = max(colour_radius(truth, results), MIN_COLOUR_RADIUS)
    return InputAnalysis(report_input, pairs, results, no_motion, max_flow, key_pair=(len(pairs) - 1) // 2)
