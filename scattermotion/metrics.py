"""Flow accuracy against ground truth and frame-reconstruction quality without it.

``flow_metrics`` follows the usual benchmark definitions: EPE = mean end-point error over pixels with known
ground truth (Sintel's ``epe``, split into non-occluded / occluded where occlusion is known), accuracy
at 1/3/5 px, KITTI's Fl-all (a pixel is an outlier when its error is > 3 px **and** > 5 % of the true
motion; reported as a fraction, ×100 for KITTI's percent) and EPE near motion boundaries.
``reconstruction_metrics`` warps frame 2 back onto frame 1 with a flow and scores PSNR / SSIM on the pixels
whose sample point lies inside frame 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import cv2
import numpy as np

ACCURACY_THRESHOLDS = (1, 3, 5)
PSNR_CAP = 100.0  # dB: identical images would give +inf, which poisons any average
SSIM_SIGMA = 1.5  # Gaussian window of Wang et al. (2004)
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2


def endpoint_error(pred, gt, axis: int = -1):
    """Per-pixel ``|pred - gt|``, the Euclidean norm over the (u, v) ``axis``: the one EPE definition.

    NumPy arrays (H×W×2 for the metrics here): float64, NaN where the ground truth is unknown. Torch tensors
    (the training objective's ``…×2×H×W`` with ``axis=-3``): stays in autograd, with a 1e-12 floor under
    the root so that its gradient is finite where the error is 0."""
    if pred.shape != gt.shape or pred.ndim < 1 or pred.shape[axis] != 2:
        raise ValueError(
            f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must match, with 2 on axis {axis}"
        )
    if isinstance(pred, np.ndarray):
        diff = pred.astype(np.float64) - np.asarray(gt, dtype=np.float64)
        return np.sqrt(np.sum(diff * diff, axis=axis))
    return (pred - gt).pow(2).sum(axis).add(1e-12).sqrt()


def along_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel signed error along the true motion, ``(pred − gt)·gt/|gt|`` in px (H×W×2 each → H×W):
    negative where the estimate falls short of the true motion, positive where it overshoots; NaN where the
    ground truth is unknown or zero. Its mean shows a bias that the EPE (a length) cannot."""
    truth = np.asarray(gt, dtype=np.float64)
    magnitude = np.linalg.norm(truth, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        along = np.sum((pred.astype(np.float64) - truth) * truth, axis=-1) / magnitude
    return np.where(magnitude > 1e-6, along, np.nan)


def motion_boundaries(gt: np.ndarray, threshold: float = 1.0, radius: int = 2) -> np.ndarray:
    """H×W bool: pixels within ``radius`` px of a motion boundary, i.e. of two 4-neighbours whose known
    ground-truth motions differ by more than ``threshold`` px."""
    flow = gt.astype(np.float64)
    edge = np.zeros(flow.shape[:2], dtype=bool)
    with np.errstate(invalid="ignore"):
        jump_x = np.linalg.norm(flow[:, 1:] - flow[:, :-1], axis=2) > threshold  # False where NaN
        jump_y = np.linalg.norm(flow[1:] - flow[:-1], axis=2) > threshold
    edge[:, 1:] |= jump_x
    edge[:, :-1] |= jump_x
    edge[1:] |= jump_y
    edge[:-1] |= jump_y
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        edge = cv2.dilate(edge.astype(np.uint8), kernel).astype(bool)
    return edge


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[mask].mean()) if mask.any() else math.nan


def flow_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    valid: np.ndarray | None = None,
    occluded: np.ndarray | None = None,
    boundary_threshold: float = 1.0,
    boundary_radius: int = 2,
) -> dict[str, float]:
    """Accuracy of ``pred`` against ``gt`` (both H×W×2) on pixels with finite ``gt`` (and ``valid``).

    Keys: ``epe``, ``acc_1px``, ``acc_3px``, ``acc_5px`` (fraction with EPE below the threshold), ``fl_all``
    (fraction of KITTI outliers), ``epe_boundary`` (see :func:`motion_boundaries`), and ``epe_noc`` /
    ``epe_occ`` when ``occluded`` is given. A mean over no pixels is NaN.
    """
    epe = endpoint_error(pred, gt)
    known = np.isfinite(gt).all(axis=2)
    if valid is not None:
        known &= np.asarray(valid, dtype=bool)
    error = np.where(known, epe, 0.0)  # NaN-free, so comparisons below need no masking
    magnitude = np.where(known, np.linalg.norm(np.nan_to_num(gt.astype(np.float64)), axis=2), 0.0)
    metrics = {"epe": _mean(error, known)}
    if occluded is not None:
        occluded = np.asarray(occluded, dtype=bool)
        metrics["epe_noc"] = _mean(error, known & ~occluded)
        metrics["epe_occ"] = _mean(error, known & occluded)
    for px in ACCURACY_THRESHOLDS:
        metrics[f"acc_{px}px"] = _mean(error < px, known)
    metrics["fl_all"] = _mean((error > 3.0) & (error > 0.05 * magnitude), known)
    boundary = motion_boundaries(gt, boundary_threshold, boundary_radius)
    metrics["epe_boundary"] = _mean(error, known & boundary)
    return metrics


