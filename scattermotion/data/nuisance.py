"""Nuisances of real footage, applied to rendered synthetic frames (their ground-truth motion is unchanged).

Real video is not the clean, constant-brightness world of a renderer: sensors add noise, auto-exposure
changes the gain from one frame to the next, moving cameras blur, codecs leave blocks and ringing, and some
footage is grey. A model trained only on clean clips learns to read those as motion (blotchy maps under a
plain camera pan). :func:`apply_nuisances` draws each of them per clip from a seeded generator, so a clip
stays a pure function of its seed; the motion between frame centres is untouched, so the ground truth holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from scattermotion.augment import LUMA


@dataclass(frozen=True)
class NuisanceConfig:
    """Probability (per clip) and strength of each nuisance. Grey levels are out of 255."""

    noise: float = 0.7  # Gaussian sensor noise, independent per frame
    noise_sigma: tuple[float, float] = (1.0, 7.0)  # its standard deviation, drawn per clip
    gain: float = 0.6  # exposure change: every frame gets its own gain and offset
    gain_std: float = 0.05  # log-gain spread between frames (5 %: a typical auto-exposure step)
    offset_std: float = 4.0  # brightness offset spread between frames, grey levels
    blur: float = 0.25  # motion blur along the dominant motion (camera pan while the shutter is open)
    blur_exposure: tuple[float, float] = (0.2, 0.6)  # fraction of the frame interval the shutter is open
    jpeg: float = 0.35  # a JPEG round trip per frame (block and ringing artefacts)
    jpeg_quality: tuple[int, int] = (25, 90)
    grey: float = 0.1  # grey footage (three equal channels)

    @classmethod
    def none(cls) -> NuisanceConfig:
        return cls(noise=0.0, gain=0.0, blur=0.0, jpeg=0.0, grey=0.0)


def motion_blur(frame: np.ndarray, displacement: np.ndarray, exposure: float) -> np.ndarray:
    """Blur ``frame`` (H×W×3 float) along ``displacement`` (dx, dy px per frame) over ``exposure`` of it.

    A centred line kernel: the blurred pixel stays centred on the sharp one, so motion between frame
    centres, the ground truth, is unchanged."""
    length = float(np.hypot(*displacement)) * exposure
    if length < 1.0:
        return frame
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    centre = size // 2
    direction = displacement / max(np.hypot(*displacement), 1e-9)
    for s in np.linspace(-length / 2, length / 2, 4 * size):
        x, y = centre + s * direction
        kernel[int(round(y)), int(round(x))] += 1.0
    kernel /= kernel.sum()
    return cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def apply_nuisances(
    frames: np.ndarray, flows: np.ndarray, rng: np.random.Generator, cfg: NuisanceConfig
) -> np.ndarray:
    """``T×H×W×3 uint8`` frames with this clip's nuisances, ``T×H×W×3 uint8``. ``flows`` ((T-1)×H×W×2, the
    ground truth) only steers the blur direction. Every draw is made whether or not it is used, so one
    setting does not shift the others."""
    count = frames.shape[0]
    use = rng.random(5) < (cfg.noise, cfg.gain, cfg.blur, cfg.jpeg, cfg.grey)
    sigma = rng.uniform(*cfg.noise_sigma)
    gains = np.exp(rng.normal(0.0, cfg.gain_std, count))
    offsets = rng.normal(0.0, cfg.offset_std, count)
    exposure = rng.uniform(*cfg.blur_exposure)
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    noise_seed = int(rng.integers(2**31))
    if not use.any():
        return frames
    out = frames.astype(np.float32)
    if use[4]:
        out = np.repeat((out @ LUMA)[..., None], 3, axis=-1)
    if use[2]:
        # The median motion of each frame's pairs: the camera's, for most clips.
        for t in range(count):
            near = flows[min(t, len(flows) - 1)].reshape(-1, 2)
            out[t] = motion_blur(out[t], np.median(near, axis=0), exposure)
    if use[1]:
        out = out * gains[:, None, None, None].astype(np.float32) + offsets[:, None, None, None]
    if use[0]:
        noise = np.random.default_rng(noise_seed).normal(0.0, sigma, out.shape).astype(np.float32)
        out = out + noise
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if use[3]:
        for t in range(count):
            ok, data = cv2.imencode(".jpg", out[t], [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:  # channel order does not matter for a round trip
                out[t] = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return out
