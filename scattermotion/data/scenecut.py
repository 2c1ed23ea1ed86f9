"""Hard scene-cut detection and cut-aware clip sampling.

A training clip that spans a cut teaches the network motion that does not exist, so clips are drawn inside
shots. Convention: a cut *at* ``i`` means a new shot starts at frame ``i`` (the cut lies between frames
``i - 1`` and ``i``, 0-based); ``bikes.mp4`` has cuts at 30, 76, 137, 187 and 242.

Detection streams the frames once, keeping two small per-frame signatures: an HSV colour histogram and a
64-pixel-wide grayscale thumbnail. A cut is a frame pair whose histogram distance and thumbnail difference
are both large in absolute terms and both stand out against their neighbourhood (``min_ratio`` times the
local median), so fast motion or a flickering light inside a shot (high everywhere nearby) is not a cut.
Gradual transitions (fades, dissolves) are not detected.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import cv2
import numpy as np

from scattermotion.data.video import open_video

THUMB_WIDTH = 64
HIST_BINS = (16, 4, 4)  # hue, saturation, value: hue carries most of a shot's identity
# The local-median floors keep near-static footage (medians ~0) from turning noise into huge ratios.
HIST_FLOOR = 0.01
PIXEL_FLOOR = 0.005


def _signature(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(normalised HSV histogram, grayscale thumbnail in [0, 1]) of an H×W×3 uint8 RGB frame."""
    h, w = frame.shape[:2]
    thumb_h = max(1, round(h * THUMB_WIDTH / w))
    small = cv2.resize(np.ascontiguousarray(frame), (THUMB_WIDTH, thumb_h), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return hist / max(float(hist.sum()), 1.0), gray


def frame_differences(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame change signals ``(hist, pixel)``, each of length T with entry 0 set to 0.

    ``hist[i]``: total-variation distance (0..1) of the HSV histograms of frames ``i - 1`` and ``i``;
    ``pixel[i]``: mean absolute difference (0..1) of their grayscale thumbnails.
    """
    hist_d, pixel_d = [0.0], [0.0]
    previous = None
    for frame in frames:
        current = _signature(frame)
        if previous is not None:
            hist_d.append(0.5 * float(np.abs(current[0] - previous[0]).sum()))
            pixel_d.append(float(np.abs(current[1] - previous[1]).mean()))
        previous = current
    if previous is None:
        return np.zeros(0), np.zeros(0)
    return np.asarray(hist_d), np.asarray(pixel_d)


def _local_median(values: np.ndarray, i: int, window: int) -> float:
    """Median of ``values`` within ``window`` frames of ``i``, without ``i`` itself and entry 0 (no pair)."""
    neighbours = np.concatenate([values[max(1, i - window) : i], values[i + 1 : i + 1 + window]])
    return float(np.median(neighbours)) if neighbours.size else 0.0


def detect_scene_cuts(
    source: str | os.PathLike | Iterable[np.ndarray],
    threshold: float = 0.1,
    min_pixel_change: float = 0.05,
    min_ratio: float = 2.5,
    window: int = 8,
    min_shot_len: int = 3,
) -> list[int]:
    """Indices ``i`` where a new shot starts (a hard cut between frames ``i - 1`` and ``i``), ascending.

    ``source``: a video path or frame folder (opened with :func:`open_video`, streamed) or any iterable of
    ``H×W×3 uint8 RGB`` frames. A pair is a cut when its histogram distance is at least ``threshold``, its
    thumbnail difference at least ``min_pixel_change``, and each is at least ``min_ratio`` times its median
    over ``window`` frames either side. Of cuts closer than ``min_shot_len`` frames (a flash, a one-frame
    glitch), only the strongest is kept.
    """
    if isinstance(source, str | os.PathLike):
        source = open_video(source).frames()
    hist_d, pixel_d = frame_differences(source)
    candidates = []
    for i in range(1, len(hist_d)):
        if hist_d[i] < threshold or pixel_d[i] < min_pixel_change:
            continue
        hist_ratio = hist_d[i] / (_local_median(hist_d, i, window) + HIST_FLOOR)
        pixel_ratio = pixel_d[i] / (_local_median(pixel_d, i, window) + PIXEL_FLOOR)
        if hist_ratio >= min_ratio and pixel_ratio >= min_ratio:
            candidates.append(i)
    cuts: list[int] = []
    for i in candidates:
        if cuts and i - cuts[-1] < min_shot_len:
            if hist_d[i] > hist_d[cuts[-1]]:
                cuts[-1] = i
            continue
        cuts.append(i)
    return cuts


def shots(frame_count: int, cuts: Iterable[int]) -> list[tuple[int, int]]:
    """The shots ``[(start, end), ...]`` (``end`` exclusive) of a ``frame_count``-frame video cut at ``cuts``.

    Cuts outside ``1 .. frame_count - 1`` are ignored; the shots cover every frame once.
    """
    bounds = sorted({c for c in cuts if 0 < c < frame_count})
    starts = [0, *bounds]
    ends = [*bounds, frame_count]
    return [(s, e) for s, e in zip(starts, ends, strict=True) if e > s]


def sample_clip_starts(shot_list: Iterable[tuple[int, int]], clip_len: int, stride: int) -> list[int]:
    """Start frames of ``clip_len``-frame clips placed every ``stride`` frames inside each shot.

    A clip ``[s, s + clip_len)`` never crosses a cut; a shot shorter than ``clip_len`` gives none.
    """
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len and stride must be >= 1, got {clip_len=}, {stride=}")
    return [s for start, end in shot_list for s in range(start, end - clip_len + 1, stride)]
