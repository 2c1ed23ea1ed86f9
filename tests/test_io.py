"""Flow file readers and writers: round trips, exact on-disk layouts, and rejection of malformed files."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from scattermotion.data.fetched import ensure_data, stereo_pair
from scattermotion.errors import InputError
from scattermotion.io import (
    flow_to_uint8,
    read_flo,
    read_flow,
    read_flow_jpeg,
    read_kitti,
    read_npy,
    uint8_to_flow,
    write_flo,
    write_flow,
    write_flow_jpeg,
    write_kitti,
    write_npy,
)
from scattermotion.io.atomic import atomic_output

ALLOCATION_LIMIT = 4 * 2**20  # a rejected header must not make the reader allocate what it claims


@pytest.fixture(scope="module")
def real_flow() -> np.ndarray:
    """Real ground-truth motion: the Middlebury 2014 motorcycle disparity as flow (-d, 0), NaN unknown."""
    root = ensure_data()
    _, _, disparity_file = stereo_pair("motorcycle", root)
    disparity = np.load(disparity_file)["arr_0"][::6, ::6]
    flow = np.stack([-disparity, np.zeros_like(disparity)], axis=2).astype(np.float32)
    flow[~np.isfinite(disparity)] = np.nan
    assert np.isnan(flow).any() and np.isfinite(flow).any()
    return flow


@pytest.fixture
def random_flow() -> np.ndarray:
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 8, size=(13, 17, 2)).astype(np.float32)
    flow[2, 3] = np.nan
    flow[5, 7, 1] = np.nan
    return flow


def assert_same_flow(a: np.ndarray, b: np.ndarray, atol: float = 0.0) -> None:
    assert a.shape == b.shape and a.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=0, atol=atol)


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def rejects(path: Path, reader, *words: str) -> str:
    """Call ``reader(path)``, expect InputError naming the file, and return its message."""
    with pytest.raises(InputError) as caught:
        reader(path)
    message = str(caught.value)
    assert path.name in message
    for word in words:
        assert word in message
    return message


def read_with_peak_memory(reader, path: Path) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(InputError):
            reader(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---------------------------------------------------------------- .flo


def test_flo_round_trip_is_exact_with_nan(tmp_path, random_flow, real_flow):
    for name, flow in (("random.flo", random_flow), ("motorcycle.flo", real_flow)):
        write_flo(tmp_path / name, flow)
        expected = flow.copy()
        expected[np.isnan(flow).any(axis=2)] = np.nan  # a pixel with one unknown component is unknown
        assert_same_flow(read_flo(tmp_path / name), expected)
    assert leftovers(tmp_path, {"random.flo", "motorcycle.flo"}) == []


def test_flo_layout_is_middlebury(tmp_path):
    flow = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)  # H=2, W=3
    write_flo(tmp_path / "f.flo", flow)
    data = (tmp_path / "f.flo").read_bytes()
    assert data[:4] == b"PIEH" and struct.unpack("<f", data[:4])[0] == 202021.25
    assert struct.unpack("<ii", data[4:12]) == (3, 2)  # width first
    values = struct.unpack("<12f", data[12:])
    assert values[:4] == (0.0, 1.0, 2.0, 3.0)  # u, v of (y=0, x=0), then of (y=0, x=1)
    assert values[6:8] == tuple(flow[1, 0])
    assert len(data) == 12 + 2 * 3 * 8


def test_flo_writes_unknown_as_middlebury_marker(tmp_path):
    """NaN in a .flo file breaks flow_vis and RAFT's viewer: unknown pixels are written as 1e10 in both
    components, finite ones unchanged, and the file reads back with NaN there."""
    flow = np.array([[[1.5, -2.0], [np.nan, 3.0], [np.inf, -np.inf]]], np.float32)
    write_flo(tmp_path / "f.flo", flow)
    values = np.frombuffer((tmp_path / "f.flo").read_bytes()[12:], dtype="<f4")
    assert np.isfinite(values).all()
    assert values.tolist() == [1.5, -2.0, 1e10, 1e10, 1e10, 1e10]
    read = read_flo(tmp_path / "f.flo")
    assert tuple(read[0, 0]) == (1.5, -2.0) and np.isnan(read[0, 1:]).all()
    assert np.isnan(flow[0, 1, 0]) and flow[0, 1, 1] == 3.0  # the caller's array is not changed


def test_flo_reads_middlebury_unknown_as_nan(tmp_path):
    path = tmp_path / "gt.flo"
    path.write_bytes(b"PIEH" + struct.pack("<ii", 2, 1) + struct.pack("<4f", 1.5, -2.0, 1e10, 1e10))
    flow = read_flo(path)
    assert flow.shape == (1, 2, 2)
    assert tuple(flow[0, 0]) == (1.5, -2.0)
    assert np.isnan(flow[0, 1]).all()


def test_flo_rejects_malformed_files(tmp_path, random_flow):
    write_flo(tmp_path / "good.flo", random_flow)
    good = (tmp_path / "good.flo").read_bytes()
    cases = {
        "empty.flo": (b"", "empty"),
        "short.flo": (b"PIEH\x01\x00", "header"),
        "magic.flo": (b"PIEX" + good[4:], "magic"),
        "truncated.flo": (good[:-4], "truncated"),
        "longer.flo": (good + b"\0\0\0\0", "bytes"),
        "zero.flo": (b"PIEH" + struct.pack("<ii", 0, 5), "positive"),
        "negative.flo": (b"PIEH" + struct.pack("<ii", 4, -3) + bytes(96), "positive"),
    }
    for name, (data, word) in cases.items():
        (tmp_path / name).write_bytes(data)
        rejects(tmp_path / name, read_flo, word)
    rejects(tmp_path / "missing.flo", read_flo, "cannot read")


def test_flo_huge_header_is_rejected_without_allocating(tmp_path):
    huge = tmp_path / "huge.flo"
    huge.write_bytes(b"PIEH" + struct.pack("<ii", 2**30, 2**30) + bytes(64))
    rejects(huge, read_flo, "pixels")
    assert read_with_peak_memory(read_flo, huge) < ALLOCATION_LIMIT
    # Plausible size, but the file holds 64 bytes instead of 200 MB: caught by the length check.
    plausible = tmp_path / "plausible.flo"
    plausible.write_bytes(b"PIEH" + struct.pack("<ii", 5000, 5000) + bytes(64))
    rejects(plausible, read_flo, "truncated")
    assert read_with_peak_memory(read_flo, plausible) < ALLOCATION_LIMIT


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path, random_flow):
    path = tmp_path / "out.flo"
    write_flo(path, random_flow)
    before = path.read_bytes()
    with pytest.raises(RuntimeError), atomic_output(path) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert path.read_bytes() == before
    with pytest.raises(ValueError):
        write_flo(path, np.zeros((4, 4, 3), np.float32))
    assert path.read_bytes() == before
    assert leftovers(tmp_path, {"out.flo"}) == []


def test_write_into_missing_folder_is_input_error(tmp_path, random_flow):
    with pytest.raises(InputError, match="no_such_dir"):
        write_flo(tmp_path / "no_such_dir" / "out.flo", random_flow)


# ---------------------------------------------------------------- KITTI png


def test_kitti_round_trip_quantises_to_1_64(tmp_path, random_flow, real_flow):
    for name, flow in (("random.png", random_flow), ("motorcycle.png", real_flow)):
        write_kitti(tmp_path / name, flow)
        read, valid = read_kitti(tmp_path / name)
        np.testing.assert_array_equal(valid, np.isfinite(flow).all(axis=2))
        assert np.isnan(read[~valid]).all()
        error = np.abs(read[valid] - flow[valid])
        assert error.max() <= 1 / 128 + 1e-6
        assert error.max() > 0  # random values are not on the 1/64 grid, so quantisation is visible
        np.testing.assert_array_equal(read[valid] * 64, np.round(read[valid] * 64))


def test_kitti_channel_order_matches_devkit(tmp_path):
    flow = np.array([[[1.0, -2.0], [np.nan, 0.0]]], np.float32)
    write_kitti(tmp_path / "f.png", flow)
    bgr = cv2.imread(str(tmp_path / "f.png"), cv2.IMREAD_UNCHANGED)
    assert bgr.dtype == np.uint16 and bgr.shape == (1, 2, 3)
    r, g, b = bgr[0, 0, 2], bgr[0, 0, 1], bgr[0, 0, 0]
    assert (r, g, b) == (2**15 + 64, 2**15 - 128, 1)  # R = u*64 + 2^15, G = v*64 + 2^15, B = valid
    assert bgr[0, 1, 0] == 0


def test_kitti_explicit_valid_mask_and_clipping(tmp_path):
    flow = np.array([[[3.0, 4.0], [5.0, 6.0], [1000.0, -1000.0]]], np.float32)
    valid = np.array([[True, False, True]])
    write_kitti(tmp_path / "f.png", flow, valid)
    read, read_valid = read_kitti(tmp_path / "f.png")
    np.testing.assert_array_equal(read_valid, valid)
    assert tuple(read[0, 0]) == (3.0, 4.0)
    assert np.isnan(read[0, 1]).all()
    assert read[0, 2, 0] == pytest.approx((2**16 - 1 - 2**15) / 64)  # clipped to the encodable range
    assert read[0, 2, 1] == -512.0


def test_kitti_rejects_other_pngs_and_files(tmp_path, random_flow):
    cv2.imwrite(str(tmp_path / "eight_bit.png"), np.zeros((4, 5, 3), np.uint8))
    rejects(tmp_path / "eight_bit.png", read_kitti, "16-bit")
    cv2.imwrite(str(tmp_path / "gray16.png"), np.zeros((4, 5), np.uint16))
    rejects(tmp_path / "gray16.png", read_kitti, "channel")
    cv2.imwrite(str(tmp_path / "rgba16.png"), np.zeros((4, 5, 4), np.uint16))
    rejects(tmp_path / "rgba16.png", read_kitti, "channel")
    cv2.imwrite(str(tmp_path / "photo.jpg"), np.zeros((4, 5, 3), np.uint8))
    rejects(tmp_path / "photo.jpg", read_kitti, "not a PNG")
    (tmp_path / "empty.png").write_bytes(b"")
    rejects(tmp_path / "empty.png", read_kitti, "empty")
    write_kitti(tmp_path / "good.png", random_flow)
    (tmp_path / "cut.png").write_bytes((tmp_path / "good.png").read_bytes()[:40])
    rejects(tmp_path / "cut.png", read_kitti)
    rejects(tmp_path / "missing.png", read_kitti, "cannot read")


# ---------------------------------------------------------------- .npy


def test_npy_round_trip(tmp_path, random_flow, real_flow):
    for name, flow in (("random.npy", random_flow), ("motorcycle.npy", real_flow)):
        write_npy(tmp_path / name, flow)
        assert_same_flow(read_npy(tmp_path / name), flow)
    np.save(tmp_path / "f64.npy", random_flow.astype(np.float64))
    assert_same_flow(read_npy(tmp_path / "f64.npy"), random_flow)
    np.save(tmp_path / "fortran.npy", np.asfortranarray(random_flow))
    assert_same_flow(read_npy(tmp_path / "fortran.npy"), random_flow)
    assert leftovers(tmp_path, {"random.npy", "motorcycle.npy", "f64.npy", "fortran.npy"}) == []


def test_npy_rejects_wrong_content(tmp_path, random_flow):
    np.save(tmp_path / "ints.npy", np.zeros((3, 4, 2), np.int32))
    rejects(tmp_path / "ints.npy", read_npy, "floating")
    np.save(tmp_path / "three.npy", np.zeros((3, 4, 3), np.float32))
    rejects(tmp_path / "three.npy", read_npy, "H×W×2")
    np.save(tmp_path / "flat.npy", np.zeros(8, np.float32))
    rejects(tmp_path / "flat.npy", read_npy, "H×W×2")
    objects = np.empty((2, 2, 2), dtype=object)
    np.save(tmp_path / "pickled.npy", objects, allow_pickle=True)
    rejects(tmp_path / "pickled.npy", read_npy)
    (tmp_path / "empty.npy").write_bytes(b"")
    rejects(tmp_path / "empty.npy", read_npy, "empty")
    (tmp_path / "text.npy").write_bytes(b"hello, not numpy at all")
    rejects(tmp_path / "text.npy", read_npy, "not a .npy")
    write_npy(tmp_path / "good.npy", random_flow)
    (tmp_path / "cut.npy").write_bytes((tmp_path / "good.npy").read_bytes()[:-8])
    rejects(tmp_path / "cut.npy", read_npy, "truncated")
    rejects(tmp_path / "missing.npy", read_npy, "cannot read")


def test_npy_huge_header_is_rejected_without_allocating(tmp_path):
    for name, shape in (("huge.npy", (2**30, 2**30, 2)), ("plausible.npy", (5000, 5000, 2))):
        path = tmp_path / name
        with open(path, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
            f.write(bytes(64))
        rejects(path, read_npy)
        assert read_with_peak_memory(read_npy, path) < ALLOCATION_LIMIT


# ---------------------------------------------------------------- flow JPEGs


def test_flow_to_uint8_maps_bound_to_byte_range():
    flow = np.array([[[-20.0, 20.0], [0.0, np.nan], [-100.0, 100.0], [10.0, -10.0]]], np.float32)
    x, y = flow_to_uint8(flow, bound=20)
    assert x.dtype == np.uint8 and x.shape == (1, 4)
    assert list(x[0]) == [0, 128, 0, 191]  # 255 * 30 / 40 = 191.25
    assert list(y[0]) == [255, 128, 255, 64]
    x5, _ = flow_to_uint8(flow, bound=5)
    assert x5[0, 3] == 255  # 10 px clips at a bound of 5


def test_flow_jpeg_round_trip_within_quantisation(tmp_path):
    height, width, bound = 48, 64, 20.0
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    flow = np.stack([25 * np.sin(xs / 11), 15 * np.cos(ys / 9)], axis=2).astype(np.float32)
    x_path, y_path = write_flow_jpeg(tmp_path, 1, flow, bound=bound)
    assert (x_path.name, y_path.name) == ("flow_x_00001.jpg", "flow_y_00001.jpg")
    read = read_flow_jpeg(x_path, y_path, bound=bound)
    assert read.shape == flow.shape and read.dtype == np.float32
    expected = np.clip(flow, -bound, bound)
    level = 2 * bound / 255
    error = np.abs(read - expected)
    assert np.median(error) <= level  # rounding (half a level) plus a little JPEG noise
    assert error.max() <= 4 * level
    exact = uint8_to_flow(*flow_to_uint8(flow, bound), bound=bound)
    assert np.abs(exact - expected).max() <= level / 2 + 1e-5
    assert leftovers(tmp_path, {"flow_x_00001.jpg", "flow_y_00001.jpg"}) == []


def test_flow_jpeg_creates_folder_and_rejects_bad_pairs(tmp_path):
    flow = np.zeros((8, 10, 2), np.float32)
    x_path, y_path = write_flow_jpeg(tmp_path / "video" / "a", 12, flow)
    assert x_path == tmp_path / "video" / "a" / "flow_x_00012.jpg" and y_path.exists()
    _, other_y = write_flow_jpeg(tmp_path / "other", 1, np.zeros((6, 10, 2), np.float32))
    with pytest.raises(InputError, match=other_y.name):
        read_flow_jpeg(x_path, other_y)
    (tmp_path / "flow_y_bad.jpg").write_bytes(b"not a jpeg")
    rejects(tmp_path / "flow_y_bad.jpg", lambda p: read_flow_jpeg(x_path, p), "not a readable image")


# ---------------------------------------------------------------- dispatch


def test_read_write_flow_dispatch_by_extension(tmp_path, random_flow):
    pixel_unknown = random_flow.copy()
    pixel_unknown[~np.isfinite(random_flow).all(axis=2)] = np.nan  # one NaN component invalidates the pixel
    write_flow(tmp_path / "a.flo", random_flow)
    assert (tmp_path / "a.flo").read_bytes()[:4] == b"PIEH"
    assert_same_flow(read_flow(tmp_path / "a.flo"), pixel_unknown)
    write_flow(tmp_path / "b.npy", random_flow)
    assert_same_flow(read_flow(tmp_path / "b.npy"), random_flow)
    write_flow(str(tmp_path / "c.PNG"), random_flow)
    assert (tmp_path / "c.PNG").read_bytes()[:4] == b"\x89PNG"
    assert_same_flow(read_flow(tmp_path / "c.PNG"), pixel_unknown, atol=1 / 128)
    for name in ("d.txt", "noext"):
        with pytest.raises(InputError, match=name):
            write_flow(tmp_path / name, random_flow)
        (tmp_path / name).write_bytes(b"x")
        rejects(tmp_path / name, read_flow, "unknown flow file type")


# ---------------------------------------------------------------- declared sizes, FIFOs, bad headers


def patched_png(width: int, height: int, depth16: bool = True) -> bytes:
    """A valid tiny PNG whose IHDR then claims ``width×height`` (CRC fixed): all header, no pixels."""
    import zlib

    image = np.zeros((2, 2, 3), np.uint16 if depth16 else np.uint8)
    data = bytearray(cv2.imencode(".png", image)[1].tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm"])
def test_image_size_reads_the_header_of_every_frame_format(ext):
    from scattermotion.io.checks import image_size

    image = np.random.default_rng(0).integers(0, 256, (23, 37, 3), dtype=np.uint8)
    if ext == ".pgm":
        image = image[:, :, 0]
    encoded = cv2.imencode(ext, image)[1].tobytes()
    assert image_size(encoded) == (37, 23)
    assert image_size(encoded[:6]) is None and image_size(b"GIF89a" + bytes(20)) is None


def test_huge_declared_image_is_rejected_before_decoding(tmp_path, monkeypatch):
    """An 840-byte PNG may declare 12000×12000 (4.5 GB once read as KITTI flow): the header is checked
    against MAX_IMAGE_PIXELS before OpenCV sees the bytes."""
    from scattermotion.data.video import read_image

    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(a) or None)
    (tmp_path / "huge.png").write_bytes(patched_png(12000, 12000))
    (tmp_path / "huge8.png").write_bytes(patched_png(12000, 12000, depth16=False))
    with pytest.raises(InputError, match=r"huge\.png: declares 12000x12000 pixels"):
        read_kitti(tmp_path / "huge.png")
    with pytest.raises(InputError, match=r"huge8\.png: declares 12000x12000 pixels"):
        read_image(tmp_path / "huge8.png")
    assert decoded == []


def test_video_over_the_pixel_limit_is_rejected_and_huge_frames_scale_in_the_decoder(tmp_path, monkeypatch):
    import av

    from scattermotion.data import video as video_module
    from scattermotion.io import checks

    path = tmp_path / "v.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(3):
            frame = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (9, 9), 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    reference = list(video_module.open_video(path, short_side=24).frames())
    monkeypatch.setattr(video_module, "DECODER_SCALE_PIXELS", 1000)  # this clip counts as huge now
    scaled = list(video_module.open_video(path, short_side=24).frames())
    assert [f.shape for f in scaled] == [(24, 32, 3)] * 3
    assert np.abs(np.stack(scaled).astype(int) - np.stack(reference)).mean() < 4  # FFmpeg's area filter
    monkeypatch.setattr(checks, "MAX_IMAGE_PIXELS", 64 * 48 - 1)
    for backend in ("pyav", "opencv"):
        with pytest.raises(InputError, match=r"v\.avi: declares 64x48 pixels"):
            video_module.open_video(path, backend=backend)


def test_readers_refuse_a_fifo_at_once(tmp_path):
    """A FIFO named as input used to block forever (open() waits for a writer)."""
    import os
    import threading

    from scattermotion.data.video import open_video, read_image

    fifo = tmp_path / "pipe.flo"
    os.mkfifo(fifo)
    for reader in (read_flo, read_npy, read_kitti, read_image, open_video):
        errors: list[Exception] = []
        thread = threading.Thread(target=_capture, args=(errors, reader, fifo), daemon=True)
        thread.start()
        thread.join(timeout=10)
        if thread.is_alive():  # release the blocked reader, then fail
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            thread.join(timeout=5)
            pytest.fail(f"{reader.__name__} blocked on a FIFO")
        assert len(errors) == 1 and isinstance(errors[0], InputError), (reader.__name__, errors)
        assert "pipe.flo" in str(errors[0]) and "FIFO" in str(errors[0])


def _capture(errors: list, reader, path) -> None:
    try:
        reader(path)
    except Exception as err:
        errors.append(err)


def test_npy_header_with_an_unclosed_brace_is_one_input_error(tmp_path):
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), "
    header += b" " * (117 - len(header)) + b"\n"
    path = tmp_path / "brace.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + bytes(32))
    with pytest.raises(InputError, match=r"brace\.npy: not a \.npy file"):
        read_npy(path)


@pytest.mark.parametrize("bound", [float("inf"), float("nan"), 0.0, -3.0])
def test_a_flow_bound_is_a_positive_finite_number_everywhere(tmp_path, bound):
    # An infinite bound maps every motion to grey 128: refused by the writer, extract and the action sources.
    from scattermotion.action.sources import SourceSpec
    from scattermotion.extract import ExtractOptions
    from scattermotion.io.flow_jpeg import write_flow_jpeg

    flow = np.zeros((4, 4, 2), np.float32)
    with pytest.raises(InputError, match="bound must be a positive finite number"):
        write_flow_jpeg(tmp_path, 1, flow, bound=bound)
    with pytest.raises(InputError, match="bound must be a positive finite number"):
        SourceSpec("dis", bound=bound)
    with pytest.raises(InputError, match="--bound must be a positive finite number"):
        ExtractOptions(out_dir=tmp_path, bound=bound)
    assert not list(tmp_path.iterdir())
