"""The one scoring core: a pair with known motion gives the expected EPE, and every caller (evaluate,
report, training validation, the ablation and small-motion benchmarks) gets the same number for it."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from scattermotion.clipsets import Clip, ClipSet
from scattermotion.evaluate import evaluate_set
from scattermotion.report.analysis import Method, analyse_input
from scattermotion.scoring import score_clips

SHIFT = np.array([3.0, -2.0], np.float32)  # (u, v) px
OFFSET = np.array([0.6, 0.8], np.float32)  # the estimator's constant error: |OFFSET| = 1 px
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def known_pair(name: str = "pan") -> Clip:
    rng = np.random.default_rng(0)
    frame1 = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    frame2 = np.roll(frame1, shift=(-2, 3), axis=(0, 1))
    truth = np.broadcast_to(SHIFT, (24, 32, 2)).copy()
    truth[:4] = np.nan  # unknown ground truth is left out, not scored as error
    return Clip(name, [frame1, frame2], [truth])


class OffByOffset:
    """A method whose motion is always the true shift plus OFFSET, so its EPE is exactly 1 px."""

    def estimate_clip(self, frames):
        return np.broadcast_to(SHIFT + OFFSET, (len(frames) - 1, *frames[0].shape[:2], 2)).copy()

    def estimate(self, frame1, frame2):
        return self.estimate_clip([frame1, frame2])[0]


def test_known_flow_pair_gives_the_expected_epe():
    clip = known_pair()
    scores = score_clips([clip], {"off": OffByOffset(), "zero": _zero()})
    assert scores["off"].summary()["epe"] == pytest.approx(1.0, abs=1e-6)
    assert scores["zero"].summary()["epe"] == pytest.approx(math.hypot(*SHIFT), abs=1e-6)
    assert scores["off"].pairs[0]["name"] == "pan" and scores["off"].pairs[0]["ms"] >= 0
    assert "psnr" not in scores["off"].pairs[0]  # ground truth: accuracy, reconstruction only when asked
    both = score_clips([clip], {"off": OffByOffset()}, reconstruction=True, keep_flows=True)["off"]
    assert {"epe", "psnr", "ssim"} <= set(both.pairs[0]) and len(both.flows) == 1


def test_frames_without_ground_truth_are_scored_by_reconstruction():
    clip = known_pair()
    clip = Clip("no-truth", clip.frames)
    (pair,) = score_clips([clip], {"off": OffByOffset()})["off"].pairs
    assert "epe" not in pair and pair["psnr"] > 0


def _zero():
    from scattermotion.estimator import get_estimator

    return get_estimator("zero")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_caller_gets_the_same_epe_for_the_same_pair():
    clip = known_pair()
    estimator = OffByOffset()
    expected = score_clips([clip], {"m": estimator})["m"].summary()["epe"]
    one_pair = ClipSet("pan", "test", [clip], has_ground_truth=True)
    _, (evaluated,) = evaluate_set(one_pair, {"m": estimator})
    report = analyse_input(one_pair, [Method("m", "m", estimator)])
    ablation = _script("ablation").score(estimator, {"pan": [clip]})
    small_motion, _ = _script("small_motion").mean_epe(estimator, [clip])
    assert evaluated["metrics"]["epe"] == pytest.approx(expected, abs=1e-12)
    assert report.results[0].summary()["epe"] == pytest.approx(expected, abs=1e-12)
    assert ablation["pan"]["epe"] == pytest.approx(expected, abs=1e-12)
    assert small_motion == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(1.0, abs=1e-6)


def test_training_validation_scores_like_evaluate(tmp_path):
    """The Validator and evaluate agree on a real ground-truth pair for the same network."""
    import torch
    from tiny_models import save_tiny_weights

    from scattermotion.clipsets import resolve_set
    from scattermotion.estimator import MotionEstimator
    from scattermotion.model import load_weights
    from scattermotion.training.config import TrainConfig
    from scattermotion.training.validation import Validator

    model = load_weights(save_tiny_weights(tmp_path / "tiny.safetensors"))
    validator = Validator(TrainConfig(val_sets=("motorcycle",), val_real_clips=0))
    metrics, examples = validator(model, torch.device("cpu"))
    _, (evaluated,) = evaluate_set(resolve_set("motorcycle"), {"ours": MotionEstimator(model)})
    assert metrics["motorcycle_epe"] == pytest.approx(evaluated["metrics"]["epe"], rel=1e-9)
    assert examples["motorcycle"][0].shape == examples["motorcycle"][1].shape


def test_footage_validation_scores_the_robustness_kind_of_pair_from_its_own_seed(tmp_path):
    """``val_sets: [footage]`` scores robustness-style pairs of the validation seed, never the benchmark's."""
    import torch
    from tiny_models import save_tiny_weights

    from scattermotion.data.robustness import RobustnessPairs
    from scattermotion.estimator import MotionEstimator
    from scattermotion.metrics import endpoint_error
    from scattermotion.model import load_weights
    from scattermotion.training.config import VALIDATION_SYNTHETIC_SEED, TrainConfig
    from scattermotion.training.validation import Validator

    model = load_weights(save_tiny_weights(tmp_path / "tiny.safetensors"))
    config = TrainConfig(val_sets=("footage",), val_real_clips=0, val_footage_pairs=2)
    metrics, _ = Validator(config)(model, torch.device("cpu"))
    pairs = RobustnessPairs(VALIDATION_SYNTHETIC_SEED, 2, size=(240, 320))
    estimator = MotionEstimator(model)
    expected = np.mean([endpoint_error(estimator.estimate(p.frame1, p.frame2), p.flow).mean() for p in pairs])
    assert set(metrics) == {"footage_epe"} and metrics["footage_epe"] == pytest.approx(expected, rel=1e-6)
    benchmark = RobustnessPairs(1313, 1, size=(240, 320))[0]  # benchmarks/robustness.py's default seed
    assert not np.array_equal(benchmark.frame1, pairs[0].frame1)
