"""MotionEstimator: input handling, the window plan of estimate_clip, estimate vs clip, stream vs clip, and
the classical methods behind the same interface. Uses a randomly initialised small network (no trained
weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import tiny_config

from scattermotion import estimator as estimator_module
from scattermotion.errors import InputError
from scattermotion.estimator import MotionEstimator, get_estimator
from scattermotion.model import build_motion_net, save_weights
from scattermotion.model.config import MotionConfig
from scattermotion.padding import InputPadder

HEIGHT, WIDTH = 37, 53  # deliberately not multiples of the network stride
# The same windows batched differently: float32 reordering only, ~1e-6 relative on motion of tens of px
# (any mix-up of pairs or windows is off by pixels).
BATCHING_ATOL = 2e-5


@pytest.fixture(scope="module", autouse=True)
def _few_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: more threads only wait on each other
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random_small.safetensors"
    save_weights(build_motion_net("small"), path)
    return path


@pytest.fixture(scope="module")
def est(weights_path) -> MotionEstimator:
    return MotionEstimator.from_pretrained(weights_path)


def _frames(count: int, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> list[np.ndarray]:
    """A textured image translated by one pixel per frame (real motion, so pairs differ)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height + 4, width + count + 4, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[2 : 2 + height, i : i + width]) for i in range(count)]


def _model_on_window(est: MotionEstimator, frames: list[np.ndarray]) -> np.ndarray:
    """The network run directly on one clip (padding done here, independently of the estimator)."""
    clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255.0)[None]
    padder = InputPadder(HEIGHT, WIDTH, est.stride)
    with torch.inference_mode():
        flows = padder.unpad(est.model(padder.pad(clip)[0]).flows)[0]
    return flows.permute(0, 2, 3, 1).numpy()


def test_default_weights_missing_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(estimator_module, "DEFAULT_WEIGHTS", tmp_path / "default.safetensors")
    with pytest.raises(InputError, match="default.safetensors: weights file not found"):
        MotionEstimator.from_pretrained()
    with pytest.raises(InputError, match="not found"):
        MotionEstimator.from_pretrained(tmp_path / "nope.safetensors")


def test_output_shape_any_size_and_dtype(est):
    a, b = _frames(2)
    flow = est.estimate(a, b)
    assert flow.shape == (HEIGHT, WIDTH, 2) and flow.dtype == np.float32
    assert np.isfinite(flow).all()
    tiny = est.estimate(*_frames(2, height=5, width=7))
    assert tiny.shape == (5, 7, 2)


def test_grayscale_equals_rgb_with_equal_channels(est):
    a, b = (f[:, :, 0] for f in _frames(2))
    gray = est.estimate(a, b)
    rgb = est.estimate(np.dstack([a] * 3), np.dstack([b] * 3))
    one_channel = est.estimate(a[:, :, None], b[:, :, None])
    np.testing.assert_array_equal(gray, rgb)
    np.testing.assert_array_equal(gray, one_channel)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((HEIGHT, WIDTH, 3), np.float32), "uint8"),
        (np.zeros((HEIGHT, WIDTH, 4), np.uint8), "shape"),
        (np.zeros((HEIGHT, WIDTH, 3, 1), np.uint8), "shape"),
        (np.zeros((HEIGHT + 1, WIDTH, 3), np.uint8), "same size"),
        (np.zeros((0, WIDTH, 3), np.uint8), "empty"),
    ],
)
def test_bad_frames_rejected(est, bad, message):
    good = _frames(1)[0]
    with pytest.raises(InputError, match=message):  # one frame check, one error type for every method
        est.estimate(good, bad)


def test_clip_needs_two_frames(est):
    with pytest.raises(InputError, match="at least 2"):
        est.estimate_clip(_frames(1))
    with pytest.raises(InputError, match="at least 2"):
        list(est.estimate_stream(iter([])))


def test_fp16_refused_on_cpu(weights_path):
    with pytest.raises(InputError, match="CUDA"):
        MotionEstimator.from_pretrained(weights_path, fp16=True)


