"""Classical flow baselines behind the MotionEstimator interface."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from scattermotion.baselines import METHODS, ClassicalFlow, refine_flow
from scattermotion.data.fetched import ensure_data
from scattermotion.data.synthetic import SyntheticClips
from scattermotion.errors import InputError
from scattermotion.metrics import aggregate, flow_metrics


@pytest.fixture(scope="module")
def shifted_pair() -> tuple[np.ndarray, np.ndarray]:
    """A real texture and the same texture moved 3 px right and 2 px down (frame2(x) = frame1(x - (3, 2)))."""
    image = cv2.imread(str(ensure_data() / "opencv" / "baboon.jpg"), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(cv2.resize(image, (160, 160), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return rgb[20:100, 20:120], rgb[18:98, 17:117]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_flow_of_the_frame_size(method, shifted_pair):
    frame1, frame2 = shifted_pair
    estimator = ClassicalFlow(method, threads=1)
    flow = estimator.estimate(frame1, frame2)
    assert flow.shape == (80, 100, 2) and flow.dtype == np.float32
    grey = estimator.estimate(
        cv2.cvtColor(frame1, cv2.COLOR_RGB2GRAY), cv2.cvtColor(frame2, cv2.COLOR_RGB2GRAY)
    )
    np.testing.assert_allclose(grey, flow, atol=1e-5)  # RGB is converted to the same grey
    clip = estimator.estimate_clip([frame1, frame2, frame1])
    assert clip.shape == (2, 80, 100, 2) and clip.dtype == np.float32
    np.testing.assert_allclose(clip[0], flow, atol=1e-5)
    if method == "zero":
        assert not flow.any()
    else:  # a pure translation is recovered in the interior
        median = np.median(flow[15:-15, 15:-15].reshape(-1, 2), axis=0)
        np.testing.assert_allclose(median, [3, 2], atol=0.5)


def test_dis_beats_zero_flow_on_synthetic_smooth_motion():
    clips = SyntheticClips(seed=21, count=4, size=(96, 128), clip_len=2, kind="smooth", max_disp=16.0)
    results = {m: [] for m in ("dis", "zero")}
    for frames, flows, occluded in clips:
        for method in results:
            pred = ClassicalFlow(method, threads=1).estimate(frames[0], frames[1])
            results[method].append(flow_metrics(pred, flows[0], occluded=occluded[0]))
    dis, zero = aggregate(results["dis"]), aggregate(results["zero"])
    assert dis["epe"] < 0.5 * zero["epe"]


def test_bad_method_and_bad_frames():
    with pytest.raises(InputError, match="tvl1, dis, dis-fast, farneback, zero"):
        ClassicalFlow("raft")
    estimator = ClassicalFlow("dis")
    with pytest.raises(InputError, match="same size"):
        estimator.estimate(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 40, 3), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        estimator.estimate(np.zeros((32, 32, 3), np.float32), np.zeros((32, 32, 3), np.float32))
    with pytest.raises(InputError, match="at least 2 frames"):
        estimator.estimate_clip([np.zeros((32, 32, 3), np.uint8)])


def test_thread_setting_is_restored(shifted_pair):
    before = cv2.getNumThreads()
    ClassicalFlow("farneback", threads=1).estimate(*shifted_pair)
    assert cv2.getNumThreads() == before


def test_dis_runs_on_tiny_and_short_wide_frames():
    """OpenCV's DIS raises on frames under 12 px and crashes the process on short, wide ones (12x100,
    20x400); both now run (in a child process, so that a crash fails this test instead of the suite)."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from scattermotion.baselines import ClassicalFlow\n"
        "rng = np.random.default_rng(0)\n"
        "for method in ('dis', 'dis-fast'):\n"
        "    for h, w in ((1, 1), (5, 7), (11, 11), (12, 100), (13, 100), (16, 100), (20, 400), (15, 300)):\n"
        "        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)\n"
        "        flow = ClassicalFlow(method, threads=1).estimate(a, np.roll(a, 1, axis=1))\n"
        "        assert flow.shape == (h, w, 2) and np.isfinite(flow).all(), (method, h, w)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_refinement_moves_a_rough_motion_towards_the_shift_and_its_plan_must_end_at_full_size(shifted_pair):
    frame1, frame2 = shifted_pair  # moved by (3, 2) px
    rough = np.broadcast_to(np.float32([2.5, 1.5]), (80, 100, 2))
    refined = refine_flow(frame1, frame2, rough)
    assert refined.shape == (80, 100, 2) and refined.dtype == np.float32
    error = np.abs(refined[15:-15, 15:-15] - [3.0, 2.0]).mean()
    assert error < 0.45  # measured 0.30 (the rough motion: 0.5); the network case is in test_estimator
    with pytest.raises(ValueError, match="must end at scale 1.0"):
        refine_flow(frame1, frame2, rough, plan=((1.0, 1), (0.5, 1)))
