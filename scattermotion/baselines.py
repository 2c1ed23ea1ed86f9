"""Classical optical flow (OpenCV) behind the same interface as ``MotionEstimator``: ``estimate(frame1,
frame2) -> H×W×2 float32`` and ``estimate_clip(frames) -> (T-1)×H×W×2``.

Methods: ``"tvl1"`` (Dual TV-L1, OpenCV defaults), ``"dis"`` (DIS, medium preset), ``"dis-fast"`` (DIS,
ultrafast preset), ``"farneback"`` (pyramid 0.5, 3 levels, window 15, 3 iterations, poly_n 5, sigma 1.2)
and ``"zero"`` (no motion: the floor every method must beat).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import cv2
import numpy as np

from scattermotion.io.checks import as_rgb, check_frame_count, check_same_size
from scattermotion.methods import CLASSICAL_METHODS as METHODS
from scattermotion.methods import get_method


def _to_gray(frame: np.ndarray, index: int) -> np.ndarray:
    return cv2.cvtColor(as_rgb(frame, f"frame {index}"), cv2.COLOR_RGB2GRAY)  # grey frames pass unchanged


@contextmanager
def _opencv_threads(threads: int | None):
    """OpenCV's thread count is process-wide: set it for one call and put it back."""
    if threads is None:
        yield
        return
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


DIS_PATCH = 8  # patch size of both DIS presets


def dis_safe_size(height: int, width: int) -> tuple[int, int]:
    """The smallest ``(H, W)`` at least ``(height, width)`` that OpenCV's DIS runs on.

    DIS picks its coarsest pyramid level from the width alone and then reads patches of 8 px at that
    level: frames under 12 px raise ``cv::error`` and short, wide ones (12x100, 20x400) crash the
    process. Padding the height to a patch per level and both sides to 16 px avoids both (checked on a
    grid of sizes from 1 to 1920 px with both presets).
    """
    coarsest = max(0, int(math.log2(max(width, 1) / (4 * DIS_PATCH)) + 0.5))
    return max(height, DIS_PATCH << coarsest, 16), max(width, 16)


