"""The photometric polish (scattermotion.model.polish): Lucas–Kanade steps of the output motion."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_config

from scattermotion.model import MotionNet
from scattermotion.model.photometry import box_mean, noise_variance
from scattermotion.model.polish import photometric_polish
from scattermotion.warp import warp_features

SETTINGS = dict(mean_window=11, damping=3e-4, max_step=1.0)


def textured_pair(shift: tuple[float, float], size=(64, 80), seed: int = 0, blurs: int = 1):
    """A smooth random RGB texture (``blurs`` 5×5 box blurs of noise) and the same texture moved by ``shift``
    (dx, dy) px: frames 1×2×3×H×W in [0, 1] whose true motion is ``shift`` everywhere."""
    torch.manual_seed(seed)
    texture = torch.rand(1, 3, *size)
    for _ in range(blurs):
        texture = F.avg_pool2d(texture, 5, stride=1, padding=2, count_include_pad=False)
    texture = (texture - texture.mean()) * 4 + 0.5
    motion = torch.tensor(shift).view(1, 2, 1, 1).expand(1, 2, *size)
    moved = warp_features(texture, -motion)  # moved(x) = texture(x − shift): texture seen shift later
    return torch.stack((texture, moved), 1).clamp(0, 1), motion


def interior_error(flows: torch.Tensor, motion: torch.Tensor, margin: int = 6) -> float:
    error = (flows[0, 0] - motion[0]).norm(dim=0)
    return error[margin:-margin, margin:-margin].mean().item()


@pytest.mark.parametrize("size", [3, 5, 9])
def test_box_mean_is_the_windows_mean_over_the_pixels_inside(size: int):
    x = torch.randn(2, 3, 13, 18)
    expected = F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)
    torch.testing.assert_close(box_mean(x, size), expected, rtol=1e-5, atol=1e-5)


def near_the_truth(motion: torch.Tensor) -> torch.Tensor:
    """A start like the network's: the true motion off by a fraction of a pixel (1×1×2×H×W)."""
    return (motion + torch.tensor([-0.35, 0.25]).view(1, 2, 1, 1)).unsqueeze(1)


def test_one_step_removes_most_of_a_sub_pixel_error_and_a_second_more():
    # A whole-pixel shift, so the moved frame is the texture itself (no interpolation in the truth).
    frames, motion = textured_pair((1.0, -1.0))
    start = near_the_truth(motion)
    one, two = (photometric_polish(frames, start, windows, **SETTINGS) for windows in ((3,), (3, 3)))
    assert interior_error(start, motion) > 0.4
    assert interior_error(one, motion) < 0.1
    assert interior_error(two, motion) < interior_error(one, motion)


def test_the_steps_after_the_decoder_take_rgb_or_the_grey_clip_alike():
    # MotionNet converts to grey once and hands the grey clip to every step: the same motion as from RGB.
    from scattermotion.model.fill import fill_motion
    from scattermotion.model.photometry import grey
    from scattermotion.model.propagation import propagate_motion

    frames, motion = textured_pair((1.0, -1.0))
    start = near_the_truth(motion)
    luma = grey(frames)
    assert luma.shape == (1, 2, 1, 64, 80) and grey(luma) is luma
    for step in (
        lambda clip: photometric_polish(clip, start, (3,), **SETTINGS),
        lambda clip: propagate_motion(clip, start, (8, 4), 5, 0.2, 0.5),
        lambda clip: fill_motion(clip, start, 7, 5e-6, 3.0),
    ):
        torch.testing.assert_close(step(luma), step(frames), rtol=0, atol=0)


@pytest.mark.parametrize("change", ["offset", "gain"])
def test_mean_removal_keeps_the_step_true_under_a_brightness_change(change: str):
    frames, motion = textured_pair((1.0, -1.0))
    changed = frames.clone()
    changed[:, 1] = changed[:, 1] + 0.08 if change == "offset" else changed[:, 1] * 1.1  # exposure
    start = near_the_truth(motion)
    kept = photometric_polish(changed, start, (3,), **SETTINGS)
    without = photometric_polish(changed, start, (3,), **{**SETTINGS, "mean_window": 0})
    assert interior_error(kept, motion) < 0.1
    assert interior_error(without, motion) > 0.3


