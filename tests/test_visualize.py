"""Middlebury colour coding, sequence normalisation, image helpers and the MP4 writer."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from scattermotion.data.fetched import ensure_data, real_video, stereo_pair
from scattermotion.errors import InputError
from scattermotion.io import (
    Mp4Writer,
    color_wheel_legend,
    flow_to_color,
    make_strip,
    sequence_max_flow,
    side_by_side,
    write_png,
)
from scattermotion.io.visualize import COLOR_WHEEL, WHEEL_SEGMENTS


def one_pixel(u: float, v: float, max_flow: float | None = None) -> np.ndarray:
    return flow_to_color(np.array([[[u, v]]], np.float32), max_flow)[0, 0].astype(int)


def decode_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def real_frames() -> list[np.ndarray]:
    """Eight real frames (176×144) of the carphone sequence."""
    path = real_video("carphone", ensure_data())
    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 8:
                return frames
    raise AssertionError("carphone has fewer than 8 frames")


# ---------------------------------------------------------------- colour wheel


def test_wheel_has_55_colours_in_middlebury_order():
    assert [n for _, n, *_ in WHEEL_SEGMENTS] == [15, 6, 4, 11, 13, 6]
    assert COLOR_WHEEL.shape == (55, 3)
    starts = {0: (255, 0, 0), 15: (255, 255, 0), 21: (0, 255, 0), 25: (0, 255, 255), 36: (0, 0, 255)}
    for index, colour in starts.items():
        assert tuple(COLOR_WHEEL[index]) == colour
    assert tuple(COLOR_WHEEL[49]) == (255, 0, 255)
    assert tuple(COLOR_WHEEL[7]) == (255, 119, 0)  # floor(255 * 7 / 15), the reference's integer steps


def test_zero_flow_is_white_and_unknown_is_black():
    flow = np.zeros((3, 4, 2), np.float32)
    flow[1, 2] = (np.nan, 0.0)
    flow[2, 3] = (4.0, 0.0)
    rgb = flow_to_color(flow)
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 4, 3)
    assert (rgb[0, 0] == 255).all()
    assert (rgb[1, 2] == 0).all()
    assert tuple(rgb[2, 3]) == (255, 0, 0)


def test_directions_map_to_middlebury_hues():
    right, down, left, up = one_pixel(1, 0), one_pixel(0, 1), one_pixel(-1, 0), one_pixel(0, -1)
    assert tuple(right) == (255, 0, 0)  # u > 0: red
    assert right[0] == 255 and down[1] > 200 and down[2] == 0  # v > 0 (down): yellow-orange
    assert left[0] == 0 and left[1] > 150 and left[2] == 255  # u < 0: cyan-blue
    assert up[2] == 255 and up[0] < 128 and up[1] == 0  # v < 0 (up): blue-violet
    between = one_pixel(1, 1)  # down-right: between red and yellow, so green is partly up
    assert between[0] == 255 and 0 < between[1] < down[1] and between[2] == 0


def test_saturation_grows_with_magnitude_and_saturates_dark():
    pale, full, beyond = one_pixel(1, 0, max_flow=2), one_pixel(2, 0, max_flow=2), one_pixel(4, 0, max_flow=2)
    assert tuple(pale) == (255, 127, 127)
    assert tuple(full) == (255, 0, 0)
    assert tuple(beyond) == (191, 0, 0)  # out of range: 0.75 brightness, as Middlebury's colorcode.cpp
    rng = np.random.default_rng(1)
    flow = rng.normal(size=(9, 11, 2)).astype(np.float32)
    np.testing.assert_array_equal(flow_to_color(flow), flow_to_color(flow * 10))  # own max by default


def test_real_leftward_motion_is_cyan_side():
    """The motorcycle stereo ground truth is pure leftward motion (-disparity, 0)."""
    _, _, disparity_file = stereo_pair("motorcycle", ensure_data())
    disparity = np.load(disparity_file)["arr_0"][::4, ::4]
    flow = np.stack([-disparity, np.zeros_like(disparity)], axis=2).astype(np.float32)
    flow[~np.isfinite(disparity)] = np.nan
    rgb = flow_to_color(flow).astype(int)
    known = np.isfinite(disparity)
    assert (rgb[~known] == 0).all()
    r, g, b = rgb[known].T
    assert (r <= g).all() and (g <= b).all()
    assert b.min() == 255 and r.min() == 0  # the largest disparity reaches the fully saturated colour


# ---------------------------------------------------------------- sequence normalisation


def test_sequence_max_flow_is_robust_and_ignores_nan():
    ramp = np.linspace(0, 10, 1000, dtype=np.float32).reshape(10, 100)
    flows = [np.stack([ramp, np.zeros_like(ramp)], axis=2) for _ in range(3)]
    flows[1][0, 0] = (1e6, 0.0)  # one wild pixel
    flows[2][0, :5] = np.nan
    radius = sequence_max_flow(flows)
    assert 9.8 <= radius <= 10.0
    assert sequence_max_flow(np.stack(flows), percentile=100) == pytest.approx(1e6)
    assert sequence_max_flow([np.full((4, 4, 2), np.nan, np.float32)]) == 0.0
    big = np.zeros((1000, 1000, 2), np.float32)
    big[:, :, 1] = np.linspace(-5, 5, 1000)[None, :]
    assert sequence_max_flow([big]) == pytest.approx(4.95, abs=0.02)  # strided sampling still representative


def test_legend_centre_white_rim_coloured_outside_white():
    legend = color_wheel_legend(65)
    assert legend.shape == (65, 65, 3) and legend.dtype == np.uint8
    assert (legend[32, 32] == 255).all()
    assert tuple(legend[32, 64]) == (255, 0, 0)  # right edge: u = 1
    assert (legend[0, 0] == 255).all() and (legend[64, 64] == 255).all()
    np.testing.assert_array_equal(legend[32, 48], one_pixel(0.5, 0, max_flow=1))


# ---------------------------------------------------------------- image helpers


def test_write_png_stores_rgb(tmp_path, real_frames):
    frame = real_frames[0]
    write_png(tmp_path / "frame.png", frame)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "frame.png"))[:, :, ::-1], frame)
    write_png(tmp_path / "gray.png", frame[:, :, 1])
    assert cv2.imread(str(tmp_path / "gray.png")).shape == frame.shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.png", "gray.png"]
    with pytest.raises(InputError, match="uint8"):
        write_png(tmp_path / "float.png", frame.astype(np.float32))


def test_make_strip_places_tiles_with_gaps():
    a = np.full((4, 3, 3), 10, np.uint8)
    b = np.full((2, 5), 20, np.uint8)
    strip = make_strip([a, b], gap=2, gap_value=0)
    assert strip.shape == (4, 3 + 2 + 5, 3)
    assert (strip[:, :3] == 10).all() and (strip[:, 3:5] == 0).all()
    assert (strip[:2, 5:] == 20).all() and (strip[2:, 5:] == 0).all()  # shorter tile padded below
    assert side_by_side(a, a).shape == (4, 3 + 3, 3)
    assert side_by_side(a, a, gap=1).shape == (4, 3 + 1 + 3, 3)


def test_make_strip_grid_with_columns():
    tiles = [np.full((4, 3), 10 * (i + 1), np.uint8) for i in range(5)]
    grid = make_strip(tiles, gap=1, gap_value=0, columns=2)
    assert grid.shape == (3 * 4 + 2, 2 * 3 + 1, 3)  # rows: (1, 2), (3, 4), (5)
    assert (grid[:4, :3] == 10).all() and (grid[:4, 4:] == 20).all()
    assert (grid[5:9, :3] == 30).all() and (grid[5:9, 4:] == 40).all()
    assert (grid[10:, :3] == 50).all() and (grid[10:, 4:] == 0).all()  # short last row padded
    assert (grid[4] == 0).all() and (grid[:, 3] == 0).all()
    np.testing.assert_array_equal(make_strip(tiles[:2], columns=5), make_strip(tiles[:2]))


# ---------------------------------------------------------------- MP4


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_mp4_writer_round_trip_on_real_frames(tmp_path, real_frames, codec):
    # Image gradients of the real frames stand in for motion: a dense, textured two-channel field.
    flows = [np.stack(np.gradient(f[:, :, 1].astype(np.float32))[::-1], axis=2) for f in real_frames]
    radius = sequence_max_flow(flows)
    pairs = zip(real_frames, flows, strict=True)
    strips = [side_by_side(frame, flow_to_color(flow, radius)) for frame, flow in pairs]
    height, width = strips[0].shape[:2]
    path = tmp_path / "demo.mp4"
    with Mp4Writer(path, fps=12.5, width=width, height=height, codec=codec) as video:
        for strip in strips:
            video.write(strip)
    decoded = decode_video(path)
    assert len(decoded) == len(strips)
    assert decoded[0].shape == (height, width, 3)
    error = np.abs(decoded[3].astype(int) - strips[3].astype(int)).mean()
    assert error < 12, error
    assert [p.name for p in tmp_path.iterdir()] == ["demo.mp4"]


def test_mp4_writer_pads_odd_sizes_and_cleans_up_on_error(tmp_path):
    frames = [np.full((21, 33, 3), 40 * i, np.uint8) for i in range(5)]
    with Mp4Writer(tmp_path / "odd.mp4", fps=25, width=33, height=21) as video:
        for frame in frames:
            video.write(frame)
    decoded = decode_video(tmp_path / "odd.mp4")
    assert len(decoded) == 5 and decoded[0].shape == (22, 34, 3)
    means = [d.mean() for d in decoded]
    np.testing.assert_allclose(means, [0, 40, 80, 120, 160], atol=2)  # limited-range YUV rounding
    with pytest.raises(ValueError, match="33×21"), Mp4Writer(tmp_path / "bad.mp4", 25, 33, 21) as video:
        video.write(frames[0])
        video.write(np.zeros((20, 33, 3), np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["odd.mp4"]
