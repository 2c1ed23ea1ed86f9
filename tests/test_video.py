"""Video input (scattermotion.data.video) and scene cuts (scattermotion.data.scenecut)."""

from __future__ import annotations

import inspect
import tracemalloc
import weakref
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from scattermotion.data.fetched import CORRUPT_VIDEO, ensure_data, real_video
from scattermotion.data.scenecut import detect_scene_cuts, sample_clip_starts, shots
from scattermotion.data.video import (
    FolderVideoSource,
    OpenCVVideoSource,
    PyAVVideoSource,
    natural_key,
    open_video,
    output_size,
)
from scattermotion.errors import InputError

BIKES_CUTS = [
    30,
    76,
    137,
    187,
    242,
]  # DESIGN.md "after frames 30, 76, ...": 1-based, i.e. new shots start here


@pytest.fixture(scope="module", autouse=True)
def data():
    return ensure_data()


def numbered_frames(count: int, width: int = 48, height: int = 32) -> list[np.ndarray]:
    """Frames that differ from each other everywhere, so an off-by-one shows in every pixel."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 200, (height, width, 3), dtype=np.uint8)
    return [((texture.astype(np.int32) + 7 * i) % 256).astype(np.uint8) for i in range(count)]


def write_video(path: Path, frames: list[np.ndarray], codec: str = "ffv1", pix_fmt: str = "bgr0") -> Path:
    """A video written with PyAV; FFV1 (lossless) by default so decoded frames compare exactly."""
    height, width = frames[0].shape[:2] if frames else (32, 48)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if not frames:
            container.start_encoding()
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def assert_input_error(err: pytest.ExceptionInfo, path: Path, words: str) -> None:
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert words in message, message


# ---- real clips --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, count, size, fps",
    [("bikes", 250, (640, 272), 25.0), ("tree", 68, (320, 240), 15.0), ("carphone", 120, (176, 144), 29.97)],
)
def test_real_clip_properties_and_exact_count(name, count, size, fps):
    video = open_video(real_video(name))
    assert isinstance(video, PyAVVideoSource)
    assert (video.width, video.height) == size
    assert video.fps == pytest.approx(fps, abs=0.01)
    assert video.frame_count == count
    assert video.count_frames() == count
    first = next(video.frames())
    assert first.shape == (size[1], size[0], 3) and first.dtype == np.uint8


def test_tree_header_overstates_but_frame_count_is_exact():
    video = open_video(real_video("tree"))
    assert video.declared_frame_count == 444  # the AVI header's count
    assert video.frame_count == 68 == sum(1 for _ in video.frames())


def test_vtest_frame_count_without_decoding():
    video = open_video(real_video("vtest"))
    assert (video.width, video.height, video.frame_count, video.fps) == (768, 576, 795, 10.0)


def _first_frames_sum(path: str) -> int:
    return int(open_video(path).read_all(max_frames=3).astype(np.int64).sum())


def test_decoding_in_a_process_forked_after_decoding_finishes():
    # A DataLoader worker is forked after the parent has decoded (scene cuts, validation). PyAV 18.1.1 keeps
    # one converter per thread; the forked child inherited it without its scaler's threads and waited for
    # them forever. The decoder now converts with its own, single-threaded converter.
    import multiprocessing

    path = str(real_video("carphone"))
    expected = _first_frames_sum(path)  # the parent converts first
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_first_frames_sum, (path,)).get(timeout=60) == expected


def test_frames_are_rgb_and_match_opencv():
    path = real_video("carphone")
    ours = open_video(path).read_all(max_frames=5)
    capture = cv2.VideoCapture(str(path))
    theirs = np.stack([cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in range(5)])
    capture.release()
    assert ours.shape == theirs.shape == (5, 144, 176, 3)
    assert np.abs(ours.astype(int) - theirs).mean() < 2.0
    # The same frames in BGR order would be far off (the clip is colourful).
    assert np.abs(ours[..., ::-1].astype(int) - theirs).mean() > 5.0


def test_start_step_stop_and_clip_match_full_decode():
    video = open_video(real_video("carphone"))
    everything = video.read_all()
    assert everything.shape == (120, 144, 176, 3)
    np.testing.assert_array_equal(np.stack(list(video.frames(start=50, step=7))), everything[50::7])
    np.testing.assert_array_equal(np.stack(list(video.frames(start=3, stop=9, step=2))), everything[3:9:2])
    np.testing.assert_array_equal(video.read_clip(110, 5, step=2), everything[110:120:2])
    with pytest.raises(InputError) as err:
        video.read_clip(115, 6)
    assert_input_error(err, video.path, "shorter")


def test_megamind_bugy_streams_whole():
    # OpenCV's decoder test file with damaged frames: FFmpeg conceals the damage, nothing is lost.
    path = ensure_data() / CORRUPT_VIDEO
    assert open_video(path).count_frames() == 270


# ---- OpenCV fallback ---------------------------------------------------------------------------------


def test_opencv_backend_matches_pyav():
    path = real_video("tree")
    cv_video = open_video(path, backend="opencv")
    assert isinstance(cv_video, OpenCVVideoSource)
    assert (cv_video.width, cv_video.height) == (320, 240)
    assert cv_video.frame_count == 444  # OpenCV trusts the header: an estimate
    assert cv_video.count_frames() == 68 == cv_video.frame_count
    ours = open_video(path).read_all()
    theirs = cv_video.read_all()
    assert theirs.shape == ours.shape
    assert np.abs(ours.astype(int) - theirs).mean() < 2.0
    np.testing.assert_array_equal(np.stack(list(cv_video.frames(start=10, step=5))), theirs[10::5])


def test_falls_back_to_opencv_when_pyav_cannot_open(monkeypatch):
    def refuse(*args, **kwargs):
        raise av.error.InvalidDataError(1094995529, "simulated", "x")

    monkeypatch.setattr(av, "open", refuse)
    video = open_video(real_video("carphone"), require_frames=2)
    assert isinstance(video, OpenCVVideoSource)
    assert (video.width, video.height, video.frame_count) == (176, 144, 120)


# ---- folders of frames -------------------------------------------------------------------------------


def test_natural_order():
    names = ["frame10.png", "frame2.png", "img_00001.jpg", "frame1.png", "Frame3.png"]
    assert sorted(names, key=natural_key) == [
        "frame1.png",
        "frame2.png",
        "Frame3.png",
        "frame10.png",
        "img_00001.jpg",
    ]


def test_frame_folder(tmp_path):
    frames = numbered_frames(12)
    for i, frame in enumerate(frames):  # unpadded numbers: plain string order would be wrong
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / ".frame99.png").write_bytes(b"")  # hidden (e.g. a half-written temporary): ignored
    video = open_video(tmp_path, fps=12.5)
    assert isinstance(video, FolderVideoSource)
    assert (video.frame_count, video.width, video.height, video.fps) == (12, 48, 32, 12.5)
    assert open_video(tmp_path).fps == 25.0
    np.testing.assert_array_equal(video.read_all(), np.stack(frames))
    np.testing.assert_array_equal(np.stack(list(video.frames(start=2, step=3))), np.stack(frames[2::3]))


def test_frame_folder_grayscale_and_jpeg(tmp_path):
    gray = numbered_frames(2)[1][:, :, 0]
    cv2.imwrite(str(tmp_path / "a_1.png"), gray)
    cv2.imwrite(str(tmp_path / "a_2.JPG"), np.zeros((32, 48, 3), np.uint8))
    frames = open_video(tmp_path).read_all()
    assert frames.shape == (2, 32, 48, 3)
    np.testing.assert_array_equal(frames[0], np.repeat(gray[:, :, None], 3, axis=2))


# ---- resizing ----------------------------------------------------------------------------------------


def test_output_size_rules():
    assert output_size("v", 640, 272, short_side=64) == (150, 64)  # 150.6 -> even 150
    assert output_size("v", 144, 176, short_side=72) == (72, 88)  # portrait: width is the short side
    assert output_size("v", 640, 272, resize=(100, 50)) == (100, 50)
    assert output_size("v", 640, 272) == (640, 272)
    for kwargs in ({"resize": (10, 10), "short_side": 5}, {"short_side": 0}, {"resize": (0, 5)}):
        with pytest.raises(InputError) as err:
            output_size("clip.mp4", 640, 272, **kwargs)
        assert str(err.value).startswith("clip.mp4: ")


def test_resize_and_short_side_on_video_and_folder(tmp_path):
    path = real_video("bikes")
    full = next(open_video(path).frames())
    small = open_video(path, short_side=64)
    assert (small.width, small.height) == (150, 64)
    first = next(small.frames())
    np.testing.assert_array_equal(first, cv2.resize(full, (150, 64), interpolation=cv2.INTER_AREA))
    assert next(open_video(path, resize=(100, 50)).frames()).shape == (50, 100, 3)
    enlarged = next(open_video(real_video("carphone"), resize=(352, 288)).frames())
    assert enlarged.shape == (288, 352, 3)

    for i, frame in enumerate(numbered_frames(3)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), frame)
    folder = open_video(tmp_path, short_side=16)
    assert (folder.width, folder.height) == (24, 16)
    assert folder.read_all().shape == (3, 16, 24, 3)


# ---- streaming ---------------------------------------------------------------------------------------


def test_streaming_holds_one_frame_at_a_time(tmp_path):
    path = write_video(tmp_path / "long.mkv", numbered_frames(200, width=160, height=120))
    stream = open_video(path).frames()
    assert inspect.isgenerator(stream)
    # No yielded frame is kept alive by the source once the caller lets go of it.
    refs = []
    for frame in stream:
        assert frame.shape == (120, 160, 3)
        refs.append(weakref.ref(frame))
    del frame
    assert len(refs) == 200 and all(ref() is None for ref in refs)
    # Resized frames are NumPy allocations, which tracemalloc sees: 200 of them would be 2.9 MB.
    small = open_video(path, resize=(80, 60))
    tracemalloc.start()
    try:
        count = sum(1 for _ in small.frames())
        _, peak = tracemalloc.get_traced_memory()
        held = small.read_all()
        _, peak_all = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200 and held.nbytes == 200 * 80 * 60 * 3
    assert peak < 20 * 80 * 60 * 3 < held.nbytes <= peak_all, (peak, peak_all)


def test_lossless_video_round_trip_and_early_close(tmp_path):
    frames = numbered_frames(30)
    video = open_video(write_video(tmp_path / "clip.mkv", frames), require_frames=2)
    assert video.frame_count == 30
    np.testing.assert_array_equal(video.read_all(), np.stack(frames))
    np.testing.assert_array_equal(np.stack(list(video.frames(start=29))), np.stack(frames[29:]))
    assert list(video.frames(start=40)) == []
    stream = video.frames(start=5)
    np.testing.assert_array_equal(next(stream), frames[5])
    stream.close()  # releases the container; a new pass starts over
    np.testing.assert_array_equal(next(video.frames()), frames[0])


# ---- bad input ---------------------------------------------------------------------------------------


def test_missing_and_empty_files(tmp_path):
    missing = tmp_path / "nowhere.mp4"
    with pytest.raises(InputError) as err:
        open_video(missing)
    assert_input_error(err, missing, "no such file")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as err:
        open_video(empty)
    assert_input_error(err, empty, "file is empty")


def test_text_file_named_mp4(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n" * 100)
    with pytest.raises(InputError) as err:
        open_video(fake)
    assert_input_error(err, fake, "not a readable video")


def test_truncated_mp4_is_rejected(tmp_path):
    data = real_video("bikes").read_bytes()
    cut = tmp_path / "bikes_cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # its index (moov) sits at the end: gone
    with pytest.raises(InputError) as err:
        open_video(cut)
    assert_input_error(err, cut, "not a readable video")


def test_truncated_avi_yields_the_frames_it_holds(tmp_path):
    data = real_video("tree").read_bytes()
    cut = tmp_path / "tree_cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    video = open_video(cut, require_frames=2)
    decoded = video.count_frames()
    assert 20 < decoded < 68 and video.frame_count == decoded
    full = open_video(real_video("tree")).read_all(max_frames=decoded - 1)
    np.testing.assert_array_equal(video.read_all(max_frames=decoded - 1), full)


def test_decoding_error_mid_stream(tmp_path):
    source = real_video("tree")
    with av.open(str(source)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(source.read_bytes())
    pos, size = packets[30]
    data[pos + 10 : pos + size - 10] = bytes(size - 20)  # wipe frame 30's payload
    broken = tmp_path / "tree_broken.avi"
    broken.write_bytes(bytes(data))

    video = open_video(broken, require_frames=2)
    with pytest.raises(InputError) as err:
        for _ in video.frames():
            pass
    assert_input_error(err, broken, "decoding failed after 30 frames")
    assert len(open_video(broken, on_error="stop").read_all()) == 30


@pytest.mark.parametrize("count", [0, 1])
def test_too_few_frames(tmp_path, count):
    # An AVI can hold a video stream with no frames at all.
    path = write_video(
        tmp_path / f"short{count}.avi", numbered_frames(count), codec="mpeg4", pix_fmt="yuv420p"
    )
    assert open_video(path).count_frames() == count
    with pytest.raises(InputError) as err:
        open_video(path, require_frames=2)
    assert_input_error(err, path, f"has {count} frame")


def test_header_only_avi_has_no_decodable_frame(tmp_path):
    data = real_video("vtest").read_bytes()
    stub = tmp_path / "vtest_stub.avi"
    stub.write_bytes(data[:6000])  # header plus part of the first frame
    assert open_video(stub).frame_count == 1
    with pytest.raises(InputError) as err:
        open_video(stub, require_frames=2)
    assert_input_error(err, stub, "at least 2 needed")


def test_audio_only_file(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(InputError) as err:
        open_video(path)
    assert_input_error(err, path, "no video stream")


def test_bad_frame_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(InputError) as err:
        open_video(empty)
    assert_input_error(err, empty, "no frame images")

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(numbered_frames(3)):
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    broken = folder / "f3.png"
    broken.write_bytes(b"\x89PNG not really")
    video = open_video(folder)
    assert video.frame_count == 4
    with pytest.raises(InputError) as err:
        video.read_all()
    assert_input_error(err, broken, "not a readable")
    assert len(open_video(folder, on_error="stop").read_all()) == 3

    broken.write_bytes(b"")
    with pytest.raises(InputError) as err:
        list(open_video(folder).frames())
    assert_input_error(err, broken, "file is empty")

    cv2.imwrite(str(broken), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(InputError) as err:
        list(open_video(folder).frames())
    assert_input_error(err, broken, "differs from the first frame")

    first_broken = tmp_path / "first"
    first_broken.mkdir()
    (first_broken / "0001.jpg").write_bytes(b"garbage")
    with pytest.raises(InputError) as err:
        open_video(first_broken)
    assert_input_error(err, first_broken / "0001.jpg", "not a readable")


# ---- scene cuts --------------------------------------------------------------------------------------


def test_bikes_scene_cuts():
    cuts = detect_scene_cuts(real_video("bikes"))
    assert len(cuts) == len(BIKES_CUTS)
    assert all(abs(found - true) <= 1 for found, true in zip(cuts, BIKES_CUTS, strict=True)), cuts


@pytest.mark.parametrize("name", ["tree", "carphone"])
def test_no_false_cuts_in_single_shots(name):
    assert detect_scene_cuts(real_video(name)) == []


def test_cut_in_spliced_frames():
    # Two real single-shot clips joined: one cut exactly where the second begins.
    first = open_video(real_video("carphone")).read_all(max_frames=20)
    second = open_video(real_video("tree"), resize=(176, 144)).read_all(max_frames=15)
    assert detect_scene_cuts(list(first) + list(second)) == [20]
    assert detect_scene_cuts(iter(first)) == []


def test_shots_and_clip_starts():
    assert shots(250, BIKES_CUTS) == [(0, 30), (30, 76), (76, 137), (137, 187), (187, 242), (242, 250)]
    assert shots(10, []) == [(0, 10)]
    assert shots(10, [0, 10, 4, 4]) == [(0, 4), (4, 10)]
    assert sample_clip_starts([(0, 10), (10, 13), (13, 20)], clip_len=4, stride=3) == [0, 3, 6, 13, 16]

    cuts = set(BIKES_CUTS)
    starts = sample_clip_starts(shots(250, BIKES_CUTS), clip_len=8, stride=5)
    assert starts and all(s + 8 <= 250 for s in starts)
    assert not any(c in range(s + 1, s + 8) for s in starts for c in cuts)  # no clip spans a cut
    # Without cuts the same sampling would put clips across them.
    assert any(c in range(s + 1, s + 8) for s in sample_clip_starts(shots(250, []), 8, 5) for c in cuts)
