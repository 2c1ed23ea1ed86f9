"""The fill step (scattermotion.model.fill): textureless regions take the motion of the textured ones."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_config

from scattermotion.model import MotionNet
from scattermotion.model.fill import fill, fill_motion, push_pull, texture_weights
from scattermotion.model.photometry import cell_mean
from scattermotion.model.polish import photometric_polish
from scattermotion.model.propagation import propagate_motion
from scattermotion.model.settings import INFERENCE_FIELDS

SIZE = (48, 64)
MOTION = (3.0, -2.0)  # px, the whole scene's


def half_textured(seed: int = 0) -> torch.Tensor:
    """A grey frame (1×1×H×W) textured on its left half, flat (0.5) on its right half."""
    texture = torch.rand(1, 1, *SIZE, generator=torch.Generator().manual_seed(seed))
    frame = F.avg_pool2d(texture, 3, stride=1, padding=1, count_include_pad=False)
    frame[..., SIZE[1] // 2 :] = 0.5
    return frame


def test_texture_weights_are_high_on_texture_and_zero_on_flat_regions_and_edges():
    frame = half_textured()
    weights = texture_weights(frame, 3, 1e-5)
    assert weights.shape == (1, 1, SIZE[0] // 2, SIZE[1] // 2)
    assert weights[..., :8].min() > 0.9
    assert weights[..., -8:].max() == 0.0
    edge = torch.zeros(1, 1, *SIZE)
    edge[..., SIZE[1] // 2 :] = 1.0  # a straight edge pins one motion component only: no weight
    assert texture_weights(edge, 3, 1e-5).max() < 1e-3


def test_push_pull_keeps_fully_weighted_values_and_spreads_the_only_weighted_one():
    values = torch.randn(1, 2, 12, 20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(push_pull(values, torch.ones(1, 1, 12, 20)), values)
    weights = torch.zeros(1, 1, 12, 20)
    weights[..., 5, 7] = 1.0
    filled = push_pull(values, weights)
    torch.testing.assert_close(filled, values[..., 5:6, 7:8].expand_as(values))


def test_a_flat_region_takes_the_motion_of_the_textured_one_which_keeps_its_own():
    frame = half_textured(seed=1)
    # The decoder's motion is right as far as the texture reaches (the weights' windows reach 4 px past it,
    # weighting what is there), zero beyond: what its near-uniform cues give in a flat region.
    reach = SIZE[1] // 2 + 6
    flow = torch.zeros(1, 2, *SIZE)
    flow[:, :, :, :reach] = torch.tensor(MOTION).view(1, 2, 1, 1)
    filled = fill(flow, frame, 3, 1e-5)
    truth = torch.tensor(MOTION).view(1, 2, 1, 1)
    flat = (filled - truth).norm(dim=1)[..., reach + 2 :]  # the change is resampled from 2×2 px cells
    assert flat.max() < 0.1  # was |MOTION| = 3.6 px off
    textured = (filled - flow).norm(dim=1)[..., 4 : SIZE[1] // 2 - 6]
    assert textured.max() < 0.05


def test_fill_motion_fills_every_pair_from_its_first_frame_and_the_noise_term_lowers_the_weights():
    frame = half_textured(seed=2)
    frames = torch.stack((frame, frame.flip(-1), frame), 1).expand(1, 3, 3, *SIZE) * 1.0
    flows = torch.randn(1, 2, 2, *SIZE, generator=torch.Generator().manual_seed(3))
    out = fill_motion(frames, flows, 3, 1e-5, 0.0)
    torch.testing.assert_close(out[:, 0], fill(flows[:, 0], frame, 3, 1e-5))
    torch.testing.assert_close(out[:, 1], fill(flows[:, 1], frame.flip(-1), 3, 1e-5))
    noisy = frames + 0.05 * torch.randn(frames.shape, generator=torch.Generator().manual_seed(4))
    plain, aware = fill_motion(noisy, flows, 3, 1e-5, 0.0), fill_motion(noisy, flows, 3, 1e-5, 3.0)
    # noise alone is texture to the structure tensor; with the noise term it weighs less, so more changes
    assert (aware - flows).abs().mean() > 2 * (plain - flows).abs().mean()


def test_motion_net_fills_only_its_inference_motion_when_set():
    torch.manual_seed(0)
    net = MotionNet(tiny_config()).eval()
    changed = MotionNet(dataclasses.replace(net.config, fill_scale=1e-4, fill_window=3)).eval()
    changed.load_state_dict(net.state_dict())
    frames = torch.rand(1, 3, 3, 32, 48)
    frames[..., 24:] = 0.5  # a flat part for the fill to fill
    with torch.no_grad():
        expected = fill_motion(frames, net(frames).flows, 3, 1e-4, 3.0)
        assert not torch.allclose(expected, net(frames).flows, atol=1e-3)
        torch.testing.assert_close(changed(frames).flows, expected)
        torch.testing.assert_close(changed(frames, bidirectional=True).flows, net(frames, True).flows)


def test_a_frame_without_texture_keeps_its_mean_motion():
    """Nothing to weigh anywhere: every cell takes the image's mean motion (as the pyramid averages it, edge
    cells of odd-sized levels counting a little more), not zero; the pixels keep their detail within cells."""
    flow = torch.randn(1, 2, 16, 24, generator=torch.Generator().manual_seed(7))
    flow = flow + torch.tensor([3.0, -2.0]).view(1, 2, 1, 1)
    filled = fill(flow, torch.full((1, 1, 16, 24), 0.3), 3, 0.0)  # no texture anywhere, and a zero floor
    assert torch.isfinite(filled).all()
    cells_taken = filled - (flow - F.interpolate(cell_mean(flow), scale_factor=2, mode="bilinear"))
    mean = flow.mean((-2, -1), keepdim=True)
    assert (cells_taken - mean).abs().max() < 0.05
    assert (cells_taken - cells_taken[..., :1, :1]).abs().max() < 1e-4  # one motion for every cell


def test_the_noise_variance_computed_once_gives_the_same_motion_as_each_step_computing_it():
    torch.manual_seed(0)
    config = dataclasses.replace(
        tiny_config(),
        polish_windows=(3,),
        polish_noise_damping=3.0,
        propagation_offsets=(8, 4),
        propagation_window=3,
        propagation_noise=0.5,
        fill_scale=1e-5,
        fill_window=3,
    )
    assert config.uses_noise_variance
    assert not dataclasses.replace(
        config, polish_noise_damping=0.0, propagation_noise=0.0, fill_noise=0.0
    ).uses_noise_variance
    net = MotionNet(config).eval()
    frames = torch.rand(1, 3, 3, 32, 48)
    frames[..., 24:] = 0.5
    plain = MotionNet(dataclasses.replace(config, polish_windows=(), propagation_offsets=(), fill_scale=0.0))
    plain.load_state_dict(net.state_dict())
    with torch.no_grad():
        motion = plain.eval()(frames).flows
        motion = photometric_polish(frames, motion, (3,), 11, 3e-4, 1.0, 3.0)
        motion = propagate_motion(frames, motion, (8, 4), 3, 0.2, 0.5)
        motion = fill_motion(frames, motion, 3, 1e-5, 3.0)
        torch.testing.assert_close(net(frames).flows, motion)


def test_fill_settings_are_checked_and_round_trip():
    config = tiny_config()
    for bad in ({"fill_scale": -1e-5}, {"fill_noise": -1.0}, {"fill_window": 4}, {"fill_window": 0}):
        with pytest.raises(ValueError, match="fill"):
            dataclasses.replace(config, **bad)
    changed = dataclasses.replace(config, fill_scale=1e-5, fill_window=5)
    assert type(config).from_dict(changed.to_dict()) == changed
    assert {"fill_scale", "fill_window", "fill_noise"} <= set(INFERENCE_FIELDS)
