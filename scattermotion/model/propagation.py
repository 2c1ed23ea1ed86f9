"""Spatial propagation of the full-resolution motion: a pixel takes a neighbour's motion where that motion
matches the frames better (the propagation step of PatchMatch: Barnes et al. 2009; in stereo, Bleyer,
Rhemann & Rother 2011). No weights.

What it fixes: where a thin or small structure moves differently from what lies around it, the decoder's
stride-8 cells blur the two motions together, and the polish (a Lucas–Kanade step of at most 1 px) cannot
pull either back. The right motion usually exists a few cells away, inside the structure or the background;
this step lets a pixel try it.

How: for each offset o (px, largest first) the candidates are the motions found o px to the right, left,
below and above; a candidate's cost is the sum, over a window, of the squared grey-level difference between
the first frame and the second frame sampled through the candidate, less its window mean (an exposure or
gain change between the frames is locally an offset, as in the polish); a pixel takes its cheapest candidate
when that costs less than its current motion by more than a margin (a fraction of that cost, and a multiple
of the pair's sensor-noise variance: noise alone must not swap motions). Costs are evaluated on every
``CELL``-th pixel of every ``CELL``-th row, and a cell that takes a candidate takes the whole motion of the
cell it came from, pixel by pixel, so the detail the decoder and the polish gave it moves with it.
Measurements and the shipped settings: ``MotionConfig.propagation_offsets``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from scattermotion.model.photometry import box_sum, grey, pair_noise_variance
from scattermotion.warp import sample_points

# Costs on every 2nd pixel of every 2nd row: a quarter of the samples. At every pixel (windows of 7 px,
# offsets [16, 8, 4], no noise term) the validation figures were close (stage 23: smooth / sprites clips
# 0.463 / 1.986, footage objects 0.505, against 0.466 / 2.010 / 0.552 here without the noise term, which
# brings the objects back) in two and a half times the time.
CELL = 2
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1))
# Costs closer than this (squared grey levels in [0, 1], summed over the window) are a tie: in a flat region
# every cost is the cumulative sums' rounding (±1e-7 and below at the sizes tested, 48×80 to 96×64 px;
# between PyTorch and ONNX Runtime up to 1.5e-6 over textured windows), which decided swaps there and made
# the exported graph disagree with PyTorch by up to 20 px on clips with flat regions. The rounding grows with
# a row's running sum, so on much wider frames it may reach the floor again; the fill after the propagation
# overwrites flat regions in the shipped setting. Validation (48 + 48 smooth / sprites clips, followed by an
# experimental colour-guided fill): 0.4954 / 1.4899 without, 0.4957 / 1.4889 with this floor and tie rule;
# a floor of 1e-5 0.5016 / 1.4950.
COST_FLOOR = 1e-6


def shifted(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``x`` (``N×C×H×W``) with every position ``(i, j)`` holding the value at ``(i + dy, j + dx)``, edges
    replicated."""
    height, width = x.shape[-2:]
    padded = F.pad(x, (max(-dx, 0), max(dx, 0), max(-dy, 0), max(dy, 0)), mode="replicate")
    top, left = max(dy, 0), max(dx, 0)
    return padded[..., top : top + height, left : left + width]


def pixel_positions(like: torch.Tensor) -> torch.Tensor:
    """``1×2×H×W`` (x, y) of every position of ``like`` (``N×C×H×W``): ``warp.pixel_grid`` built from
    cumulative sums, not from the shape, which the ONNX tracer recorded here as wrong constants."""
    ones = torch.ones_like(like[:1, :1])
    return torch.cat((ones.cumsum(-1), ones.cumsum(-2)), 1) - 1.0


def match_cost(first: torch.Tensor, second: torch.Tensor, points: torch.Tensor, window: int) -> torch.Tensor:
    """Per cell, the windowed zero-mean sum of squared differences between ``first`` (its cells' pixels,
    ``N×1×h×w``) and ``second`` (``N×1×H×W``) sampled at ``points`` (``N×2×h×w``)."""
    difference = first - sample_points(second, points)
    # Two one-channel sums: faster than one of both channels stacked (the copy, and cache).
    return box_sum(difference * difference, window) - box_sum(difference, window).square() / (window * window)


