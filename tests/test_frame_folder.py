"""One frame-folder reader for every verb: plain frame folders, denseflow / mmaction2 rawframes folders
(img_ + flow_x_/flow_y_, img_ + x_/y_), mixed extensions, and flow images numbered from 0 or from 1."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from scattermotion.action.datasets import load_rawframes
from scattermotion.action.sources import make_source, parse_source
from scattermotion.clipsets import resolve_set
from scattermotion.data import frame_folder
from scattermotion.data.clips import scan_videos
from scattermotion.data.frame_cache import FrameCache
from scattermotion.data.frame_folder import list_frames
from scattermotion.data.video import open_video
from scattermotion.errors import InputError
from scattermotion.extract import source_fingerprint
from scattermotion.inputs import expand_inputs, open_source
from scattermotion.io.flow_jpeg import find_flow_images, flow_to_uint8

FRAMES = 6
SIZE = (24, 32)  # H, W


def frame(i: int) -> np.ndarray:
    """Frame i: a horizontal ramp shifted by 2 px per frame, so neighbours differ and are told apart."""
    x = np.arange(SIZE[1])[None, :, None]
    return np.broadcast_to((x * 6 + 20 * i) % 256, (*SIZE, 3)).astype(np.uint8)


def write_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        ok, data = cv2.imencode(Path(name).suffix, frame(i)[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
        assert ok
        (folder / name).write_bytes(data.tobytes())


def write_flow_images(folder: Path, x_prefix: str, y_prefix: str, first: int, count: int, u: float) -> None:
    flow = np.dstack([np.full(SIZE, u), np.full(SIZE, -1.0)]).astype(np.float32)
    x_u8, y_u8 = flow_to_uint8(flow)
    for index in range(first, first + count):
        cv2.imwrite(str(folder / f"{x_prefix}{index:05d}.jpg"), x_u8)
        cv2.imwrite(str(folder / f"{y_prefix}{index:05d}.jpg"), y_u8)


def plain(folder: Path) -> Path:
    """Plain frames with mixed extensions, .webp included, natural order across them."""
    write_frames(folder, ["f1.png", "f2.jpg", "f3.webp", "f4.bmp", "f10.tif", "f11.png"])
    (folder / "notes.txt").write_text("not a frame")
    return folder


def denseflow_rawframes(folder: Path) -> Path:
    """img_ frames beside denseflow's flow_x_/flow_y_ images (1-based), as build_rawframes.py writes."""
    write_frames(folder, [f"img_{i:05d}.jpg" for i in range(1, FRAMES + 1)])
    write_flow_images(folder, "flow_x_", "flow_y_", 1, FRAMES - 1, u=2.0)
    return folder


def mmaction_save_rgb(folder: Path) -> Path:
    """mmaction2 flow_extraction.py --save-rgb: img_, x_, y_ (1-based)."""
    write_frames(folder, [f"img_{i:05d}.jpg" for i in range(1, FRAMES + 1)])
    write_flow_images(folder, "x_", "y_", 1, FRAMES - 1, u=3.0)
    return folder


STYLES = {"plain": plain, "denseflow": denseflow_rawframes, "mmaction2-save-rgb": mmaction_save_rgb}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_reader_sees_the_same_frames(tmp_path, style):
    folder = STYLES[style](tmp_path / "clip")
    listing = list_frames(folder)
    assert len(listing.frames) == FRAMES
    if style == "plain":
        assert [p.name for p in listing.frames] == [
            "f1.png",
            "f2.jpg",
            "f3.webp",
            "f4.bmp",
            "f10.tif",
            "f11.png",
        ]
    else:
        assert [p.name for p in listing.frames] == [f"img_{i:05d}.jpg" for i in range(1, FRAMES + 1)]

    video = open_video(folder)  # evaluate, report, demo and the action sources read through this
    assert video.frame_count == FRAMES
    first = next(video.frames())
    np.testing.assert_allclose(first.astype(float), frame(0), atol=3)  # frame 0 first, JPEG or not
    (item,) = expand_inputs([folder])  # extract and train
    assert item.kind == "frames" and open_source(item).frame_count == FRAMES
    assert source_fingerprint(item)["files"] == FRAMES
    assert scan_videos([folder], detect_cuts=False)[0].frame_count == FRAMES
    assert resolve_set(str(folder), limit=50).pair_count == FRAMES - 1
    assert resolve_set(str(folder), 50, max_side=384).pair_count == FRAMES - 1  # as report calls it
    assert FrameCache(2**20).count(folder) == FRAMES


