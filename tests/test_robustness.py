"""The real-footage robustness pairs and benchmark: exact ground truth, the nuisances really there, seeded
draws, the direction read-out (ceiling on the exact flow), the report, and one-line errors for bad options."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_benchmark import load_updater

from scattermotion.data.nuisance import NuisanceConfig
from scattermotion.data.robustness import DIRECTIONS, OBJECT_SPEED_PX, RobustnessPairs
from scattermotion.errors import InputError
from scattermotion.estimator import get_estimator
from scattermotion.io.atomic import json_safe
from scattermotion.metrics import backward_warp_image, motion_boundaries
from scattermotion.robustness import EXACT, LinearReadout, object_features, run_robustness, to_markdown

ROOT = Path(__file__).resolve().parents[1]
SIZE = (96, 128)
OBJECTS = (14.0, 24.0)  # smaller than the benchmark's 20-60 px, to fit the tiny frames

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_pairs(seed: int = 5, count: int = 4, nuisances: NuisanceConfig | None = None) -> RobustnessPairs:
    extra = {} if nuisances is None else {"nuisances": nuisances}
    return RobustnessPairs(seed, count, size=SIZE, object_across=OBJECTS, **extra)


def residual(pair, flow: np.ndarray, keep: np.ndarray) -> float:
    warped, _ = backward_warp_image(pair.frame2, flow)
    return float(np.abs(warped - pair.frame1).mean(axis=2)[keep].mean())


def comparable(pair) -> np.ndarray:
    """Not occluded, away from the border and from motion boundaries (anti-aliased object edges)."""
    keep = ~pair.occluded & ~motion_boundaries(pair.flow, threshold=0.5, radius=2)
    keep[:2], keep[-2:], keep[:, :2], keep[:, -2:] = False, False, False, False
    return keep


def test_ground_truth_is_exact_and_noisy_frames_match_within_the_noise():
    clean, noisy = tiny_pairs(nuisances=NuisanceConfig.none()), tiny_pairs()
    for i in range(len(clean)):
        pair = clean[i]
        keep = comparable(pair)
        assert keep.mean() > 0.6
        exact = residual(pair, pair.flow, keep)
        assert exact < 1.0  # grey levels: bilinear resampling of frame 2 is all that is left
        assert exact < 0.3 * residual(pair, np.zeros_like(pair.flow), keep)
        for offset in ((0.3, 0.0), (-0.3, 0.0), (0.0, 0.3), (0.0, -0.3)):
            assert residual(pair, pair.flow + np.float32(offset), keep) > exact
        # The objects: their own motion is the truth's, on top of the camera's, and a pure translation.
        for k, truth in enumerate(pair.truths, start=1):
            inside = pair.flow[pair.objects == k]
            assert np.ptp(inside, axis=0).max() < 1e-6
            assert OBJECT_SPEED_PX[0] - 1e-9 <= np.hypot(*truth.own_motion) <= OBJECT_SPEED_PX[1] + 1e-9
            x0, y0, x1, y1 = truth.box
            assert 0 <= x0 < x1 <= SIZE[1] and 0 <= y0 < y1 <= SIZE[0]
            assert OBJECTS[0] * 0.6 <= max(x1 - x0, y1 - y0) <= OBJECTS[1] + 2
        # Same geometry with the nuisances: the exact flow still explains frame 2 up to noise and gain.
        rough = noisy[i]
        np.testing.assert_array_equal(rough.flow, pair.flow)
        assert residual(rough, rough.flow, keep) < 12.0  # σ = 4 per frame and a few percent of gain
        assert residual(rough, rough.flow, keep) < residual(rough, rough.flow + np.float32(1.0), keep)


def test_sensor_noise_and_gain_are_applied():
    clean, noisy = tiny_pairs(nuisances=NuisanceConfig.none()), tiny_pairs(count=4)
    gains, spreads = [], []
    for i in range(len(clean)):
        for a, b in ((clean[i].frame1, noisy[i].frame1), (clean[i].frame2, noisy[i].frame2)):
            a, b = a.astype(np.float64), b.astype(np.float64)
            unsaturated = (b > 20) & (b < 235)
            gain = float(np.sum(a * b * unsaturated) / np.sum(a * a * unsaturated))
            gains.append(gain)
            spreads.append(float(np.std((b - gain * a)[unsaturated])))
    assert 3.0 < np.median(spreads) < 5.0  # σ ≈ 4 grey levels
    assert all(0.85 < g < 1.15 for g in gains) and np.std(gains) > 0.005  # a gain of its own per frame


def test_draw_is_seeded_and_reproducible():
    a, b = tiny_pairs(seed=11, count=3), tiny_pairs(seed=11, count=3)
    later = b[2]  # access order does not matter
    for x, y in zip(a[2], later, strict=True):
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y
    np.testing.assert_array_equal(a[-1].frame1, later.frame1)
    assert not np.array_equal(a[1].frame1, later.frame1)
    assert not np.array_equal(tiny_pairs(seed=12, count=3)[2].flow, later.flow)
    with pytest.raises(IndexError):
        a[3]


def test_readout_reaches_its_ceiling_on_the_exact_flow_and_chance_without_motion():
    pairs = tiny_pairs(seed=3, count=16, nuisances=NuisanceConfig.none())
    rendered = [pairs[i] for i in range(len(pairs))]
    exact = np.vstack([object_features(p.flow, p) for p in rendered])
    labels = np.concatenate([[t.direction for t in p.truths] for p in rendered])
    assert len(set(labels)) >= 6
    angle = np.degrees(np.arctan2(exact[:, 1], exact[:, 0]))
    nearest = np.round(angle / (360 / len(DIRECTIONS))).astype(int) % len(DIRECTIONS)
    np.testing.assert_array_equal(nearest, labels)  # the features point the way the objects move
    half = len(labels) // 2
    assert LinearReadout(exact[:half], labels[:half]).accuracy(exact[half:], labels[half:]) > 0.8
    flat = np.vstack([object_features(np.zeros_like(p.flow), p) for p in rendered])
    assert LinearReadout(flat[:half], labels[:half]).accuracy(flat[half:], labels[half:]) < 0.5


def test_run_reports_methods_ratios_and_the_ceiling(tmp_path):
    pairs = tiny_pairs(seed=2, count=6)
    estimators = {m: get_estimator(m) for m in ("dis", "zero")}
    report = run_robustness(pairs, estimators, labels={"dis": "DIS-medium"}, threads=1)
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["dis", "zero", EXACT]
    assert rows[EXACT]["epe"] == 0 and rows[EXACT]["acc_1px"] == 1 and math.isnan(rows[EXACT]["ms_per_pair"])
    assert rows["dis"]["epe"] < rows["zero"]["epe"] and rows["dis"]["epe_vs_dis"] == 1
    assert rows["zero"]["epe_object_vs_dis"] == pytest.approx(
        rows["zero"]["epe_object"] / rows["dis"]["epe_object"]
    )
    assert rows["zero"]["epe_object"] > 1.0  # the objects move by >= 1.5 px of their own
    settings = report["settings"]
    assert settings["train_pairs"] == 3 and settings["train_objects"] + settings["test_objects"] >= 6
    table = to_markdown(report)
    (tmp_path / "robustness.json").write_text(json.dumps(json_safe(report)))
    section = load_updater().render_results(tmp_path)
    assert section.startswith("### Robustness on real footage") and table in section
    assert "`python benchmarks/robustness.py --pairs 6 --seed 2 --threads 1 --size 128x96`" in section
    assert "| DIS-medium | " in table and "| exact flow (read-out ceiling) | 0.00 |" in table
    assert f"exact-flow ceiling {100 * rows[EXACT]['direction_accuracy']:.1f} %" in table
    assert "load average" not in table
    loaded = {**report, "load_average": [5.2, 6.8], "machine": {"cpu_count": 2}}
    assert "Timed under a load average of 5.2–6.8 on 2 cores" in to_markdown(loaded)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        run_robustness(tiny_pairs(count=1), estimators)


def test_bad_pair_settings_are_input_errors():
    with pytest.raises(InputError, match="at least"):
        RobustnessPairs(0, 4, size=(60, 80))  # too small for 60 px objects
    with pytest.raises(InputError, match="at least 1 pair"):
        RobustnessPairs(0, 0)
    with pytest.raises(InputError, match="object sizes"):
        RobustnessPairs(0, 4, object_across=(30.0, 20.0))


def load_script():
    spec = importlib.util.spec_from_file_location("robustness_bench", ROOT / "benchmarks" / "robustness.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--pairs", "2"], "--pairs must be at least 4"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--size", "60x40"], "pairs must be at least"),
        (["--size", "big"], "--size 'big': expected WxH"),
        (["--size", "320x240,160x120"], "expected WxH"),
        (["--weights", "{tmp}/missing.safetensors"], "weights file not found"),
        (["--output-dir", "{tmp}/file"], "cannot"),
    ],
)
def test_bad_options_end_in_one_line(tmp_path, capsys, argv, words):
    (tmp_path / "file").write_text("not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "--output-dir" not in argv:
        argv += ["--output-dir", str(tmp_path / "out")]
    assert load_script().main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder
