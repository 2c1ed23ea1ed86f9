"""The self-supervised objective really teaches the network motion: a tiny MotionNet trained for a few hundred
Adam steps on one pair, with photometric + smoothness losses only (never the ground truth), recovers known
motion to well under half a pixel. Frame t is made by backward-warping a real texture (frame t+1) with the
true field, so ``frame_t(x) = frame_t+1(x + flow(x))`` holds exactly.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from tiny_models import tiny_config

from scattermotion.data.fetched import ensure_data
from scattermotion.losses import LossConfig, self_supervised_loss
from scattermotion.model import MotionNet
from scattermotion.warp import backward_warp

torch.set_num_threads(2)

TINY = tiny_config(clip_len=4)  # the one tiny test model (tests/tiny_models.py)


def baboon_texture(size: int) -> torch.Tensor:
    """A real texture: OpenCV's baboon.jpg, centre crop downscaled to size×size, 1×3×H×W in [0, 1]."""
    image = cv2.imread(str(ensure_data() / "opencv" / "baboon.jpg"), cv2.IMREAD_COLOR)
    assert image is not None, "baboon.jpg missing from the fetched data"
    crop = cv2.resize(image[100:356, 100:356, ::-1], (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float()[None] / 255.0


def make_pair(texture: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Clip ``1×2×3×H×W`` whose exact motion from frame 0 to frame 1 is ``flow``."""
    first, _ = backward_warp(texture, flow)
    return torch.stack((first, texture), dim=1)


def train_and_measure(
    frames: torch.Tensor, truth: torch.Tensor, steps: int, margin: int = 8
) -> tuple[float, float]:
    """Train TINY self-supervised on one clip; return (EPE before, EPE after) over the interior pixels whose
    true destination is inside the image."""
    torch.manual_seed(0)
    net = MotionNet(TINY)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=3e-4)
    loss_config = LossConfig(occlusion=False)

    _, visible = backward_warp(torch.ones_like(frames[:, 0, :1]), truth)
    region = visible[0, 0].bool()
    region[:margin] = region[-margin:] = False
    region[:, :margin] = region[:, -margin:] = False

    def epe() -> float:
        with torch.no_grad():
            error = (net(frames).flows[0, 0] - truth[0]).norm(dim=0)
        return float(error[region].mean())

    before = epe()
    for _ in range(steps):
        loss, _ = self_supervised_loss(frames, net(frames), loss_config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return before, epe()


def test_learns_subpixel_global_translation():
    texture = baboon_texture(64)
    truth = torch.tensor([2.5, -1.5]).view(1, 2, 1, 1).expand(1, 2, 64, 64).clone()
    before, after = train_and_measure(make_pair(texture, truth), truth, steps=150)
    assert before > 1.0  # the untrained network is far from the truth
    assert after < 0.5, f"EPE after self-supervised training: {after:.3f} px"


def test_learns_smooth_sinusoidal_field():
    texture = baboon_texture(64)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    truth = torch.stack((2.0 * torch.sin(2 * math.pi * ys / 64), 1.5 * torch.cos(2 * math.pi * xs / 64)))[
        None
    ]
    before, after = train_and_measure(make_pair(texture, truth), truth, steps=200)
    assert before > 0.8
    assert after < 0.5, f"EPE after self-supervised training: {after:.3f} px"


@pytest.mark.parametrize("motion", [(27.0, -18.5)])
def test_reaches_large_motion_through_the_coarse_cues(motion):
    texture = baboon_texture(128)
    truth = torch.tensor(motion).view(1, 2, 1, 1).expand(1, 2, 128, 128).clone()
    # 300 steps: at 220 the outcome hung on the thread count's summation order (1 thread 0.66 px, 2: 0.32).
    before, after = train_and_measure(make_pair(texture, truth), truth, steps=300)
    assert before > 10  # far from the truth before training (the matching prior alone is not enough)
    assert after < 0.5, f"EPE after self-supervised training: {after:.3f} px"
