"""Inference-only settings of a trained network: config fields no tensor depends on, so the same weights
run with more refinement passes or test-time averaging. Used by packaging and checkpoint comparison."""

from __future__ import annotations

import argparse
import dataclasses

import yaml

from scattermotion.errors import InputError
from scattermotion.model.network import MotionNet

INFERENCE_FIELDS = (
    "refine_iterations",
    "test_time_backward",
    "backward_fusion_pass",
    "backward_exchange",
    "test_time_mirror",
    "guided_smoothing",
    "smoothing_sigma",
    "polish_windows",
    "polish_mean_window",
    "polish_damping",
    "polish_noise_damping",
    "polish_max_step",
    "propagation_offsets",
    "propagation_window",
    "propagation_margin",
    "propagation_noise",
    "fill_scale",
    "fill_window",
    "fill_noise",
)


def add_settings_argument(parser: argparse.ArgumentParser, applies_to: str) -> None:
    """The repeatable ``--set KEY=VALUE`` option (parsed into ``args.settings``; read with parse_settings)."""
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"inference-only config field of {applies_to}, one of {INFERENCE_FIELDS} (repeatable)",
    )


def parse_settings(items: list[str]) -> dict[str, object]:
    """``["refine_iterations=3", "test_time_backward=true"]`` → typed values (YAML scalars)."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in INFERENCE_FIELDS:
            raise InputError(None, f"--set {item!r}: expected KEY=VALUE with KEY one of {INFERENCE_FIELDS}")
        settings[key] = yaml.safe_load(value)
    return settings


def with_settings(model: MotionNet, settings: dict[str, object]) -> MotionNet:
    """The same tensors in a network built with ``settings`` applied to its config, in eval mode."""
    try:
        config = dataclasses.replace(model.config, **settings)
    except (ValueError, TypeError) as err:
        raise InputError(None, f"--set: {err}") from None
    changed = MotionNet(config)
    changed.load_state_dict(model.state_dict())  # inference fields add no tensors: a strict load
    return changed.eval()