def _dis(preset: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    dis = cv2.DISOpticalFlow_create(preset)

    def calc(gray1: np.ndarray, gray2: np.ndarray) -> np.ndarray:
        height, width = gray1.shape
        safe_h, safe_w = dis_safe_size(height, width)
        if (safe_h, safe_w) == (height, width):
            return dis.calc(gray1, gray2, None)
        # Replicated borders carry no motion of their own; the flow is cropped back to the frame.
        pad = (0, safe_h - height, 0, safe_w - width, cv2.BORDER_REPLICATE)
        flow = dis.calc(cv2.copyMakeBorder(gray1, *pad), cv2.copyMakeBorder(gray2, *pad), None)
        return flow[:height, :width]

    return calc


# (scale, OpenCV VariationalRefinement calls at it), coarse to fine as DIS refines at every level of its
# pyramid; each call is 5 fixed-point x 5 SOR iterations (OpenCV's defaults).
REFINE_PLAN: tuple[tuple[float, int], ...] = ((0.5, 3), (1.0, 3))
REFINE_MIN_SIDE = 16  # scales that would shrink the frames below this are skipped


def refine_flow(
    frame1: np.ndarray,
    frame2: np.ndarray,
    flow: np.ndarray,
    plan: Sequence[tuple[float, int]] = REFINE_PLAN,
) -> np.ndarray:
    """``flow`` (H×W×2, frame1 → frame2) refined by OpenCV's variational refinement (the last stage of DIS:
    grey-level and gradient constancy with a smoothness term, solved by SOR; default settings), started from
    it and run coarse to fine: for each ``(scale, calls)`` of ``plan``, ``calls`` refinements of the motion
    on the frames resized by ``scale``.

    Why these scales: SOR moves the motion only a pixel or so per call, so at full size alone it left much of
    the network's error; a coarser start spreads the correction further but its smoothness erases small
    objects. Measured on validation data only (24 footage validation pairs, their seed; the model of then),
    EPE / EPE on the small independent objects, px: network 0.75 / 0.66; full size 0.54 / 0.48; 1/2 then
    full 0.40 / 0.57; 1/4, 1/2, full 0.33 / 0.95 (objects worse than the network's); DIS 0.33 / 0.48.
    Why 3 calls at each: fewer calls at full size lose little, but not enough time is saved to matter. On
    the stage-14 model (32 footage validation pairs / 8 synthetic validation clips, EPE px): network 0.555 /
    4.82; 3 + 3 calls 0.343 / 4.34; 3 + 1 0.348 / 4.39; 2 + 1 0.359 / 4.44; 1 + 1 0.384 / 4.51; full size
    once 0.477 / 4.66. At 224x224 on 2 threads 3 + 1 takes 9.9 ms a pair against 15.4 for 3 + 3 (one run),
    which leaves ``ours-refined`` below 30 pairs/s either way, so the more accurate plan stays. Stage 22,
    tried and reverted: its network forward only (no backward averaging) with 3 + 1 calls scored 0.313 /
    4.06 on validation (with the backward motion and 3 + 3: 0.301 / 3.76; DIS 0.328 / 5.47) but ran 28.1
    pairs/s in the ``model_speed`` run where ``ours`` ran 33.0: still below the floor, for a clear loss."""
    if not plan or plan[-1][0] != 1.0:
        raise ValueError(f"a refinement plan must end at scale 1.0 (full size), got {list(plan)}")
    gray1, gray2 = _to_gray(frame1, 0), _to_gray(frame2, 1)
    check_same_size(gray2, gray1, 1)
    height, width = gray1.shape
    refiner = cv2.VariationalRefinement_create()
    motion: np.ndarray | None = None
    for scale, calls in plan:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))  # cv2 order: (W, H)
        if min(size) < REFINE_MIN_SIDE and scale < 1.0:
            continue
        if size == (width, height):
            first, second = gray1, gray2
        else:
            first = cv2.resize(gray1, size, interpolation=cv2.INTER_AREA)
            second = cv2.resize(gray2, size, interpolation=cv2.INTER_AREA)
        source = flow if motion is None else motion
        if source.shape[1::-1] != size:  # motion in pixels of the new size
            ratio = np.float32([size[0] / source.shape[1], size[1] / source.shape[0]])
            shrink = size[0] < source.shape[1]
            source = cv2.resize(source, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            source = source * ratio
        motion = np.ascontiguousarray(source, dtype=np.float32).copy()
        for _ in range(calls):
            motion = refiner.calc(first, second, motion)
    return motion


def _farneback(gray1: np.ndarray, gray2: np.ndarray) -> np.ndarray:
    return cv2.calcOpticalFlowFarneback(gray1, gray2, None, 0.5, 3, 15, 3, 5, 1.2, 0)


class ClassicalFlow:
    """One classical method; ``threads`` (None = OpenCV's default) bounds OpenCV's worker threads."""

    def __init__(self, method: str, threads: int | None = None):
        self.method = get_method(method, METHODS).name
        self.threads = threads
        self._compute = self._make(method)

    @staticmethod
    def _make(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        if method == "tvl1":
            return cv2.optflow.DualTVL1OpticalFlow_create().calc  # type: ignore[attr-defined]
        if method == "dis":
            return _dis(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        if method == "dis-fast":
            return _dis(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        if method == "farneback":
            return _farneback
        return lambda a, b: np.zeros(a.shape + (2,), dtype=np.float32)

    def _pair(self, gray1: np.ndarray, gray2: np.ndarray) -> np.ndarray:
        if self.method == "tvl1":
            flow = self._compute(gray1, gray2, None)
        else:
            flow = self._compute(gray1, gray2)
        return np.ascontiguousarray(flow, dtype=np.float32)

    def estimate(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        """Motion from ``frame1`` to ``frame2`` (uint8 RGB or grey), H×W×2 float32 in pixels."""
        gray1, gray2 = _to_gray(frame1, 0), _to_gray(frame2, 1)
        check_same_size(gray2, gray1, 1)
        with _opencv_threads(self.threads):
            return self._pair(gray1, gray2)

    def estimate_clip(self, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Motion for every adjacent pair of ``frames`` (T >= 2): (T-1)×H×W×2 float32."""
        check_frame_count(len(frames))
        grays = [_to_gray(f, i) for i, f in enumerate(frames)]  # each converted once, shared by two pairs
        for index, gray in enumerate(grays[1:], start=1):
            check_same_size(gray, grays[0], index)
        with _opencv_threads(self.threads):
            return np.stack([self._pair(a, b) for a, b in zip(grays[:-1], grays[1:], strict=True)])
