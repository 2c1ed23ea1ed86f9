"""Image-guided smoothing of the decoder's motion between refinement passes (no weights).

Each pass's motion becomes, per cell, the mean of its window's motion weighted by how much each neighbour's
colour resembles the cell's, ``exp(−|g_j − g_i|² / 2σ²)`` (a joint bilateral filter, guide ``g`` the frame
averaged to the level's stride): a local matcher's independent errors average out within a surface, while a
neighbour across an object's edge, of another colour, barely counts. Why not a plain median, as in "Secrets of
Optical Flow" (Sun, Roth & Black 2010): it erases small objects (stage 22, footage validation pairs: object
EPE 0.61 → 0.77 with 3×3 at stride 8 and 5×5 at stride 4, background 0.43 → 0.38); a median weighted by the
same colour similarity keeps them (0.61) but sorts 25 values a cell, several times the cost of this mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _windows(x: torch.Tensor, size: int) -> torch.Tensor:
    """``N×C×h×w`` → ``N×C×size²×h×w``: every cell's window (edges replicated)."""
    n, c, h, w = x.shape
    pad = size // 2
    return F.unfold(F.pad(x, (pad, pad, pad, pad), mode="replicate"), size).view(n, c, size * size, h, w)


def similarity_weights(guide: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """``N×C×h×w`` guide → ``N×1×size²×h×w`` weights of every cell's window, summing to 1 per cell."""
    distance = (_windows(guide, size) - guide.unsqueeze(2)).square_().sum(1, keepdim=True)
    weights = distance.mul_(-0.5 / sigma**2).exp_()
    return weights.div_(weights.sum(2, keepdim=True))


def guided_mean(motion: torch.Tensor, weights: torch.Tensor, size: int) -> torch.Tensor:
    """``N×2×h×w`` motion, :func:`similarity_weights` of its cells for windows of ``size`` → the weighted
    mean of every window."""
    return (_windows(motion, size) * weights).sum(2)
