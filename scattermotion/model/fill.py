"""Filling textureless regions with the motion of the textured ones around them, at inference: push–pull
interpolation (Gortler, Grzeszczuk, Szeliski & Cohen 1996, "The Lumigraph") of the full-resolution motion,
each pixel weighted by how much texture pins its motion down. No weights.

What it fixes: in a flat region (sky, a white wall, a dark background) the frames say nothing about the
motion, and the decoder's cues there are near uniform: its motion is whatever the stride-16 cells and the
smoothing leave, often far from the surrounding scene's (validation-seed smooth clips: errors of 4 px and
more over a dark sky beside a textured pylon, where DIS's coarse-to-fine smoothness gives 0.2). The
textured regions' motion is the best guess for it.

How: a pixel's weight is the smaller eigenvalue λ of the structure tensor of the first frame over a
``window``×``window``-cell window (cells of 2×2 px, as the polish: an edge pins one component only, so it
counts little), as ``λ / (λ + scale + noise × σ²)`` with σ² the pair's sensor-noise variance. The
weighted motion and the weights are averaged over 2×2 cells level by level (push); from the coarsest level
down (pull), each level keeps its own mean motion as far as its weight goes (four times its children's mean
weight, clamped to 1) and takes the coarser level's, bilinearly upsampled, for the rest. At the finest level a
pixel keeps its motion in proportion to its own weight; the change is added to its full-resolution motion,
so textured regions keep their detail.
Measurements and the shipped settings: ``MotionConfig.fill_scale``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scattermotion.model.photometry import (
    CELL,
    box_mean,
    cell_mean,
    central_gradients,
    grey,
    pair_noise_variance,
)

# Averaged levels below the cells (each halves the size, rounding up): 8 reach cells of 512 px, beyond which
# the image's weighted mean motion serves. 24 validation-seed smooth clips after the propagation (scale
# 1e-5): 3 levels and the image mean 0.661, 5 levels 0.592, 6 0.584, 8 0.577 (sprites 1.809, 1.723, 1.704,
# 1.700).
LEVELS = 8
# A level keeps its motion by four times its children's mean weight (their sum, where it has all four),
# clamped to 1: one well-textured cell of four holds its motion.
CHILDREN = 4.0
_EPS = 1e-8


def texture_weights(luma: torch.Tensor, window: int, floor: torch.Tensor | float) -> torch.Tensor:
    """``N×1×H×W`` grey frames → ``N×1×(H/CELL)×(W/CELL)`` weights in [0, 1): per cell, ``λ / (λ + floor)``,
    λ the structure tensor's smaller eigenvalue over ``window``×``window`` cells (``floor``: a number or
    one per frame, ``N×1×1×1``)."""
    dx, dy = central_gradients(luma)
    xx, xy, yy = box_mean(cell_mean(torch.cat((dx * dx, dx * dy, dy * dy), 1)), window).unbind(1)
    half_trace = (xx + yy) * 0.5
    smaller = half_trace - (half_trace * half_trace - (xx * yy - xy * xy)).clamp_min(0.0).sqrt()
    smaller = smaller[:, None].clamp_min(0.0)
    return smaller / (smaller + floor).clamp_min(_EPS)  # a zero floor: flat cells weigh 0, not 0/0


def push_pull(values: torch.Tensor, weights: torch.Tensor, levels: int = LEVELS) -> torch.Tensor:
    """``N×C×h×w`` values, ``N×1×h×w`` weights in [0, 1] → ``N×C×h×w``: each value kept in proportion to its
    weight, the rest filled from the weighted values around it, the farther the fewer there are near."""
    # A uniform trickle of weight: a frame with no texture anywhere keeps its mean motion, not zero.
    weights = weights + _EPS
    pyramid = [(values * weights, weights)]
    for _ in range(levels):
        weighted, total = pyramid[-1]
        pyramid.append((_halved(weighted), _halved(total)))
    weighted, total = pyramid[-1]
    filled = weighted.sum((-2, -1), keepdim=True) / total.sum((-2, -1), keepdim=True).clamp_min(_EPS)
    for level in range(levels, -1, -1):
        weighted, total = pyramid[level]
        if level < levels:
            filled = F.interpolate(filled, size=weighted.shape[-2:], mode="bilinear", align_corners=False)
        keep = total if level == 0 else (total * CHILDREN).clamp(max=1.0)
        filled = keep * (weighted / total.clamp_min(_EPS)) + (1.0 - keep) * filled
    return filled


def _halved(x: torch.Tensor) -> torch.Tensor:
    """Means over 2×2 cells, an odd last row or column over the cells it has (explicitly not counting
    padding: ONNX Runtime's AveragePool before opset 19 divides a ceil-mode edge window by the full 4)."""
    return F.avg_pool2d(x, 2, ceil_mode=True, count_include_pad=False)


def fill(flow: torch.Tensor, luma: torch.Tensor, window: int, floor: torch.Tensor | float) -> torch.Tensor:
    """``N×2×H×W`` motion of grey first frames ``luma`` (``N×1×H×W``; H and W multiples of ``CELL``) with its
    textureless regions filled (:func:`texture_weights`, :func:`push_pull` per cell)."""
    cells = cell_mean(flow)
    change = push_pull(cells, texture_weights(luma, window, floor)) - cells
    return flow + F.interpolate(change, scale_factor=CELL, mode="bilinear")


def fill_motion(
    frames: torch.Tensor,
    flows: torch.Tensor,
    window: int,
    scale: float,
    noise: float,
    variance: torch.Tensor | None = None,
) -> torch.Tensor:
    """``B×(T−1)×2×H×W`` motion of the consecutive pairs of ``B×T×3×H×W`` frames (in [0, 1]; or their grey
    ``B×T×1×H×W``) after :func:`fill`, the weights' floor ``scale`` + ``noise`` × each pair's noise variance
    (``variance``: :func:`~scattermotion.model.photometry.pair_noise_variance`, if already computed)."""
    luma = grey(frames)
    if noise and variance is None:
        variance = pair_noise_variance(luma)
    floor = scale + noise * variance[..., None] if noise else scale
    return fill(flows.flatten(0, 1), luma[:, :-1].flatten(0, 1), window, floor).unflatten(0, flows.shape[:2])
