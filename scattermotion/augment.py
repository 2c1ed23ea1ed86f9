"""Clip augmentation for self-supervised training that never breaks the photometric loss.

The loss asks that frame t+1, warped by the predicted motion, reproduces frame t. An augmentation is safe
when, applied to a clip whose frames obey ``I_t(x) = I_{t+1}(x + f(x))``, it yields a clip that obeys the
same kind of relation for *some* motion field (we never train on ground truth, so we need not know which):

- **Random crop** (same window for every frame): every frame loses the same border, so corresponding pixels
  keep corresponding; the motion is the old one, read in shifted coordinates.
- **Random scale** (the crop window is resized to the training size, same factor for every frame): motion
  scales with the images; brightness constancy is untouched. Widens the range of motion magnitudes seen.
- **Horizontal / vertical flip of the whole clip**: a mirrored video is a valid video; its motion is the
  mirrored motion (``u -> -u`` or ``v -> -v``), which only matters for ground truth (handled below).
- **Temporal reversal**: a clip played backwards is a valid video; forward and backward motion swap, and
  the forward-backward occlusion test is symmetric. Ground truth (forward only) is dropped.
- **Photometric jitter identical for all frames** (brightness, contrast, saturation, gamma): one per-pixel
  colour map ``g`` applied to every frame keeps ``g(I_t(x)) = g(I_{t+1}(x + f(x)))``. Contrast pivots on
  the mean of the *whole clip* (a per-frame mean would give each frame a different map).
- **Small noise**: independent per frame (sensor-like), zero-mean and small (a few grey levels); it adds
  the same expected penalty to every candidate motion, so the true motion stays the loss's minimiser.

Frames go in as ``T×H×W×3 uint8 RGB`` and come out as ``T×h×w×3 float32`` in [0, 1]. Optional ground-truth
motion (synthetic clips, ``(T-1)×H×W×2``) is transformed exactly along with them, or dropped (``None``)
where it can no longer be known (temporal reversal: the reversed pairs need the backward motion).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import cv2
import numpy as np

# Rec. 601 luma weights: the "grey" that saturation jitter pivots on.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class AugmentConfig:
    """Probabilities and strengths of each augmentation (set one to 0 to turn it off)."""

    scale_range: tuple[float, float] = (1.0, 1.0)  # crop window = crop size / scale, drawn log-uniformly
    hflip: float = 0.5  # probability of mirroring the clip left-right
    vflip: float = 0.1  # probability of mirroring it top-bottom
    reverse: float = 0.5  # probability of playing it backwards
    brightness: float = 0.2  # multiply by a factor in [1 - b, 1 + b]
    contrast: float = 0.2  # stretch around the clip mean by a factor in [1 - c, 1 + c]
    saturation: float = 0.2  # blend with the grey image by a factor in [1 - s, 1 + s]
    gamma: float = 0.1  # raise to a power in [1 - g, 1 + g]
    noise_std: float = 0.01  # per-clip noise level drawn in [0, noise_std] (images in [0, 1])

    def __post_init__(self) -> None:
        self.scale_range = (float(self.scale_range[0]), float(self.scale_range[1]))
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {self.scale_range}")
        for name in ("hflip", "vflip", "reverse"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation", "gamma"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all (crop only): for validation-like sampling and tests."""
        return cls(hflip=0, vflip=0, reverse=0, brightness=0, contrast=0, saturation=0, gamma=0, noise_std=0)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scale_range"] = list(self.scale_range)
        return out


class CropWindow(NamedTuple):
    """A window ``[top, top + height) × [left, left + width)`` of the source frames, resized to the crop."""

    top: int
    left: int
    height: int
    width: int


class AugmentedClip(NamedTuple):
    frames: np.ndarray  # T×h×w×3 float32 in [0, 1]
    flows: np.ndarray | None  # (T-1)×h×w×2 float32 ground truth, or None (none given, or lost)


# ---- geometry ----------------------------------------------------------------------------------------------


def random_crop_window(
    rng: np.random.Generator,
    frame_size: tuple[int, int],
    crop_size: tuple[int, int],
    scale_range: tuple[float, float] = (1.0, 1.0),
) -> CropWindow:
    """A random window of ``crop_size / scale`` pixels (``scale`` log-uniform in ``scale_range``) inside a
    ``frame_size = (H, W)`` frame. Frames smaller than the window get a larger scale (upsampled), keeping
    the aspect ratio, so any frame size yields a full crop."""
    height, width = frame_size
    crop_h, crop_w = crop_size
    low, high = scale_range
    scale = math.exp(rng.uniform(math.log(low), math.log(high))) if high > low else low
    scale = max(scale, crop_h / height, crop_w / width)  # the window must fit in the frame
    win_h = min(height, max(1, round(crop_h / scale)))
    win_w = min(width, max(1, round(crop_w / scale)))
    top = int(rng.integers(0, height - win_h + 1))
    left = int(rng.integers(0, width - win_w + 1))
    return CropWindow(top, left, win_h, win_w)