def test_no_texture_no_step_and_every_step_is_clamped():
    flat = torch.full((1, 2, 3, 32, 32), 0.5)
    start = torch.randn(1, 1, 2, 32, 32)
    torch.testing.assert_close(photometric_polish(flat, start, (3,), **SETTINGS), start)
    frames, _ = textured_pair((4.0, 0.0), size=(32, 32))
    zero = torch.zeros(1, 1, 2, 32, 32)
    one_step = photometric_polish(frames, zero, (3,), **{**SETTINGS, "max_step": 0.25})
    assert one_step.abs().max() <= 0.25 + 1e-6


@pytest.mark.parametrize("sigma", [0.0, 0.01, 0.03])
def test_noise_variance_reads_the_added_noise_through_the_texture(sigma: float):
    # smooth at the pixel scale, as photographs are
    frames, _ = textured_pair((0.0, 0.0), size=(96, 128), blurs=3)
    image = frames[0, :1, :1] * 0.5 + 0.25  # one smooth textured grey image, away from the clamp
    noisy = image + sigma * torch.randn(image.shape, generator=torch.Generator().manual_seed(1))
    variance = noise_variance(noisy)
    assert variance.shape == (1, 1, 1)
    assert abs(variance.sqrt().item() - sigma) < 0.15 * sigma + 0.002


def test_noise_damping_holds_the_step_back_on_noisy_frames_only():
    frames, motion = textured_pair((1.0, -1.0), blurs=3)
    start = near_the_truth(motion)
    noisy = frames + 0.05 * torch.randn(frames.shape, generator=torch.Generator().manual_seed(2))
    steps = {}
    for name, pair in (("clean", frames), ("noisy", noisy)):
        plain = photometric_polish(pair, start, (3,), **{**SETTINGS, "damping": 1e-5})
        damped = photometric_polish(pair, start, (3,), **{**SETTINGS, "damping": 1e-5}, noise_damping=50.0)
        steps[name] = ((damped - start).abs().mean() / (plain - start).abs().mean()).item()
    assert steps["clean"] > 0.95  # no noise to see: the same step
    assert steps["noisy"] < 0.7  # damping ∝ the noise variance shortens it


def test_motion_net_polishes_only_its_inference_motion_when_set():
    torch.manual_seed(0)
    net = MotionNet(tiny_config()).eval()
    polished_net = MotionNet(dataclasses.replace(net.config, polish_windows=(3,))).eval()
    polished_net.load_state_dict(net.state_dict())
    frames = torch.rand(1, 3, 3, 32, 48)
    with torch.no_grad():
        plain, polished = net(frames).flows, polished_net(frames).flows
        expected = photometric_polish(frames, plain, (3,), **SETTINGS)
        torch.testing.assert_close(polished, expected)
        # training and the bidirectional decode (the losses' view) see the network's own motion
        torch.testing.assert_close(polished_net(frames, bidirectional=True).flows, net(frames, True).flows)


def test_polish_settings_are_checked_and_round_trip():
    config = tiny_config()
    for bad in ({"polish_windows": (4,)}, {"polish_windows": (1,)}, {"polish_mean_window": 1}):
        with pytest.raises(ValueError, match="polish"):
            dataclasses.replace(config, **bad)
    with pytest.raises(ValueError, match="polish_damping"):
        dataclasses.replace(config, polish_damping=0.0)
    with pytest.raises(ValueError, match="polish_noise_damping"):
        dataclasses.replace(config, polish_noise_damping=-1.0)
    changed = dataclasses.replace(config, polish_windows=[5, 3], polish_mean_window=0)
    assert changed.polish_windows == (5, 3)
    assert type(config).from_dict(changed.to_dict()) == changed
