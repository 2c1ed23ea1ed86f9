"""Self-distillation on real video: the network's own test-time ensemble as the target of its single pass.

Why: on the footage validation pairs the mean of the plain, landed-backward and mirrored estimates
(:meth:`MotionNet.fused_motion`) is closer to the truth than the single pass (stage 9: 0.565 vs 0.655 px), and
real video, which has no labels, had only the photometric loss, which sensor noise and exposure changes
corrupt. Here the teacher is that ensemble on the clean clip, computed without gradients, trusted where its
estimates agree and the motion lands inside the frame; the student is the single pass on the same clip with
footage nuisances added (noise, gain, JPEG, grey: :func:`scattermotion.data.clips.with_nuisances`), which
move no pixel, so the target stays exact for it (SMURF's self-supervision, with the ensemble as teacher).

With ``refine``, the teacher sees more than the student: the ensemble motion is then refined on the clean
frames by :func:`scattermotion.baselines.refine_flow` (a label-free variational energy: grey-level and
gradient constancy with smoothness). Why: the plain ensemble taught its own errors (stage 10), while the
refined motion is well ahead of it on footage validation (stage 14: 0.343 vs 0.555 px) and fixes what the
network lacks most, sub-pixel precision and the undershoot of small motion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scattermotion.baselines import refine_flow
from scattermotion.model.network import MotionNet, motion_length
from scattermotion.warp import lands_inside

RELATIVE_SPREAD = 0.05  # trusted spread grows with the motion: 5 % of it, like the forward-backward test


@dataclass
class TeacherTargets:
    flows: torch.Tensor  # B×(T−1)×2×H×W, fp32
    trusted: torch.Tensor  # B×(T−1)×1×H×W bool: the estimates agree and the motion lands inside the frame


@torch.no_grad()
def teacher_targets(
    net: MotionNet, frames: torch.Tensor, mirror: str, max_spread: float, refine: bool = False
) -> TeacherTargets:
    """The ensemble motion of ``frames`` (B×T×3×H×W, clean, in [0, 1]) and where to trust it: where the
    ensemble's estimates agree; with ``refine``, the motion is the refined ensemble's."""
    fused = net.fused_motion(frames, mirror=mirror, backward=True, with_spread=True)
    flows = fused.flows.float()
    if refine:
        flows = refined(frames, flows)
    agree = fused.spread.float() <= max_spread + RELATIVE_SPREAD * motion_length(flows)
    inside = lands_inside(flows.flatten(0, 1)).unflatten(0, flows.shape[:2])
    return TeacherTargets(flows, agree & inside)


def refined(frames: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """``flows`` (B×(T−1)×2×H×W, frame t → t+1 of ``frames``) refined pair by pair on the CPU."""
    images = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2)
    images, motion = images.cpu().numpy(), flows.detach().cpu().permute(0, 1, 3, 4, 2).numpy()
    out = np.empty_like(motion)
    for b in range(motion.shape[0]):
        for t in range(motion.shape[1]):
            out[b, t] = refine_flow(images[b, t], images[b, t + 1], motion[b, t])
    return torch.from_numpy(out).permute(0, 1, 4, 2, 3).to(flows.device, flows.dtype)