def crop_clip(
    frames: np.ndarray, window: CropWindow, crop_size: tuple[int, int], flows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut ``window`` out of every frame (and flow) and resize it to ``crop_size = (h, w)``.

    Flow values are scaled by the resize factor of each axis, so ground truth stays exact up to resampling.
    """
    top, left, win_h, win_w = window
    crop_h, crop_w = crop_size
    frames = frames[:, top : top + win_h, left : left + win_w]
    if flows is not None:
        flows = flows[:, top : top + win_h, left : left + win_w]
    if (win_h, win_w) == (crop_h, crop_w):
        return np.ascontiguousarray(frames), None if flows is None else np.ascontiguousarray(flows)
    shrinking = win_h >= crop_h and win_w >= crop_w
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    frames = np.stack([cv2.resize(f, (crop_w, crop_h), interpolation=interpolation) for f in frames])
    if flows is not None:
        factors = np.array([crop_w / win_w, crop_h / win_h], dtype=np.float32)
        flows = np.stack(
            [cv2.resize(f, (crop_w, crop_h), interpolation=cv2.INTER_LINEAR) * factors for f in flows]
        )
    return frames, flows


# ---- photometric -------------------------------------------------------------------------------------------


def photometric_jitter(
    frames: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    gamma: float = 0.1,
) -> np.ndarray:
    """One random colour map applied identically to every frame of ``frames`` (T×H×W×3 float in [0, 1])."""
    # Draw every factor whether or not it is used, so one setting does not shift the others' random draws.
    b = rng.uniform(1 - brightness, 1 + brightness)
    c = rng.uniform(1 - contrast, 1 + contrast)
    s = rng.uniform(1 - saturation, 1 + saturation)
    g = rng.uniform(1 - gamma, 1 + gamma)
    out = frames * np.float32(b)
    if contrast:
        pivot = np.float32((out @ LUMA).mean())  # one pivot for the whole clip: same map for all frames
        out = (out - pivot) * np.float32(c) + pivot
    if saturation:
        grey = (out @ LUMA)[..., None]
        out = grey + (out - grey) * np.float32(s)
    out = np.clip(out, 0.0, 1.0)
    if gamma:
        out = out ** np.float32(g)
    return out.astype(np.float32, copy=False)


# ---- the whole pipeline ------------------------------------------------------------------------------------


def augment_clip(
    frames: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    crop_size: tuple[int, int] | None = None,
    flows: np.ndarray | None = None,
) -> AugmentedClip:
    """Crop (when ``crop_size`` is given), flip, reverse and colour-jitter a ``T×H×W×3 uint8`` clip.

    Every random choice comes from ``rng`` in a fixed order, so a seeded generator gives the same clip.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected T×H×W×3 frames, got shape {frames.shape}")
    if flows is not None and flows.shape != (frames.shape[0] - 1, *frames.shape[1:3], 2):
        raise ValueError(f"flows of shape {flows.shape} do not match frames of shape {frames.shape}")
    if crop_size is not None:
        window = random_crop_window(rng, frames.shape[1:3], crop_size, cfg.scale_range)
        frames, flows = crop_clip(frames, window, crop_size, flows)

    hflip, vflip, reverse = rng.random(3) < (cfg.hflip, cfg.vflip, cfg.reverse)
    if hflip:
        frames = frames[:, :, ::-1]
        if flows is not None:
            flows = flows[:, :, ::-1] * np.array([-1, 1], dtype=np.float32)
    if vflip:
        frames = frames[:, ::-1]
        if flows is not None:
            flows = flows[:, ::-1] * np.array([1, -1], dtype=np.float32)
    if reverse:
        frames = frames[::-1]
        flows = None  # the reversed pairs' motion is the backward motion, which we do not have

    out = frames.astype(np.float32) / np.float32(255.0)
    out = photometric_jitter(out, rng, cfg.brightness, cfg.contrast, cfg.saturation, cfg.gamma)
    noise_level = rng.uniform(0.0, cfg.noise_std) if cfg.noise_std else 0.0
    if noise_level:
        out = np.clip(out + rng.normal(0.0, noise_level, out.shape).astype(np.float32), 0.0, 1.0)
    return AugmentedClip(
        np.ascontiguousarray(out), None if flows is None else np.ascontiguousarray(flows, dtype=np.float32)
    )
