"""Local motion cues: correlation over a window of candidate displacements, decoded to a distribution.

For a window of k×k integer displacements d (radius r = k // 2, in pixels of the level), the correlation
volume ``corr[d](p) = cos(f_t(p), f_t+1(p + d))`` and the context features of frame t are decoded into k²
logits per cell, ``logits = τ·corr + decoder(corr, context)``; ``softmax`` gives the cue distribution,
``Σ p(d)·d`` the motion (soft-argmax) and ``1 − entropy / log k²`` a confidence in [0, 1].

The finer levels use the same formulation for the *residual* around the upsampled motion (after warping
frame t+1's features with it): a soft-argmax over a small window is bounded by construction (a residual can
never exceed the window, so an untrained or confused level cannot throw the estimate far off), starts at
exactly zero (uniform cues), is sub-pixel through the expectation, and gives a per-level confidence for free;
a free regression head has none of these.

Why cosine correlation and the ``τ·corr`` shortcut: with raw dot products / C the correlation of a freshly
initialised encoder is ~1e-4 against context features ~1e-2, the decoder ignores it, and training (supervised
or self-supervised) sits at "predict zero motion" for hundreds of steps (measured). Cosine similarity is in
[-1, 1] whatever the feature scale, and adding it to the logits makes the cues a matching distribution from
step 0 (random features already match texture); the decoder learns corrections on top.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from scattermotion.model.encoder import conv_act
from scattermotion.precision import full_precision

# A full all-pairs matrix product plus a gather costs ∝ (h·w)² but is one op; k² shifted products cost
# ∝ k²·h·w but k² ops. Measured on 2 CPU threads (C=32, k=9): all-pairs is ~10x faster at 14×14 cells and even
# at 32×32, so use it while h·w <= this many times k².
_ALL_PAIRS_CELLS_PER_CANDIDATE = 8
# Between the two, each row against the k rows around it (one matrix product, then a gather of the window's
# band) costs ∝ k·(w + 2r)·h·w: (w + 2r)/k times the products' work, but in one op. Measured on 2 CPU threads
# at the stride-8 passes of a 224×224 clip (6 pairs, C=32, k=5, 28×28 cells): 0.7 ms against 1.6-1.9 ms for
# the shifted products; at 56×56 cells the products win. So use it while w + 2r <= this many times k.
_BANDED_ROW_CELLS_PER_CANDIDATE = 8


@functools.lru_cache(maxsize=64)
def _window_index(height: int, width: int, radius: int, device: torch.device) -> torch.Tensor:
    """``(h·w)×k²`` flat index of cell p + d for every candidate d; ``h·w`` (a zero column) when outside."""
    # Cached across calls, so never an inference tensor: one made under inference_mode would break autograd
    # in a later training step.
    with torch.inference_mode(False):
        offsets = torch.arange(-radius, radius + 1, device=device)
        dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
        ys, xs = torch.meshgrid(
            torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij"
        )
        ty = ys.reshape(-1, 1) + dy.reshape(1, -1)
        tx = xs.reshape(-1, 1) + dx.reshape(1, -1)
        inside = (ty >= 0) & (ty < height) & (tx >= 0) & (tx < width)
        return torch.where(inside, ty * width + tx, torch.full_like(ty, height * width))


def unit_channels(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``x`` over the L2 norm of its channels (dim 1), floored at ``eps``: ``F.normalize(x, dim=1)``'s values.
    Why not ``F.normalize``: its channel-strided vector norm took 30 % of an inference pass on this CPU
    (2.4 ms a call at stride 4); a sum of squares over the same dimension is a fraction of that."""
    return x * torch.rsqrt((x * x).sum(1, keepdim=True).clamp_min(eps * eps))


def local_correlation(
    ref: torch.Tensor, target: torch.Tensor, radius: int, normalize: bool = False
) -> torch.Tensor:
    """``B×C×h×w`` twice → ``B×k²×h×w`` with k = 2r+1; candidate index ``i·k + j`` is displacement
    ``(dx, dy) = (j − r, i − r)``. Displacements that leave the image correlate with zeros.

    ``normalize=False``: mean product over channels; ``True``: cosine similarity (features L2-normalised)."""
    if normalize:
        return cosine_correlation(unit_channels(ref), target, radius)
    return _window_products(ref, target, radius) / ref.shape[1]


