"""The propagation step (scattermotion.model.propagation): a pixel takes a neighbour's better motion."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_config

from scattermotion.model import MotionNet
from scattermotion.model.propagation import propagate, propagate_motion, shifted
from scattermotion.warp import warp_features

SIZE = (48, 64)
LEFT, RIGHT = (3.0, 1.0), (-5.0, 0.0)  # px: the two halves' motions
EDGE = SIZE[1] // 2  # the column where the right half starts


def two_motion_pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Grey frames (N×1×H×W) of a texture whose left half moves by LEFT and right half by RIGHT, and that
    true motion (1×2×H×W). The first frame is the second sampled through the motion, so brightness constancy
    holds exactly at every pixel."""
    generator = torch.Generator().manual_seed(seed)
    texture = torch.rand(1, 1, *SIZE, generator=generator)
    texture = F.avg_pool2d(texture, 3, stride=1, padding=1, count_include_pad=False)
    motion = torch.zeros(1, 2, *SIZE)
    motion[:, :, :, :EDGE] = torch.tensor(LEFT).view(1, 2, 1, 1)
    motion[:, :, :, EDGE:] = torch.tensor(RIGHT).view(1, 2, 1, 1)
    first = warp_features(texture, motion)
    return first, texture, motion


def test_shifted_reads_the_neighbour_and_replicates_the_edge():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    right = shifted(x, 2, 0)
    assert right[0, 0, 0].tolist() == [2.0, 3.0, 3.0, 3.0]
    below = shifted(x, 0, 1)
    assert below[0, 0, :, 0].tolist() == [4.0, 8.0, 8.0]
    assert shifted(x, 0, -1)[0, 0, :, 0].tolist() == [0.0, 0.0, 4.0]


def test_a_motion_blurred_across_an_edge_is_pulled_back_to_each_side():
    first, second, motion = two_motion_pair()
    # The decoder's failure this step exists for: the left motion spread 8 px into the right half.
    start = motion.clone()
    start[:, :, :, EDGE : EDGE + 8] = torch.tensor(LEFT).view(1, 2, 1, 1)
    band = (slice(4, -4), slice(EDGE, EDGE + 8))  # rows away from the top and bottom edges
    before = (start - motion).norm(dim=1)[0][band].mean()
    after = (propagate(first, second, start, (16, 8, 4, 2), 3, 0.2) - motion).norm(dim=1)[0][band].mean()
    assert before > 8.0
    assert after < 0.1 * before


def test_the_true_motion_is_kept_and_a_large_noise_term_changes_nothing():
    first, second, motion = two_motion_pair(seed=1)
    torch.testing.assert_close(propagate(first, second, motion, (8, 4), 3, 0.2), motion)
    wrong = motion + torch.randn(motion.shape, generator=torch.Generator().manual_seed(2)) * 3
    assert not torch.equal(propagate(first, second, wrong, (8, 4), 3, 0.0), wrong)
    torch.testing.assert_close(propagate(first, second, wrong, (8, 4), 3, 0.0, noise=1e3), wrong)


def test_propagate_motion_runs_every_consecutive_pair_of_a_clip():
    first, second, motion = two_motion_pair(seed=3)
    # a 3-frame grey clip (first, second, second): each pair comes out as propagate() on its own two frames
    frames = torch.stack((first, second, second), 1).expand(1, 3, 3, *SIZE) * 1.0
    flows = torch.stack((motion, motion), 1)
    flows[:, :, :, :, EDGE : EDGE + 6] = 0.0
    out = propagate_motion(frames.clone(), flows, (8, 4), 3, 0.2)
    assert out.shape == flows.shape
    torch.testing.assert_close(out[:, 0], propagate(first, second, flows[:, 0], (8, 4), 3, 0.2))
    torch.testing.assert_close(out[:, 1], propagate(second, second, flows[:, 1], (8, 4), 3, 0.2))


def test_motion_net_propagates_only_its_inference_motion_when_set():
    torch.manual_seed(0)
    net = MotionNet(tiny_config()).eval()
    config = dataclasses.replace(net.config, propagation_offsets=(8, 4), propagation_window=3)
    changed = MotionNet(config).eval()
    changed.load_state_dict(net.state_dict())
    frames = torch.rand(1, 3, 3, 32, 48)
    with torch.no_grad():
        expected = propagate_motion(frames, net(frames).flows, (8, 4), 3, 0.2)
        torch.testing.assert_close(changed(frames).flows, expected)
        torch.testing.assert_close(changed(frames, bidirectional=True).flows, net(frames, True).flows)


def test_propagation_settings_are_checked_and_round_trip():
    config = tiny_config()
    for bad in (
        {"propagation_offsets": (3,)},
        {"propagation_offsets": (0,)},
        {"propagation_window": 4},
        {"propagation_margin": -0.1},
        {"propagation_noise": -1.0},
    ):
        with pytest.raises(ValueError, match="propagation"):
            dataclasses.replace(config, **bad)
    changed = dataclasses.replace(config, propagation_offsets=[16, 8, 4], propagation_noise=0.5)
    assert changed.propagation_offsets == (16, 8, 4)
    assert type(config).from_dict(changed.to_dict()) == changed
