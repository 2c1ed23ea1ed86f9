"""The methods registry: every CLI method choice comes from it, and an unknown name is one InputError that
lists the valid ones, whichever verb or library call meets it."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import typer

from scattermotion import baselines, cli
from scattermotion.action.sources import SOURCE_KINDS, parse_source
from scattermotion.benchmark import parse_methods
from scattermotion.cli import app
from scattermotion.errors import InputError
from scattermotion.estimator import ClassicalEstimator, MotionEstimator, get_estimator
from scattermotion.methods import (
    CLASSICAL,
    MOTION_SOURCES,
    REGISTRY,
    SCORED,
    SPEED,
    build_estimator,
    build_estimators,
    check_methods,
    method_label,
)

METHOD_OPTIONS = {"flow": SCORED, "extract": SCORED, "evaluate": SCORED, "report": SCORED, "benchmark": SPEED}


def _option(command, name: str):
    return next(p for p in command.params if p.name == name)


@pytest.mark.parametrize("verb", sorted(METHOD_OPTIONS))
def test_every_cli_method_choice_comes_from_the_registry(verb):
    command = typer.main.get_command(app).commands[verb]
    option = _option(command, "methods" if verb in ("benchmark", "report") else "method")
    listed = option.help.split(" (")[0].split(";")[0].rstrip(".").split(" | ")
    assert listed == list(METHOD_OPTIONS[verb])


def test_action_sources_and_demo_list_the_registry():
    group = typer.main.get_command(app)
    source_help = _option(group.commands["action"].commands["train"], "source").help
    assert source_help.startswith(" | ".join(MOTION_SOURCES) + " | rgbdiff")
    assert SOURCE_KINDS[: len(MOTION_SOURCES)] == MOTION_SOURCES and "zero" not in SOURCE_KINDS
    assert _option(group.commands["demo"], "method").help.startswith(" | ".join(("auto", *SCORED)))
    assert baselines.METHODS == tuple(n for n, m in REGISTRY.items() if m.kind == CLASSICAL)


@pytest.mark.parametrize(
    "call",
    [
        lambda: get_estimator("raft"),
        lambda: build_estimators(["dis", "raft"]),
        lambda: check_methods(["raft"]),
        lambda: parse_methods("dis,raft"),
        lambda: baselines.ClassicalFlow("raft"),
    ],
)
def test_an_unknown_name_is_one_error_listing_the_valid_ones(call):
    with pytest.raises(InputError) as info:
        call()
    message = str(info.value)
    assert message.startswith("unknown method 'raft'; choose from ") and "\n" not in message
    assert "tvl1" in message and "farneback" in message


def test_the_cli_says_it_in_one_line(monkeypatch, capsys, tmp_path):
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    for path in (first, second):
        cv2.imwrite(str(path), np.zeros((16, 16, 3), np.uint8))
    flow = ["flow", str(first), str(second), "-o", str(tmp_path / "x.flo")]
    monkeypatch.setattr(sys, "argv", ["scattermotion", *flow, "--method", "raft"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.count("\n") == 1
    assert err.startswith("error: unknown method 'raft'; choose from ours, ours-refined, ours-accurate, tvl1")


def test_ours_accurate_is_the_packaged_model_fusing_the_directions_late(tmp_path):
    from scattermotion.model import MotionConfig, build_motion_net, save_weights

    config = MotionConfig.small(refine_iterations=[2, 1], test_time_backward=True, backward_fusion_pass=-1)
    weights = save_weights(build_motion_net(config), tmp_path / "w.safetensors")
    plain = build_estimator("ours", weights)
    accurate = build_estimator("ours-accurate", weights)
    assert plain.model.config.backward_fusion_pass == -1
    assert accurate.model.config.backward_fusion_pass == 1
    frames = [np.random.default_rng(i).integers(0, 256, (32, 48, 3), np.uint8) for i in range(3)]
    plain_motion, accurate_motion = plain.estimate_clip(frames), accurate.estimate_clip(frames)
    assert plain_motion.shape == accurate_motion.shape and not np.allclose(plain_motion, accurate_motion)
    assert method_label("ours-accurate", weights) == "ours (w.safetensors), both directions throughout"


def test_speed_only_presets_are_built_only_where_asked():
    with pytest.raises(InputError, match="unknown method 'ours-small'"):
        get_estimator("ours-small")  # random weights: never scored as if it were a model
    assert isinstance(build_estimator("ours-small", allowed=SPEED), MotionEstimator)
    assert isinstance(build_estimator("dis"), ClassicalEstimator)
    with pytest.raises(InputError, match="weights apply to --method ours only"):
        build_estimator("dis", weights="w.safetensors")
    with pytest.raises(InputError, match="unknown source 'zero'"):
        parse_source("zero")  # no motion is a floor to score against, not a stream to train on


def test_labels_come_from_the_registry():
    assert method_label("dis") == "DIS-medium"
    assert method_label("ours") == "ours (default model)"
    assert method_label("ours", "runs/a/final.safetensors") == "ours (final.safetensors)"