def propagate(
    first: torch.Tensor,
    second: torch.Tensor,
    flow: torch.Tensor,
    offsets: Sequence[int],
    window: int,
    margin: float,
    noise: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """``N×2×H×W`` motion from grey ``first`` to grey ``second`` (``N×1×H×W``) after one propagation per
    offset (px, multiples of ``CELL``; H and W too); costs over ``window``×``window`` cells. A candidate is
    taken where its cost × (1 + ``margin``) + ``noise`` × the window's cell count is below the current
    motion's (``noise``: a number or one per pair, ``N×1×1×1``, in squared grey levels)."""
    cells = first[..., ::CELL, ::CELL]
    origin = pixel_positions(cells)  # each cell's own position, in cells
    # Per cell: the motion it holds (px) and the cell it took that motion from.
    state = torch.cat((flow[..., ::CELL, ::CELL], origin + torch.zeros_like(cells)), 1)
    positions = origin * CELL
    best = match_cost(cells, second, positions + state[:, :2], window)
    bias = noise * (window * window)
    cells_4, second_4 = cells.repeat(len(DIRECTIONS), 1, 1, 1), second.repeat(len(DIRECTIONS), 1, 1, 1)
    for offset in offsets:
        step = offset // CELL
        candidates = [shifted(state, dx * step, dy * step) for dx, dy in DIRECTIONS]
        # The four directions' costs as one batch: a quarter of the operations, which is what this costs.
        motions = torch.cat([candidate[:, :2] for candidate in candidates])
        costs = match_cost(cells_4, second_4, positions + motions, window).chunk(len(DIRECTIONS))
        # The cheapest direction, a later one only where it is cheaper by more than rounding: flat regions
        # tie, and the cumulative sums' rounding must not choose (nor tell PyTorch from ONNX Runtime apart).
        cheapest, chosen = costs[0], candidates[0]
        for cost, candidate in zip(costs[1:], candidates[1:], strict=True):
            cheaper = cost + COST_FLOOR < cheapest
            cheapest = torch.where(cheaper, cost, cheapest)
            chosen = torch.where(cheaper, candidate, chosen)
        taken = cheapest * (1.0 + margin) + (bias + COST_FLOOR) < best
        state = torch.where(taken, chosen, state)
        best = torch.where(taken, cheapest, best)
    # Every pixel takes the motion of the same pixel of its cell's source cell (nearest: exact values).
    moved = F.interpolate((state[:, 2:] - origin).round() * CELL, scale_factor=CELL, mode="nearest")
    return sample_points(flow, pixel_positions(flow) + moved, mode="nearest")


def propagate_motion(
    frames: torch.Tensor,
    flows: torch.Tensor,
    offsets: Sequence[int],
    window: int,
    margin: float,
    noise: float = 0.0,
    variance: torch.Tensor | None = None,
) -> torch.Tensor:
    """``B×(T−1)×2×H×W`` motion of the consecutive pairs of ``B×T×3×H×W`` frames (in [0, 1]; or their grey
    ``B×T×1×H×W``) after :func:`propagate`, each pair's ``noise`` term that many times its frames' mean noise
    variance (``variance``: :func:`~scattermotion.model.photometry.pair_noise_variance`, if already
    computed)."""
    luma = grey(frames)
    first = luma[:, :-1].flatten(0, 1)
    second = luma[:, 1:].flatten(0, 1)
    if noise and variance is None:
        variance = pair_noise_variance(luma)
    bias = noise * variance[..., None] if noise else 0.0
    motion = propagate(first, second, flows.flatten(0, 1), offsets, window, margin, bias)
    return motion.unflatten(0, flows.shape[:2])