def cosine_correlation(unit_ref: torch.Tensor, target: torch.Tensor, radius: int) -> torch.Tensor:
    """``local_correlation(ref, target, radius, normalize=True)`` for ``unit_ref = unit_channels(ref)``: a
    level's refinement passes correlate the same reference features, so they normalise them once."""
    return _window_products(unit_ref, unit_channels(target), radius)


def _window_products(ref: torch.Tensor, target: torch.Tensor, radius: int) -> torch.Tensor:
    """Channel sums of ``ref · target`` shifted by every displacement of the window: ``B×k²×h×w``."""
    batch, channels, height, width = ref.shape
    window = 2 * radius + 1
    # A trace (ONNX export) must not freeze a size-dependent choice: it takes the shifted-window branch.
    if not torch.jit.is_tracing() and height * width <= _ALL_PAIRS_CELLS_PER_CANDIDATE * window * window:
        all_pairs = torch.bmm(ref.flatten(2).transpose(1, 2), target.flatten(2))  # B×hw×hw
        all_pairs = F.pad(all_pairs, (0, 1))  # the zero column for outside candidates
        index = _window_index(height, width, radius, ref.device).expand(batch, -1, -1)
        corr = (
            torch.gather(all_pairs, 2, index).transpose(1, 2).reshape(batch, window * window, height, width)
        )
    elif not torch.jit.is_tracing() and width + 2 * radius <= _BANDED_ROW_CELLS_PER_CANDIDATE * window:
        corr = _banded_row_products(ref, target, radius)
    else:
        padded = F.pad(target, (radius, radius, radius, radius))
        corr = torch.stack(
            [
                (ref * padded[:, :, i : i + height, j : j + width]).sum(1)
                for i in range(window)
                for j in range(window)
            ],
            dim=1,
        )
    return corr


def _banded_row_products(ref: torch.Tensor, target: torch.Tensor, radius: int) -> torch.Tensor:
    """:func:`_window_products` as one matrix product per row: each row of ``ref`` (w cells) against the k
    (zero-padded) rows of ``target`` around it (k·(w + 2r) cells), then the window's k² of them per cell."""
    batch, channels, height, width = ref.shape
    window = 2 * radius + 1
    rows = ref.permute(0, 2, 3, 1).reshape(batch * height, width, channels)
    padded = F.pad(target, (radius, radius, radius, radius)).permute(0, 2, 1, 3)  # B×(h+2r)×C×(w+2r)
    bands = padded.unfold(1, window, 1).transpose(3, 4).reshape(batch * height, channels, -1)
    products = torch.bmm(rows, bands)  # (B·h)×w×(k·(w+2r)): cell x against band row i, cell x'
    index = _band_index(width, radius, ref.device).expand(batch * height, -1, -1)
    corr = torch.gather(products, 2, index)  # (B·h)×w×k²
    return corr.view(batch, height, width, window * window).permute(0, 3, 1, 2)


@functools.lru_cache(maxsize=64)
def _band_index(width: int, radius: int, device: torch.device) -> torch.Tensor:
    """``w×k²``: where candidate ``(i, j)`` of cell x sits in a row of :func:`_banded_row_products`'s
    products, ``i·(w + 2r) + x + j``."""
    with torch.inference_mode(False):  # cached across calls: see _window_index
        window = 2 * radius + 1
        cells = torch.arange(width, device=device).view(width, 1, 1)
        offsets = torch.arange(window, device=device)
        index = offsets.view(1, window, 1) * (width + 2 * radius) + cells + offsets.view(1, 1, window)
        return index.view(width, window * window)


def displacement_grid(window: int) -> torch.Tensor:
    """``k²×2`` candidate displacements ``(dx, dy)`` in the order of :func:`local_correlation`."""
    radius = window // 2
    offsets = torch.arange(window, dtype=torch.float32) - radius
    dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
    return torch.stack((dx.flatten(), dy.flatten()), dim=1)