def test_clip_windows_share_frames_and_tail_moves_back(est):
    """T=4, 9 frames: windows 0-3 and 3-6, then the tail window 5-8 of which only pairs 6-7, 7-8 are kept."""
    assert est.clip_len == 4
    frames = _frames(9)
    clip = est.estimate_clip(frames)
    assert clip.shape == (8, HEIGHT, WIDTH, 2)
    expected = np.concatenate(
        [
            _model_on_window(est, frames[0:4]),
            _model_on_window(est, frames[3:7]),
            _model_on_window(est, frames[5:9])[1:],
        ]
    )
    np.testing.assert_allclose(clip, expected, atol=BATCHING_ATOL)
    # Context matters, so the check above can fail: pair 6-7 in a window starting at 6 differs.
    assert np.abs(_model_on_window(est, frames[6:9])[0] - clip[6]).max() > 1e-5


def test_estimate_equals_two_frame_clip_and_differs_only_by_context(est):
    frames = _frames(4)
    pair = est.estimate(frames[1], frames[2])
    np.testing.assert_array_equal(pair, est.estimate_clip(frames[1:3])[0])
    np.testing.assert_allclose(pair, _model_on_window(est, frames[1:3])[0], atol=BATCHING_ATOL)
    in_clip = est.estimate_clip(frames)[1]
    assert np.abs(pair - in_clip).max() < 0.05 * max(np.abs(in_clip).max(), 1e-3) + 1e-3


def test_two_frame_model_clip_equals_pairwise_estimates(tmp_path):
    torch.manual_seed(1)
    net = build_motion_net(MotionConfig.small(clip_len=2))
    est2 = MotionEstimator(net, batch_size=3)
    frames = _frames(6)
    clip = est2.estimate_clip(frames)
    pairs = np.stack([est2.estimate(a, b) for a, b in zip(frames[:-1], frames[1:], strict=True)])
    np.testing.assert_allclose(clip, pairs, atol=BATCHING_ATOL)


@pytest.mark.parametrize("count", [2, 3, 4, 5, 7, 10])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_stream_equals_clip_with_bounded_lookahead(weights_path, count, batch_size):
    est = MotionEstimator.from_pretrained(weights_path, batch_size=batch_size)
    frames = _frames(count)
    reference = est.estimate_clip(frames)
    pulled = 0

    def source():
        nonlocal pulled
        for frame in frames:
            pulled += 1
            yield frame

    streamed, lookahead = [], []
    for flow in est.estimate_stream(source()):
        lookahead.append(pulled - len(streamed))
        streamed.append(flow)
    assert len(streamed) == count - 1
    np.testing.assert_allclose(np.stack(streamed), reference, atol=BATCHING_ATOL)
    # Never more than batch_size windows of frames ahead of the output.
    window_frames = batch_size * (est.clip_len - 1) + 1
    assert max(lookahead) <= window_frames


def test_stream_is_lazy_on_a_long_sequence(est):
    pulled = 0

    def endless():
        nonlocal pulled
        frames = _frames(2)
        while True:
            pulled += 1
            yield frames[pulled % 2]

    stream = est.estimate_stream(endless())
    first_three = [next(stream) for _ in range(3)]
    assert len(first_three) == 3 and pulled <= 2 * est.clip_len


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_classical_methods_share_the_interface(method):
    est = get_estimator(method)
    frames = _frames(5)
    clip = est.estimate_clip(frames)
    assert clip.shape == (4, HEIGHT, WIDTH, 2) and clip.dtype == np.float32
    streamed = np.stack(list(est.estimate_stream(iter(frames))))
    np.testing.assert_array_equal(streamed, clip)
    np.testing.assert_array_equal(est.estimate(frames[0], frames[1]), clip[0])
    gray = est.estimate(frames[0][:, :, 0], frames[1][:, :, 0])
    assert gray.shape == (HEIGHT, WIDTH, 2)


def test_get_estimator_rejects_bad_requests(weights_path):
    with pytest.raises(InputError, match="unknown method"):
        get_estimator("raft")
    with pytest.raises(InputError, match="only"):
        get_estimator("dis", weights=weights_path)
    assert get_estimator("ours", weights=weights_path).name == "ours"


