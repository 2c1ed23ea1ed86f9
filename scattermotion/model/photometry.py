"""Photometric building blocks of the weight-free inference steps (polish, propagation, fill): grey frames,
2×2-px cell means, box sums over windows, central gradients and the frames' sensor-noise variance. One home,
so the three steps read the frames the same way."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scattermotion.augment import LUMA

# The polish's step is solved per cell of CELL×CELL pixels (from every pixel's products) and resampled, and
# the fill weighs and fills the same cells: a quarter of the box filtering and solving. The polish against
# per pixel, two steps on the validation sets: footage 0.383 against
# 0.394 px, reconstruction 34.46 against 34.55 dB, in 8.7 against 10.9 ms (3 pairs, 224×224, 2 threads).
CELL = 2


def grey(frames: torch.Tensor) -> torch.Tensor:
    """``…×3×H×W`` RGB → ``…×1×H×W`` Rec. 601 luma, as OpenCV's RGB → grey (what DIS and the variational
    refinement see) and the augmentation's; ``…×1×H×W`` is already grey and comes back as it is (the
    network converts once and hands the grey clip to every step after the decoder)."""
    if frames.shape[-3] == 1:
        return frames
    weights = torch.from_numpy(LUMA).to(frames).view(3, 1, 1)
    return (frames * weights).sum(-3, keepdim=True)


def cell_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of every ``CELL``×``CELL`` cell of ``N×C×H×W`` (H and W multiples of ``CELL``), as
    ``avg_pool2d(x, CELL)``: strided slices added, 0.4 ms for five 224×224 maps of three pairs on 2 threads
    where ``avg_pool2d`` took 1.7 ms."""
    total = sum(x[..., i::CELL, j::CELL] for i in range(CELL) for j in range(CELL))
    return total * (1.0 / (CELL * CELL))


def _running_sum(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Sums of ``size`` consecutive values along ``dim`` (-1 or -2), centred, zeros beyond the edges: two ops
    from a cumulative sum whatever the size (a stride-1 ``avg_pool2d`` took 8 ms for five 224×224 maps of
    three pairs, these sums 1.4 ms)."""
    radius = size // 2
    pad = (radius + 1, radius) if dim == -1 else (0, 0, radius + 1, radius)
    total = F.pad(x, pad).cumsum(dim)
    length = total.shape[dim]
    return total.narrow(dim, size, length - size) - total.narrow(dim, 0, length - size)


def _window_counts(length: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """How many of the ``size`` positions centred on each of ``length`` positions lie inside: 1-D."""
    radius = size // 2
    index = torch.arange(length, device=like.device)
    return ((index + radius).clamp(max=length - 1) - (index - radius).clamp(min=0) + 1).to(like.dtype)


def box_sum(x: torch.Tensor, size: int) -> torch.Tensor:
    """Sum of every ``size``×``size`` window of ``N×C×H×W``, centred, zeros beyond the edges."""
    return _running_sum(_running_sum(x, size, -1), size, -2)


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of every ``size``×``size`` window of ``N×C×H×W``, over its pixels inside the image (as
    ``avg_pool2d(..., count_include_pad=False)``)."""
    height, width = x.shape[-2:]
    sums = box_sum(x, size)
    counts = _window_counts(height, size, x).view(-1, 1) * _window_counts(width, size, x).view(1, -1)
    return sums / counts


def central_gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂x, ∂y)`` of ``N×1×H×W`` by central differences; zero on the border rows and columns."""
    dx = F.pad(image[..., :, 2:] - image[..., :, :-2], (1, 1)) * 0.5
    dy = F.pad(image[..., 2:, :] - image[..., :-2, :], (0, 0, 1, 1)) * 0.5
    return dx, dy


# Immerkær's noise operator (the difference of two Laplacians): zero on any locally linear image, so what it
# sees of a smooth textured frame is mostly noise; its response to noise of σ has standard deviation 6σ.
_NOISE_KERNEL = ((1.0, -2.0, 1.0), (-2.0, 4.0, -2.0), (1.0, -2.0, 1.0))
_MAD_TO_SIGMA = 1.4826  # median absolute value → standard deviation, Gaussian


def noise_variance(image: torch.Tensor) -> torch.Tensor:
    """``N×1×H×W`` → ``N×1×1``: the variance of each image's sensor noise, by Immerkær (1996) with a median in
    place of his mean, so that edges and texture barely move it. Every fourth row and column is enough: 0.7
    ms for four 224×224 frames on 2 threads, against 3.0 ms at every pixel (and the same estimate within a
    few percent: tests/test_polish.py)."""
    kernel = torch.tensor(_NOISE_KERNEL, dtype=image.dtype, device=image.device).view(1, 1, 3, 3)
    response = F.conv2d(image, kernel, stride=4).abs().flatten(1)
    # The median (the upper one of an even count) as the largest of the n // 2 + 1 smallest: ONNX has TopK,
    # no median. (Its largest, not its element [-1]: traced beside the propagation, that index was recorded
    # as a wrong constant, and the exported noise estimate read a low quantile.)
    median = response.topk(response.shape[1] // 2 + 1, dim=1, largest=False).values.amax(dim=1)
    sigma = median * (_MAD_TO_SIGMA / 6.0)
    return (sigma * sigma).view(-1, 1, 1)


def pair_noise_variance(luma: torch.Tensor) -> torch.Tensor:
    """``B×T×1×H×W`` grey clips → ``(B·(T−1))×1×1``: each consecutive pair's mean :func:`noise_variance`."""
    variance = noise_variance(luma.flatten(0, 1)).unflatten(0, luma.shape[:2])
    return ((variance[:, :-1] + variance[:, 1:]) * 0.5).flatten(0, 1)