def test_rawframes_skip_is_said_in_one_line(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(frame_folder, "_reported", set())
    caplog.set_level(logging.WARNING, logger=frame_folder.__name__)
    for name in ("a", "b"):  # two folders of one kind: said once
        open_video(mmaction_save_rgb(tmp_path / name))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "read 6 img_* frames; left out 5 x_*, 5 y_*" in lines[0]
    open_video(plain(tmp_path / "plain"))  # nothing left out: nothing said
    assert len(caplog.records) == 1
    mixed = denseflow_rawframes(tmp_path / "mixed")
    write_frames(mixed, ["poster.png"])
    assert list_frames(mixed).skipped == {"flow_x_*": 5, "flow_y_*": 5, "other images besides img_*": 1}


def test_folder_of_only_flow_images_has_no_frames(tmp_path):
    folder = tmp_path / "flow_only"
    folder.mkdir()
    write_flow_images(folder, "flow_x_", "flow_y_", 1, 3, u=1.0)
    with pytest.raises(InputError, match="holds no frame images"):
        open_video(folder)
    with pytest.raises(InputError, match="holds no videos and no frame images"):
        expand_inputs([folder])


@pytest.mark.parametrize(
    ("x_prefix", "y_prefix", "first"),
    [("flow_x_", "flow_y_", 1), ("flow_x_", "flow_y_", 0), ("x_", "y_", 1), ("x_", "y_", 0)],
    ids=["denseflow-1-based", "denseflow-0-based", "mmaction2-1-based", "mmaction2-0-based"],
)
def test_precomputed_reads_both_naming_styles_and_numberings(tmp_path, x_prefix, y_prefix, first):
    root = tmp_path / "flows"
    for label, name in enumerate(("jump", "run")):
        folder = root / name / "v1"
        write_frames(folder, [f"img_{i:05d}.jpg" for i in range(first, first + FRAMES)])
        write_flow_images(folder, x_prefix, y_prefix, first, FRAMES - 1, u=1.0 + label)
    series = find_flow_images(root / "run" / "v1")
    assert (series.first_index, series.count) == (first, FRAMES - 1)
    assert series.paths(0)[0].name == f"{x_prefix}{first:05d}.jpg"
    videos = load_rawframes(root)
    assert [r.name for r in videos.records] == ["jump/v1", "run/v1"]
    for source in (
        make_source(parse_source(f"precomputed:{root}")),
        make_source(parse_source("precomputed")),
    ):
        record = videos.records[1]
        assert source.count(record) == FRAMES - 1
        maps = source.read(record, [0, FRAMES - 2])
        np.testing.assert_allclose(maps[..., 0], 2.0 / 20.0, atol=0.01)  # run: u = 2 px, bound 20
        np.testing.assert_allclose(maps[..., 1], -1.0 / 20.0, atol=0.01)
    assert make_source(parse_source("rgb")).count(videos.records[1]) == FRAMES


def test_precomputed_without_flow_images_is_one_line(tmp_path):
    folder = tmp_path / "v"
    write_frames(folder, ["img_00001.jpg", "img_00002.jpg"])
    with pytest.raises(InputError, match="no flow_x_.*x_.*images here"):
        find_flow_images(folder)