class _ConstantMotion(torch.nn.Module):
    """Stands in for the network: records the input size, returns (2, 1) px everywhere at that size."""

    stride = 16

    def __init__(self):
        super().__init__()
        self.config = MotionConfig.small()
        self.seen: list[tuple[int, int]] = []

    def forward(self, frames: torch.Tensor):
        self.seen.append(tuple(frames.shape[-2:]))
        batch, length, _, height, width = frames.shape
        flows = torch.zeros(batch, length - 1, 2, height, width)
        flows[:, :, 0], flows[:, :, 1] = 2.0, 1.0
        return type("Output", (), {"flows": flows})


def test_min_side_runs_small_frames_larger_and_rescales_the_motion():
    model = _ConstantMotion()
    est = MotionEstimator(model, min_side=96)
    flow = est.estimate(*_frames(2, height=48, width=40))  # short side 40 -> 96: scale 2.4
    assert model.seen == [(16 * 8, 16 * 6)]  # 115x96, padded to the stride
    assert flow.shape == (48, 40, 2)
    np.testing.assert_allclose(flow[..., 0], 2.0 / (96 / 40), rtol=1e-5)  # back in the given frames' pixels
    np.testing.assert_allclose(flow[..., 1], 1.0 / (115 / 48), rtol=1e-5)
    model.seen.clear()
    big = est.estimate(*_frames(2, height=100, width=120))  # already large enough: untouched
    assert model.seen == [(112, 128)] and np.allclose(big[..., 0], 2.0)
    with pytest.raises(InputError, match="--min-side"):
        MotionEstimator(model, min_side=0)
    with pytest.raises(InputError, match="ours only"):
        get_estimator("dis", min_side=224)


def test_precision_switch_bf16_stays_close_to_fp32_and_bad_names_are_one_line():
    torch.manual_seed(0)
    net = build_motion_net(tiny_config())
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    fp32 = MotionEstimator(net, precision="fp32").estimate_clip(frames)
    bf16 = MotionEstimator(net, precision="bf16")
    assert bf16.precision == "bf16"
    low = bf16.estimate_clip(frames)
    assert low.dtype == np.float32 and np.isfinite(low).all()
    assert np.abs(low - fp32).mean() < 0.5 and not np.array_equal(low, fp32)  # bf16 really ran
    with pytest.raises(InputError, match="precision"):
        MotionEstimator(net, precision="half")


def _shifted_real_frames(shift: float, count: int = 2, height: int = 96, width: int = 128):
    """``count`` crops of a real video frame, each ``shift`` px further right: truth (shift, 0) everywhere."""
    import cv2

    from scattermotion.data.fetched import ensure_data, real_video

    ensure_data()
    capture = cv2.VideoCapture(str(real_video("bikes")))
    ok, frame = capture.read()
    capture.release()
    assert ok
    base = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)[40 : 40 + height + 32, 40 : 40 + width + 32]
    frames = []
    for k in range(count):
        moved = cv2.warpAffine(base, np.float32([[1, 0, shift * k], [0, 1, 0]]), base.shape[1::-1])
        frames.append(np.ascontiguousarray(moved[16 : 16 + height, 16 : 16 + width]))
    return frames


def test_refined_estimator_sharpens_the_network_motion_and_streams_like_a_clip():
    from scattermotion.estimator import RefinedEstimator
    from scattermotion.methods import REFINED, build_estimator, method_label

    network = MotionEstimator.from_pretrained(None)
    refined = build_estimator(REFINED)
    assert isinstance(refined, RefinedEstimator) and refined.name == REFINED
    first, second = _shifted_real_frames(3.0)  # measured: 0.90 px of error raw, 0.46 refined
    inner = 8  # away from the borders, where a shifted crop brings in new content
    truth = np.array([3.0, 0.0], dtype=np.float32)

    def error(flow):
        return float(np.linalg.norm(flow[inner:-inner, inner:-inner] - truth, axis=-1).mean())

    raw, sharp = network.estimate(first, second), refined.estimate(first, second)
    assert sharp.shape == raw.shape and sharp.dtype == np.float32
    assert error(sharp) < 0.65 * error(raw)
    frames = _shifted_real_frames(1.0, count=5)
    clip = refined.estimate_clip(frames)
    assert np.array_equal(np.stack(list(refined.estimate_stream(iter(frames)))), clip)
    assert "variational refinement" in method_label(REFINED, "run/w.safetensors")
