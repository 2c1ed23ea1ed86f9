"""The one scoring loop: every method on every clip, every pair scored (``evaluate``, ``report``, training
validation and the benchmarks all call :func:`score_clips`, so they agree on the number for the same pair).

A pair with ground truth is scored by :func:`scattermotion.metrics.flow_metrics` (EPE, accuracy, Fl-all,
boundary EPE; non-occluded / occluded EPE where occlusion is known); a pair without it by frame
reconstruction (:func:`scattermotion.metrics.reconstruction_metrics`), which ``reconstruction=True`` adds
to ground-truth pairs too. A method sees a whole clip at once (``estimate_clip``), so a clip model gets its
temporal context; for a 2-frame clip that is exactly ``estimate(frame1, frame2)``. The time of a pair is the
method's call on its clip divided by the clip's pairs (no metrics, no loading).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from scattermotion.clipsets import Clip
from scattermotion.metrics import aggregate, flow_metrics, reconstruction_metrics

PAIR_FIELDS = ("name", "ms")  # the keys of a scored pair that are not metrics


class ClipEstimator(Protocol):
    """All the scorer needs of a method (any :class:`~scattermotion.estimator.FlowEstimator` has it)."""

    def estimate_clip(self, frames: Sequence[np.ndarray]) -> np.ndarray: ...


def score_pair(clip: Clip, t: int, motion: np.ndarray, reconstruction: bool = False) -> dict[str, float]:
    """The metrics of the estimated ``motion`` of pair ``t`` of ``clip`` (see the module docstring)."""
    scores: dict[str, float] = {}
    if clip.flows is not None:
        occluded = clip.occluded[t] if clip.occluded is not None else None
        scores.update(flow_metrics(motion, clip.flows[t], occluded=occluded))
    if reconstruction or clip.flows is None:
        scores.update(reconstruction_metrics(clip.frames[t], clip.frames[t + 1], motion))
    return scores


@dataclass
class MethodScores:
    """One method over a set: ``pairs`` holds ``{"name", "ms", **metrics}`` per pair, in order; ``flows`` the
    estimated motion of every pair when the scorer was asked to keep it."""

    method: str
    pairs: list[dict[str, float | str]] = field(default_factory=list)
    seconds: float = 0.0
    flows: list[np.ndarray] | None = None

    @property
    def metrics(self) -> list[dict[str, float]]:
        """Each pair's metrics alone (no name, no time)."""
        return [{k: v for k, v in p.items() if k not in PAIR_FIELDS} for p in self.pairs]  # type: ignore[misc]

    def summary(self) -> dict[str, float]:
        """Means over the pairs (:func:`scattermotion.metrics.aggregate`: NaNs skipped, plus ``samples``)."""
        return aggregate(self.metrics)

    @property
    def ms_per_pair(self) -> float:
        return 1000.0 * self.seconds / len(self.pairs) if self.pairs else math.nan


def score_clips(
    clips: Iterable[Clip],
    estimators: Mapping[str, ClipEstimator],
    reconstruction: bool = False,
    keep_flows: bool = False,
    progress: Callable[[int, Clip], None] | None = None,
) -> dict[str, MethodScores]:
    """Run every method on every clip (each clip read once, all methods on it) and score every pair.

    ``reconstruction``: score ground-truth pairs by reconstruction too; ``keep_flows``: keep the estimated
    motion in :attr:`MethodScores.flows`; ``progress(i, clip)`` is called after clip ``i`` (0-based).
    """
    results = {name: MethodScores(name, flows=[] if keep_flows else None) for name in estimators}
    for i, clip in enumerate(clips):
        frames = list(clip.frames)
        for name, estimator in estimators.items():
            start = time.perf_counter()
            flows = estimator.estimate_clip(frames)
            took = time.perf_counter() - start
            result = results[name]
            result.seconds += took
            for t, motion in enumerate(flows):
                scores = score_pair(clip, t, motion, reconstruction)
                result.pairs.append({"name": clip.pair_name(t), "ms": 1000 * took / len(flows), **scores})
            if result.flows is not None:
                result.flows.extend(flows)
        if progress:
            progress(i, clip)
    return results
