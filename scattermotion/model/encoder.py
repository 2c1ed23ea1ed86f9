"""Per-frame feature pyramid (strides 2, 4, 8, 16) with (2+1)D temporal mixing at the coarse levels.

Every frame of a clip goes through the same 2D encoder once (the clip is folded into the batch, B·T), so
each pair that needs a frame reuses its features. At the levels listed in ``temporal_strides`` a residual
temporal convolution over the T axis lets a frame's *context* features see its neighbours; the *matching*
features stay per-frame, because correlating features that already mix frame t with t+1 would blur the
cue it is meant to measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from scattermotion.model.config import PYRAMID_STRIDES, MotionConfig
from scattermotion.precision import full_precision


def conv_act(in_ch: int, out_ch: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)
    # He init for the leaky ReLU: PyTorch's default shrinks activations ~2x per layer, leaving the stride-16
    # features ~100x smaller than the input.
    nn.init.kaiming_normal_(conv.weight, a=0.1, nonlinearity="leaky_relu")
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.LeakyReLU(0.1, inplace=True))


class TemporalMixing(nn.Module):
    """Residual convolution over the time axis: ``x + conv_t(x)`` on ``B×T×C×h×w`` (works for any T >= 1)."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0))
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clip = x.permute(0, 2, 1, 3, 4)  # B×C×T×h×w
        # fp32 even under bf16 autocast: oneDNN's bf16 Conv3d weight gradient came out NaN for clips shorter
        # than the kernel (T=2, kernel 3) on an AVX512-BF16 CPU, and NaN weights then crashed grid_sample's
        # backward (a segfault in `scattermotion train` with clip_len 2). The layer is a few small matmuls.
        with full_precision(x.device.type):
            mixed = self.act(self.conv(clip.float()))
        return x + mixed.to(x.dtype).permute(0, 2, 1, 3, 4)


@dataclass
class PyramidLevel:
    """Features of every frame at one stride: ``match`` for correlation, ``context`` for decoding."""

    match: torch.Tensor  # B×T×C×h×w
    context: torch.Tensor  # B×T×C×h×w (== match where the level has no temporal mixing)


class ClipEncoder(nn.Module):
    """``B×T×3×H×W`` (normalised) → ``{stride: PyramidLevel}`` for strides 2, 4, 8, 16."""

    def __init__(self, config: MotionConfig):
        super().__init__()
        self.levels = nn.ModuleList()
        in_ch = 3
        for out_ch in config.channels:
            self.levels.append(nn.Sequential(conv_act(in_ch, out_ch, stride=2), conv_act(out_ch, out_ch)))
            in_ch = out_ch
        self.temporal = nn.ModuleDict()
        if config.temporal_mixing:
            for stride in config.temporal_strides:
                self.temporal[str(stride)] = TemporalMixing(
                    config.channels_at(stride), config.temporal_kernel
                )

    def forward(self, clip: torch.Tensor) -> dict[int, PyramidLevel]:
        batch, length = clip.shape[:2]
        x = clip.flatten(0, 1)  # every frame once, shared weights
        pyramid = {}
        for stride, level in zip(PYRAMID_STRIDES, self.levels, strict=True):
            x = level(x)
            match = x.unflatten(0, (batch, length))
            mixer = self.temporal[str(stride)] if str(stride) in self.temporal else None
            pyramid[stride] = PyramidLevel(match, match if mixer is None else mixer(match))
        return pyramid
