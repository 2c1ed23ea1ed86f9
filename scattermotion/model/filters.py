"""Image-guided smoothing of the decoder's motion between refinement passes (no weights).

Each pass's motion becomes, per cell, the mean of its window's motion weighted by how much each neighbour's
colour resembles the cell's, ``exp(−|g_j − g_i|² / 2σ²)`` (a joint bilateral filter, guide ``g`` the frame
averaged to the level's stride): a local matcher's independent errors average out within a surface, while a
neighbour across an object's edge, of another colour, barely counts. Why not a plain median, as in "Secrets of
Optical Flow" (Sun, Roth & Black 2010): it erases small objects (stage 22, footage validation pairs: object
EPE 0.61 → 0.77 with 3×3 at stride 8 and 5×5 at stride 4, background 0.43 → 0.38); a median weighted by the
same colour similarity keeps them (0.61) but sorts 25 values a cell, several times the cost of this mean.
Where it runs and how wide: ``MotionConfig.guided_smoothing`` (its comment has the measurements).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F


def _shifted(x: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """Every offset of a ``size``×``size`` window of ``N×C×h×w`` (edges replicated), row by row, as views.
    Why not ``F.unfold``: its copy of every window took 8 ms for the stride-4 weights of a 224×224 clip on one
    thread, these slices 1.9 ms."""
    height, width = x.shape[-2:]
    pad = size // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    for i in range(size):
        for j in range(size):
            yield padded[..., i : i + height, j : j + width]


def similarity_weights(guide: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """``N×C×h×w`` guide → ``N×size²×h×w`` weights of every cell's window, summing to 1 per cell."""
    distance = torch.stack([(near - guide).square_().sum(1) for near in _shifted(guide, size)], 1)
    weights = distance.mul_(-0.5 / sigma**2).exp_()
    return weights.div_(weights.sum(1, keepdim=True))


def guided_mean(motion: torch.Tensor, weights: torch.Tensor, size: int) -> torch.Tensor:
    """``N×2×h×w`` motion, :func:`similarity_weights` of its cells for windows of ``size`` → the weighted
    mean of every window."""
    mean = torch.zeros_like(motion)
    for k, near in enumerate(_shifted(motion, size)):
        mean.addcmul_(near, weights[:, k : k + 1])
    return mean