def cue_expectation(probs: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Soft-argmax: ``B×k²×h×w`` probabilities, ``k²×2`` displacements → ``B×2×h×w`` motion."""
    return torch.einsum("bkhw,kc->bchw", probs, grid.to(probs.dtype))


def cue_confidence(probs: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """``1 − H(p) / log k²``: 1 for a single sure candidate, 0 for a uniform (uninformative) distribution."""
    entropy = -(probs * log_probs).sum(1, keepdim=True)
    return (1.0 - entropy / math.log(probs.shape[1])).clamp(0.0, 1.0)


class CueDecoder(nn.Module):
    """Correlation (+ context features, + motion so far) → logits over the k² candidates; soft-argmax motion.

    ``forward(corr, features)`` (``B×k²×h×w`` and ``B×C×h×w`` with ``k² + C == in_channels``) returns
    ``(logits, probs, motion, confidence, hidden)``; ``hidden`` are the last features before the logits
    (motion-aware context that the upsampler can reuse).
    """

    def __init__(self, in_channels: int, hidden: int, window: int):
        super().__init__()
        self.window = window
        self.body = nn.Sequential(conv_act(in_channels, hidden), conv_act(hidden, hidden))
        self.logits = nn.Conv2d(hidden, window * window, 3, padding=1)
        # Near-uniform cues at start (motion ≈ 0) while keeping gradients flowing into the body.
        nn.init.normal_(self.logits.weight, std=1e-3)
        nn.init.zeros_(self.logits.bias)
        # Sharpness of the matching prior: cosine gaps of ~0.3 between the true and a wrong candidate become
        # ~3 in logits. Learned.
        self.match_temperature = nn.Parameter(torch.tensor(10.0))
        self.register_buffer("grid", displacement_grid(window), persistent=False)

    def context_response(self, context: torch.Tensor) -> torch.Tensor:
        """The first convolution's response to ``context``, the input channels right after the k²
        correlation ones, bias included. A level's passes decode the same context: computed once and passed
        to :meth:`forward`, it spares every pass that part of the convolution (a convolution is linear in
        its input channels and zero padding keeps it so: the same result up to rounding). The context is 32 of
        the 59 input channels at stride 8, whose six passes now convolve it once."""
        conv = self.body[0][0]
        start = self.window * self.window
        weight = conv.weight[:, start : start + context.shape[1]]
        return F.conv2d(context, weight, conv.bias, padding=conv.padding)

    def forward(self, corr: torch.Tensor, features: torch.Tensor, context: torch.Tensor | None = None):
        """``context``: :meth:`context_response` of the context channels, which ``features`` then leaves
        out (it holds only the channels after them)."""
        logits, hidden = self._logits(corr, features, context)
        # The distribution and its expectation in fp32 even under bf16 autocast: bf16 would round the motion.
        with full_precision(logits.device.type):
            logits = logits.float()
            log_probs = F.log_softmax(logits, dim=1)
            probs = log_probs.exp()
            motion = cue_expectation(probs, self.grid)
            confidence = cue_confidence(probs, log_probs)
        return logits, probs, motion, confidence, hidden

    def residual(self, corr: torch.Tensor, features: torch.Tensor, context: torch.Tensor | None = None):
        """``(logits, motion, hidden)`` of :meth:`forward`: what a refinement pass reads (its cues'
        probabilities and confidence were computed and dropped every pass)."""
        logits, hidden = self._logits(corr, features, context)
        with full_precision(logits.device.type):
            logits = logits.float()
            motion = cue_expectation(F.softmax(logits, dim=1), self.grid)
        return logits, motion, hidden

    def _logits(
        self, corr: torch.Tensor, features: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if context is None:
            hidden = self.body(torch.cat((corr, features), dim=1))
        else:
            conv, act = self.body[0]
            start = corr.shape[1]
            end = conv.in_channels - features.shape[1]  # the context's channels are [start, end)
            weight = torch.cat((conv.weight[:, :start], conv.weight[:, end:]), dim=1)
            first = F.conv2d(torch.cat((corr, features), dim=1), weight, None, padding=conv.padding)
            hidden = self.body[1:](act(first + context))
        return self.logits(hidden) + self.match_temperature * corr, hidden