# ---- reconstruction ---------------------------------------------------------------------------------------


def backward_warp_image(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``image`` (H×W×C) bilinearly at ``(x + u, y + v)`` in float64 (exact coordinates; cv2.remap
    rounds them to 1/32 px). Returns (H×W×C float64, H×W bool valid: finite flow, point inside the image)."""
    height, width = image.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    x = xs + flow[..., 0]
    y = ys + flow[..., 1]
    valid = np.isfinite(x) & np.isfinite(y) & (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    x = np.clip(np.nan_to_num(x), 0, width - 1)
    y = np.clip(np.nan_to_num(y), 0, height - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), max(width - 2, 0))
    y0 = np.minimum(np.floor(y).astype(np.int64), max(height - 2, 0))
    x1 = np.minimum(x0 + 1, width - 1)
    y1 = np.minimum(y0 + 1, height - 1)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    img = image.astype(np.float64)
    if img.ndim == 2:
        img = img[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy, valid


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM over ``mask`` (Gaussian window σ=1.5, per channel then averaged); the local statistics use
    only masked pixels (normalised convolution), so pixels outside the mask cannot leak into the score."""
    if not mask.any():
        return math.nan
    weight = mask.astype(np.float64)

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (0, 0), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    norm = np.maximum(blur(weight), 1e-12)
    a = a.astype(np.float64).reshape(a.shape[0], a.shape[1], -1)
    b = b.astype(np.float64).reshape(b.shape[0], b.shape[1], -1)
    scores = []
    for c in range(a.shape[2]):
        x, y = a[..., c] * weight, b[..., c] * weight
        mu_x, mu_y = blur(x) / norm, blur(y) / norm
        var_x = blur(x * a[..., c]) / norm - mu_x**2
        var_y = blur(y * b[..., c]) / norm - mu_y**2
        cov = blur(x * b[..., c]) / norm - mu_x * mu_y
        ssim = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / (
            (mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
        )
        scores.append(ssim[mask].mean())
    return float(np.mean(scores))


def reconstruction_metrics(frame1: np.ndarray, frame2: np.ndarray, flow: np.ndarray) -> dict[str, float]:
    """How well ``frame2`` warped back by ``flow`` reproduces ``frame1`` (uint8 frames, 0..255 scale).

    Keys: ``psnr`` (dB, capped at 100), ``ssim``, ``valid_fraction`` (pixels whose sample point is inside
    frame 2; only those are scored).
    """
    if frame1.shape != frame2.shape or frame1.shape[:2] != flow.shape[:2]:
        raise ValueError(f"frames {frame1.shape}, {frame2.shape} and flow {flow.shape} must share H×W")
    warped, valid = backward_warp_image(frame2, flow)
    reference = frame1.astype(np.float64).reshape(warped.shape)
    if not valid.any():
        return {"psnr": math.nan, "ssim": math.nan, "valid_fraction": 0.0}
    mse = float(np.mean((warped[valid] - reference[valid]) ** 2))
    psnr = PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))
    return {
        "psnr": psnr,
        "ssim": masked_ssim(warped, reference, valid),
        "valid_fraction": float(valid.mean()),
    }


def aggregate(results: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of every key over the samples that have it (NaNs skipped; a key with no values gives NaN),
    plus ``samples``, the number of results."""
    results = list(results)
    keys = list(dict.fromkeys(key for result in results for key in result))
    summary: dict[str, float] = {}
    for key in keys:
        values = np.array([r[key] for r in results if key in r], dtype=np.float64)
        values = values[~np.isnan(values)]
        summary[key] = float(values.mean()) if values.size else math.nan
    summary["samples"] = float(len(results))
    return summary
