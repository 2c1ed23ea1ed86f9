"""The tiny motion network the tests use (fast on 2 CPU cores; random weights unless a test trains it)."""

from __future__ import annotations

from pathlib import Path

import torch

from scattermotion.model import MotionConfig, build_motion_net, save_weights


def tiny_config(clip_len: int = 3) -> MotionConfig:
    return MotionConfig.small(
        channels=(8, 12, 16, 24), cue_window=5, refine_window=3, cue_hidden=16, refine_hidden=16,
        cgu_hidden=16, clip_len=clip_len,
    )  # fmt: skip


def save_tiny_weights(path: Path, clip_len: int = 3, seed: int = 0) -> Path:
    """A randomly initialised tiny model (deterministic per ``seed``) saved as safetensors at ``path``."""
    torch.manual_seed(seed)
    save_weights(build_motion_net(tiny_config(clip_len)), path)
    return path
