"""Self-distillation on real video: the network's own test-time ensemble as the target of its single pass.

Why: on the footage validation pairs the mean of the plain, landed-backward and mirrored estimates
(:meth:`MotionNet.fused_motion`) is closer to the truth than the single pass (stage 9: 0.565 vs 0.655 px), and
real video, which has no labels, had only the photometric loss, which sensor noise and exposure changes
corrupt. Here the teacher is that ensemble on the clean clip, computed without gradients, trusted where its
estimates agree and the motion lands inside the frame; the student is the single pass on the same clip with
footage nuisances added (noise, gain, JPEG, grey: :func:`scattermotion.data.clips.with_nuisances`), which
move no pixel, so the target stays exact for it (SMURF's self-supervision, with the ensemble as teacher).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scattermotion.model.network import MotionNet, motion_length
from scattermotion.warp import lands_inside

RELATIVE_SPREAD = 0.05  # trusted spread grows with the motion: 5 % of it, like the forward-backward test


@dataclass
class TeacherTargets:
    flows: torch.Tensor  # B×(T−1)×2×H×W, fp32
    trusted: torch.Tensor  # B×(T−1)×1×H×W bool: the estimates agree and the motion lands inside the frame


@torch.no_grad()
def teacher_targets(net: MotionNet, frames: torch.Tensor, mirror: str, max_spread: float) -> TeacherTargets:
    """The ensemble motion of ``frames`` (B×T×3×H×W, clean) and where to trust it."""
    fused = net.fused_motion(frames, mirror=mirror, backward=True, with_spread=True)
    flows = fused.flows.float()
    agree = fused.spread.float() <= max_spread + RELATIVE_SPREAD * motion_length(flows)
    inside = lands_inside(flows.flatten(0, 1)).unflatten(0, flows.shape[:2])
    return TeacherTargets(flows, agree & inside)
