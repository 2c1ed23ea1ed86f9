"""The packaged default model loads with its card and has learned motion: on real stereo frames it never
saw in training (motorcycle, evaluation-only) it recovers far more of the true motion than zero motion does,
and reconstructs the first frame from the second better."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from scattermotion.data.flowsets import load_flow_set
from scattermotion.estimator import DEFAULT_WEIGHTS, MotionEstimator
from scattermotion.metrics import flow_metrics, reconstruction_metrics
from scattermotion.model.weights import card_path

pytestmark = pytest.mark.usefixtures("single_thread")


def test_default_model_ships_with_a_card_that_names_its_data():
    assert DEFAULT_WEIGHTS.is_file(), "scattermotion/weights/default.safetensors is missing from the package"
    card = json.loads(card_path(DEFAULT_WEIGHTS).read_text())
    sources = card["training"]["data_sources"]
    assert sources and not any(name in s.lower() for s in sources for name in ("motorcycle", "aloe", "graf"))
    assert card["training"]["steps"] > 0


def test_default_model_finds_real_motion_it_was_not_trained_on():
    sample = load_flow_set("motorcycle")[0]  # the harness's half-size pair (370×250)
    height, width = sample.frame1.shape[:2]
    size = (width // 4, height // 4)  # small: fast on 2 cores
    first = cv2.resize(sample.frame1, size, interpolation=cv2.INTER_AREA)
    second = cv2.resize(sample.frame2, size, interpolation=cv2.INTER_AREA)
    truth = cv2.resize(sample.flow, size, interpolation=cv2.INTER_NEAREST) * (size[0] / width)

    flow = MotionEstimator.from_pretrained().estimate(first, second)
    zero = np.zeros_like(flow)
    assert flow_metrics(flow, truth)["epe"] < 0.5 * flow_metrics(zero, truth)["epe"]
    assert (
        reconstruction_metrics(first, second, flow)["psnr"]
        > reconstruction_metrics(first, second, zero)["psnr"] + 3.0
    )
