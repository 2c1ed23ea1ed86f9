"""Self-supervised motion losses: photometric (Charbonnier + SSIM, optional census), edge-aware second-order
smoothness, forward-backward occlusion masks, and deep supervision at the coarse decoder levels.

Every adjacent pair of a clip is scored; with backward motion (``MotionNet(..., bidirectional=True)``) the
reversed pairs are scored as well and occlusions are masked out (UnFlow's consistency test).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scattermotion.model.photometry import grey
from scattermotion.warp import backward_warp


@dataclass
class LossConfig:
    """All loss weights in one place. Images are in [0, 1]; motion in pixels of the level it is given at."""

    charbonnier_weight: float = 0.15  # ARFlow mix: 0.15 robust L1 + 0.85 SSIM
    ssim_weight: float = 0.85
    census_weight: float = 0.0  # optional ternary census term (robust to brightness changes)
    census_radius: int = 3
    charbonnier_eps: float = 0.01
    charbonnier_alpha: float = 0.45  # (x² + eps²)^alpha: alpha 0.5 is a smooth L1
    smooth_weight: float = 0.05  # second-order smoothness, relative to the photometric term
    smooth_edge_weight: float = 10.0  # exp(-edge_weight · |∇I|): less smoothing across image edges
    occlusion: bool = True  # mask forward-backward inconsistent pixels (needs bidirectional output)
    occlusion_alpha1: float = 0.01  # |f + b|² > alpha1 (|f|² + |b|²) + alpha2  ⇒ occluded
    occlusion_alpha2: float = 0.5
    full_res_weight: float = 1.0
    level_weights: tuple[float, ...] = (0.25, 0.5, 0.75)  # deep supervision per decoder level, coarsest first
    # Clips with ground truth: cross-entropy of each level's cue distribution against the two-hot of the true
    # residual (training/objectives.cue_target_loss), times supervised_weight; 0: off.
    cue_target_weight: float = 0.0
    # Clips with ground truth: per-pixel (EPE + 0.01)^q (PWC-Net's robust fine-tuning loss) instead of EPE;
    # q < 1 stops the few large failures from outweighing the precision of the many small motions. 1: EPE.
    supervised_exponent: float = 1.0


# ---- pieces --------------------------------------------------------------------------------------
def charbonnier(x: torch.Tensor, eps: float = 0.01, alpha: float = 0.45) -> torch.Tensor:
    return (x * x + eps * eps) ** alpha


def box3(x: torch.Tensor) -> torch.Tensor:
    """3×3 mean, replicate-padded (shape of the input). Two 1-D sums of shifted views: a third of
    ``avg_pool2d``'s time forward, as fast backward (SSIM on 6 pairs of 224x320: 91 -> 40 ms)."""
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    rows = padded[..., :, :-2] + padded[..., :, 1:-1] + padded[..., :, 2:]
    return (rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]) / 9


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM *dissimilarity* ``(1 − SSIM) / 2`` in [0, 1] over 3×3 windows (shape of the input)."""
    c1, c2 = 0.01**2, 0.03**2
    # Five separate calls: one box3 over the five maps stacked is slower (its backward fills a 5x tensor).
    mu_x, mu_y = box3(x), box3(y)
    sigma_x = box3(x * x) - mu_x * mu_x
    sigma_y = box3(y * y) - mu_y * mu_y
    sigma_xy = box3(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_x + sigma_y + c2)
    return ((1 - numerator / denominator) / 2).clamp(0, 1)


def census_distance(x: torch.Tensor, y: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Soft ternary census distance per pixel (UnFlow), ``B×1×H×W``; insensitive to brightness offsets."""

    def transform(image: torch.Tensor) -> torch.Tensor:
        gray = grey(image) * 255
        window = 2 * radius + 1
        patches = F.unfold(F.pad(gray, (radius,) * 4, mode="replicate"), window)
        patches = patches.view(gray.shape[0], window * window, *gray.shape[-2:]) - gray
        return patches / torch.sqrt(0.81 + patches * patches)

    diff = transform(x) - transform(y)
    return (diff * diff / (0.1 + diff * diff)).mean(1, keepdim=True)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B×C×H×W) over the pixels where ``mask`` (B×1×H×W) is 1."""
    return (values.mean(1, keepdim=True) * mask).sum() / (mask.sum() + 1e-6)


def photometric_loss(
    image: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor, cfg: LossConfig | None = None
) -> torch.Tensor:
    """Robust + SSIM (+ census) difference between ``image`` and the warped other frame, over ``mask``."""
    cfg = cfg or LossConfig()
    loss = image.new_zeros(())
    if cfg.charbonnier_weight:
        robust = charbonnier(image - warped, cfg.charbonnier_eps, cfg.charbonnier_alpha)
        loss = loss + cfg.charbonnier_weight * masked_mean(robust, mask)
    if cfg.ssim_weight:
        loss = loss + cfg.ssim_weight * masked_mean(ssim(image, warped), mask)
    if cfg.census_weight:
        loss = loss + cfg.census_weight * masked_mean(census_distance(image, warped, cfg.census_radius), mask)
    return loss


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def smoothness_loss(flow: torch.Tensor, image: torch.Tensor, edge_weight: float = 10.0) -> torch.Tensor:
    """Edge-aware second-order smoothness: ``|∂²f|`` weighted by ``exp(−edge_weight · |∇I|)`` (ARFlow-like).

    The second derivative at pixel c spans c−1..c+1; it is relaxed by the stronger of the two image
    gradients beside c, so an edge on either side of a motion kink frees it (symmetric, unlike one-sided).
    """
    image_dx, image_dy = _gradients(image)
    edge_x = image_dx.abs().mean(1, keepdim=True)
    edge_y = image_dy.abs().mean(1, keepdim=True)
    weight_x = torch.exp(-edge_weight * torch.maximum(edge_x[..., :, 1:], edge_x[..., :, :-1]))
    weight_y = torch.exp(-edge_weight * torch.maximum(edge_y[..., 1:, :], edge_y[..., :-1, :]))
    flow_dx, flow_dy = _gradients(flow)
    flow_dxx, _ = _gradients(flow_dx)
    _, flow_dyy = _gradients(flow_dy)
    # A level narrower than 3 pixels has no second derivative in that direction (and an empty mean is NaN).
    loss_x = (weight_x * flow_dxx.abs()).mean() if flow_dxx.numel() else flow.new_zeros(())
    loss_y = (weight_y * flow_dyy.abs()).mean() if flow_dyy.numel() else flow.new_zeros(())
    return (loss_x + loss_y) / 2


@torch.no_grad()
def occlusion_masks(
    forward: torch.Tensor, backward: torch.Tensor, alpha1: float = 0.01, alpha2: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward-backward consistency (UnFlow): ``(occluded_in_t, occluded_in_t+1)``, B×1×H×W, 1 = occluded.

    A pixel is occluded when the motion there and the other direction's motion at its destination do not
    cancel: ``|f + b(x + f)|² > alpha1 (|f|² + |b(x + f)|²) + alpha2``.
    """

    def test(flow: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        other_at_target, _ = backward_warp(other, flow)
        mismatch = (flow + other_at_target).pow(2).sum(1, keepdim=True)
        magnitude = flow.pow(2).sum(1, keepdim=True) + other_at_target.pow(2).sum(1, keepdim=True)
        return (mismatch > alpha1 * magnitude + alpha2).to(flow.dtype)

    return test(forward, backward), test(backward, forward)


# ---- the whole objective -------------------------------------------------------------------------
def _level_loss(
    ref: torch.Tensor,
    other: torch.Tensor,
    flow: torch.Tensor,
    backward: torch.Tensor | None,
    cfg: LossConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Photometric + smoothness for folded pairs (N×3×h×w frames, N×2×h×w motion); both directions if
    ``backward`` is given. Returns ``(photometric, smoothness, occluded_fraction)``."""
    flows, refs, others = [flow], [ref], [other]
    if backward is not None:
        flows, refs, others = [flow, backward], [ref, other], [other, ref]
    flows_all, refs_all, others_all = torch.cat(flows), torch.cat(refs), torch.cat(others)
    warped, mask = backward_warp(others_all, flows_all)
    occluded = torch.zeros_like(mask)
    if backward is not None and cfg.occlusion:
        occluded = torch.cat(occlusion_masks(flow, backward, cfg.occlusion_alpha1, cfg.occlusion_alpha2))
        mask = mask * (1 - occluded)
    photo = photometric_loss(refs_all, warped, mask, cfg)
    smooth = smoothness_loss(flows_all, refs_all, cfg.smooth_edge_weight)
    return photo, smooth, occluded.mean()


def self_supervised_loss(frames: torch.Tensor, output, cfg: LossConfig | None = None):
    """``frames`` B×T×3×H×W in [0, 1], ``output`` a :class:`~scattermotion.model.MotionOutput` →
    ``(total, parts)``; ``parts`` maps names to detached scalars (for logging).

    Full resolution gets ``full_res_weight``; each decoder level i (coarsest first, motion in its own pixels)
    gets ``level_weights[i]`` on frames average-pooled to its resolution.
    """
    cfg = cfg or LossConfig()
    if len(cfg.level_weights) != len(output.coarse_flows):
        raise ValueError(
            f"LossConfig.level_weights has {len(cfg.level_weights)} entries but the model has "
            f"{len(output.coarse_flows)} decoder levels (strides {output.strides})"
        )
    ref = frames[:, :-1].flatten(0, 1)
    other = frames[:, 1:].flatten(0, 1)
    bidirectional = output.backward_flows is not None

    levels = [(1, cfg.full_res_weight, output.flows, output.backward_flows)]
    for i, (stride, weight) in enumerate(zip(output.strides, cfg.level_weights, strict=True)):
        backward = output.backward_coarse_flows[i] if bidirectional else None
        levels.append((stride, weight, output.coarse_flows[i], backward))

    total = frames.new_zeros(())
    parts: dict[str, torch.Tensor] = {}
    for stride, weight, flow, backward in levels:
        if not weight:
            continue
        level_ref = F.avg_pool2d(ref, stride) if stride > 1 else ref
        level_other = F.avg_pool2d(other, stride) if stride > 1 else other
        photo, smooth, occluded = _level_loss(
            level_ref,
            level_other,
            flow.flatten(0, 1),
            backward.flatten(0, 1) if backward is not None else None,
            cfg,
        )
        total = total + weight * (photo + cfg.smooth_weight * smooth)
        parts[f"photo_s{stride}"] = photo.detach()
        parts[f"smooth_s{stride}"] = smooth.detach()
        if stride == 1:
            parts["occluded"] = occluded.detach()
    parts["total"] = total.detach()
    return total, parts
