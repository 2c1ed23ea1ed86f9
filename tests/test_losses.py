"""Warping, photometric and smoothness losses, occlusion masks and the whole self-supervised objective."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import tiny_config

from scattermotion.losses import (
    LossConfig,
    box3,
    census_distance,
    occlusion_masks,
    photometric_loss,
    self_supervised_loss,
    smoothness_loss,
    ssim,
)
from scattermotion.model import MotionNet
from scattermotion.warp import backward_warp, flow_warp_coords

torch.set_num_threads(2)


def constant_flow(u: float, v: float, batch: int, height: int, width: int) -> torch.Tensor:
    return torch.tensor([float(u), float(v)]).view(1, 2, 1, 1).expand(batch, 2, height, width).clone()


def smooth_image(height: int, width: int, u0: float = 0.0, v0: float = 0.0) -> torch.Tensor:
    """An analytic image I(x + u0, y + v0) (1×3×H×W), so sub-pixel shifts have an exact answer."""
    ys, xs = torch.meshgrid(torch.arange(height).double(), torch.arange(width).double(), indexing="ij")
    xs, ys = xs + u0, ys + v0
    channels = [
        0.5 + 0.3 * torch.sin(xs / 5.0) * torch.cos(ys / 7.0),
        0.01 * xs + 0.02 * ys,  # linear: bilinear interpolation is exact
        0.5 + 0.2 * torch.cos((xs + ys) / 6.0),
    ]
    return torch.stack(channels)[None].float()


# ---- warping -------------------------------------------------------------------------------------
def test_integer_shift_reproduces_image_and_marks_outside_invalid():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 20, 30)
    warped, valid = backward_warp(image, constant_flow(3, -2, 2, 20, 30))
    # warped(x, y) = image(x + 3, y − 2)
    torch.testing.assert_close(warped[:, :, 2:, :-3], image[:, :, :-2, 3:])
    assert valid[:, :, 2:, :-3].min() == 1
    assert valid[:, :, :2].max() == 0 and valid[:, :, :, -3:].max() == 0  # samples above / right of the image
    assert warped.shape == image.shape and valid.shape == (2, 1, 20, 30)


def test_subpixel_shift_matches_analytic_image():
    flow = constant_flow(2.5, -1.25, 1, 32, 40)
    warped, valid = backward_warp(smooth_image(32, 40), flow)
    expected = smooth_image(32, 40, 2.5, -1.25)
    interior = (slice(None), slice(None), slice(3, -3), slice(3, -4))
    torch.testing.assert_close(
        warped[:, 1:2][interior], expected[:, 1:2][interior], atol=1e-5, rtol=0
    )  # linear
    assert (warped - expected)[interior].abs().max() < 6e-3  # smooth channels: bilinear error only
    assert valid[interior].min() == 1 and valid[:, :, :, -2:].max() == 0


def test_zero_flow_is_identity_and_coords_are_pixels():
    image = torch.rand(1, 2, 5, 6)
    warped, valid = backward_warp(image, torch.zeros(1, 2, 5, 6))
    torch.testing.assert_close(warped, image)
    assert valid.min() == 1
    coords = flow_warp_coords(torch.zeros(1, 2, 5, 6))
    assert coords[0, 0, 2, 4] == 4 and coords[0, 1, 2, 4] == 2


def test_warp_rejects_mismatched_shapes_and_integer_motion():
    with pytest.raises(ValueError):
        backward_warp(torch.rand(1, 3, 8, 8), torch.zeros(1, 2, 8, 9))
    with pytest.raises(ValueError, match="floating"):
        backward_warp(torch.rand(1, 3, 8, 8), torch.zeros(1, 2, 8, 8, dtype=torch.long))


# ---- photometric ---------------------------------------------------------------------------------
def test_box3_is_a_replicate_padded_3x3_mean():
    torch.manual_seed(0)
    x = torch.rand(2, 5, 7, 9)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    expected = torch.nn.functional.avg_pool2d(padded, 3, 1)
    torch.testing.assert_close(box3(x), expected)


def test_photometric_terms():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 16, 16)
    other = torch.rand(2, 3, 16, 16)
    ones = torch.ones(2, 1, 16, 16)
    assert ssim(image, image).abs().max() < 1e-4
    assert ssim(image, other).mean() > 0.2
    config = LossConfig(census_weight=1.0)
    same = photometric_loss(image, image, ones, config)
    different = photometric_loss(image, other, ones, config)
    assert different > same + 0.1
    # The mask removes pixels from the loss: a corrupted region that is masked out does not count.
    corrupted = image.clone()
    corrupted[:, :, :8] = other[:, :, :8]
    mask = ones.clone()
    mask[:, :, :12] = 0  # corrupted rows 0..7, plus the census radius (3) and SSIM window (1)
    assert photometric_loss(image, corrupted, mask, config) == pytest.approx(float(same), abs=1e-4)
    assert photometric_loss(image, corrupted, ones, config) > same + 0.05
    # Census ignores a brightness offset; the robust L1 term does not.
    assert census_distance(image, image + 0.1).abs().max() < 1e-4
    assert census_distance(image, other).mean() > 0.1


# ---- smoothness ----------------------------------------------------------------------------------
def test_second_order_smoothness_is_zero_for_affine_motion_and_edge_aware():
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    affine = torch.stack((0.1 * xs - 0.05 * ys + 2, 0.02 * xs + 0.3 * ys))[None]
    flat_image = torch.full((1, 3, 24, 24), 0.5)
    assert smoothness_loss(affine, flat_image) < 1e-6
    kink = torch.stack(((xs - 12).abs() * 0.5, torch.zeros_like(xs)))[None]
    flat_loss = smoothness_loss(kink, flat_image)
    assert flat_loss > 1e-3
    edge_image = flat_image.clone()
    edge_image[..., 12:] = 1.0  # an image edge beside the kink (x = 12): smoothing is relaxed there
    assert smoothness_loss(kink, edge_image, edge_weight=10.0) < 0.5 * flat_loss
    assert smoothness_loss(kink, edge_image, edge_weight=0.0) == pytest.approx(float(flat_loss))


# ---- occlusion -----------------------------------------------------------------------------------
def test_consistent_forward_backward_motion_has_no_occlusion():
    forward = constant_flow(3.0, -1.5, 2, 24, 32)
    occluded_t, occluded_t1 = occlusion_masks(forward, -forward)
    assert occluded_t.sum() == 0 and occluded_t1.sum() == 0
    # A smooth rotation and its inverse are consistent too (up to interpolation).
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(32.0), indexing="ij")
    angle = math.radians(2)
    cx, cy = 16, 12
    fx = (math.cos(angle) - 1) * (xs - cx) - math.sin(angle) * (ys - cy)
    fy = math.sin(angle) * (xs - cx) + (math.cos(angle) - 1) * (ys - cy)
    rotation = torch.stack((fx, fy))[None]
    bx = (math.cos(-angle) - 1) * (xs - cx) - math.sin(-angle) * (ys - cy)
    by = math.sin(-angle) * (xs - cx) + (math.cos(-angle) - 1) * (ys - cy)
    occluded_t, occluded_t1 = occlusion_masks(rotation, torch.stack((bx, by))[None])
    assert occluded_t.sum() == 0 and occluded_t1.sum() == 0


def test_inconsistent_region_is_flagged_as_occluded():
    forward = constant_flow(3.0, 0.0, 1, 24, 32)
    backward = -forward.clone()
    backward[:, 0, 8:16, 10:20] = 5.0  # this region of frame t+1 does not map back where it came from
    occluded_t, occluded_t1 = occlusion_masks(forward, backward)
    assert occluded_t1[0, 0, 8:16, 10:20].min() == 1
    assert occluded_t1.sum() == 8 * 10
    # In frame t the pixels whose destination x + 3 lands in that region are flagged, nothing else.
    assert occluded_t[0, 0, 8:16, 7:17].min() == 1
    assert occluded_t[0, 0, :, :6].sum() == 0 and occluded_t[0, 0, :, 18:].sum() == 0
    assert occluded_t[0, 0, :7].sum() == 0 and occluded_t[0, 0, 17:].sum() == 0


# ---- the whole objective -------------------------------------------------------------------------
class FixedMotion:
    """A MotionOutput-like object holding a given motion field at every level (for testing the loss)."""

    def __init__(self, flow: torch.Tensor, strides=(16, 8, 4), backward: torch.Tensor | None = None):
        self.flows = flow
        self.strides = strides

        def down(f: torch.Tensor, s: int) -> torch.Tensor:
            return torch.nn.functional.avg_pool2d(f.flatten(0, 1), s).unflatten(0, f.shape[:2]) / s

        self.coarse_flows = [down(flow, s) for s in strides]
        self.backward_flows = backward
        self.backward_coarse_flows = None if backward is None else [down(backward, s) for s in strides]


def test_true_motion_scores_better_than_wrong_motion():
    image = smooth_image(64, 64)
    truth = constant_flow(2.0, 1.0, 1, 64, 64)
    first, _ = backward_warp(image, truth)  # frame t(x) = frame t+1(x + truth): exact ground truth
    frames = torch.stack((first, image), 1)
    config = LossConfig(occlusion=True)
    right, parts = self_supervised_loss(frames, FixedMotion(truth[:, None]), config)
    wrong, _ = self_supervised_loss(frames, FixedMotion(torch.zeros(1, 1, 2, 64, 64)), config)
    assert right < 0.5 * wrong
    assert parts["photo_s1"] < 1e-2 and set(parts) >= {"photo_s16", "smooth_s4", "total"}
    both, parts = self_supervised_loss(frames, FixedMotion(truth[:, None], backward=-truth[:, None]), config)
    assert parts["occluded"] < 0.05 and both < 0.5 * wrong


def test_loss_runs_on_network_output_and_checks_level_weights():
    torch.manual_seed(0)
    net = MotionNet(tiny_config(clip_len=4))
    frames = torch.rand(1, 4, 3, 16, 16)  # the coarsest level is a single cell
    total, parts = self_supervised_loss(frames, net(frames, bidirectional=True))
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in parts.values())
    with pytest.raises(ValueError, match="level_weights"):
        self_supervised_loss(frames, net(frames), LossConfig(level_weights=(1.0,)))
