"""Our network's motion *and* its confidence map, from the same forward passes as ``estimate_clip``.

:class:`~scattermotion.estimator.MotionEstimator` returns motion only. Rather than repeat its window cutting
and padding here, the network is wrapped so that its ``flows`` carry the confidence as a third channel; the
estimator pads, runs, crops and orders the windows as usual, and the result is split again. So the
confidence belongs exactly to the motion shown (same windows, same clip context).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from scattermotion.estimator import MotionEstimator


class _ConfidenceAsChannel(nn.Module):
    """The network with ``flows`` (B×P×2×H×W) extended by ``confidence`` (B×P×1×H×W) to B×P×3×H×W."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = model.config
        self.stride = model.stride

    def forward(self, frames: torch.Tensor):
        output = self.model(frames)
        return replace(
            output, flows=torch.cat((output.flows, output.confidence.to(output.flows.dtype)), dim=2)
        )


def estimate_with_confidence(
    estimator: MotionEstimator, frames: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """``(flows (N-1)×H×W×2, confidence (N-1)×H×W in [0, 1])`` for N frames, equal to
    ``estimator.estimate_clip(frames)`` plus the network's confidence of every pair."""
    wrapped = MotionEstimator(
        _ConfidenceAsChannel(estimator.model),
        device=estimator.device,
        fp16=estimator.fp16,
        batch_size=estimator.batch_size,
    )
    both = wrapped.estimate_clip(frames)  # (N-1)×H×W×3
    return np.ascontiguousarray(both[..., :2]), np.ascontiguousarray(both[..., 2])
