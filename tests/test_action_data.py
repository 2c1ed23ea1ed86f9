"""Action recognition data: dataset layouts and split files on tiny fixtures built in exactly those layouts,
TSN segment sampling, the map sources (estimated + cached, pre-extracted, RGB, RGB difference) and the
generated motion benchmark."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from scattermotion.action.datasets import load_hmdb51, load_kinetics, load_rawframes, load_ucf101, load_videos
from scattermotion.action.loader import SnippetDataset, segment_starts, snippet_indices
from scattermotion.action.motionbench import BenchSettings, make_motion_bench
from scattermotion.action.sources import (
    EstimatedFlowSource,
    cache_key,
    make_source,
    parse_source,
)
from scattermotion.data.fetched import EVALUATION_ONLY
from scattermotion.data.video import open_video
from scattermotion.errors import InputError
from scattermotion.extract import DONE_MARKER
from scattermotion.io.flow_jpeg import write_flow_jpeg

SPEED = 2  # px per frame of the fixture videos' texture


pytestmark = pytest.mark.usefixtures("single_thread")


def write_video(path: Path, frames: int = 8, size: int = 32, direction: int = 1, seed: int = 0) -> Path:
    """A textured video moving ``direction * SPEED`` px per frame horizontally (AVI or MP4 by suffix)."""
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(
        rng.integers(0, 256, (size, size + SPEED * frames, 3), dtype=np.uint8), (5, 5), 0
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 2_000_000
        for i in range(frames):
            offset = SPEED * (frames - i) if direction > 0 else SPEED * i
            frame = np.ascontiguousarray(texture[:, offset : offset + size])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ---- layouts -------------------------------------------------------------------------------------------


def make_ucf101(root: Path) -> Path:
    """UCF101 layout with the official lists' case mismatch (HandstandPushups/v_HandStandPushups_...)."""
    classes = ["ApplyEyeMakeup", "Basketball", "HandstandPushups"]
    data = root / "UCF101"
    for name in classes:
        file_class = "HandStandPushups" if name == "HandstandPushups" else name
        for group in (1, 8):
            write_video(data / name / f"v_{file_class}_g{group:02d}_c01.avi", seed=group)
    lists = root / "ucfTrainTestlist"  # beside the data folder, as the official archive unpacks
    lists.mkdir()
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    (lists / "trainlist01.txt").write_text(
        "".join(
            f"{c}/v_{'HandStandPushups' if c == 'HandstandPushups' else c}_g08_c01.avi {i + 1}\r\n"
            for i, c in enumerate(classes)
        )
    )
    (lists / "testlist01.txt").write_text(
        "".join(
            f"{c}/v_{'HandStandPushups' if c == 'HandstandPushups' else c}_g01_c01.avi\n" for c in classes
        )
    )
    return data


def test_ucf101_layout_labels_splits_and_case_mismatch(tmp_path):
    data = make_ucf101(tmp_path)
    train = load_ucf101(data, "train", 1)
    test = load_videos(data, subset="test")  # layout detected from the split folder beside it
    assert test.layout == "ucf101"
    assert train.classes == ["ApplyEyeMakeup", "Basketball", "HandstandPushups"]
    assert [r.label for r in train.records] == [0, 1, 2]
    assert [r.name for r in test.records] == [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01",
        "Basketball/v_Basketball_g01_c01",
        "HandstandPushups/v_HandStandPushups_g01_c01",
    ]
    assert all(r.path.is_file() and "_g08_" in r.path.name for r in train.records)
    assert all("_g01_" in r.path.name for r in test.records)


def test_ucf101_bad_inputs_are_one_line_errors(tmp_path):
    data = make_ucf101(tmp_path)
    with pytest.raises(InputError, match="testlist02.txt: split/list file not found"):
        load_ucf101(data, "test", 2)
    (data / "Basketball" / "v_Basketball_g01_c01.avi").unlink()
    with pytest.raises(InputError, match=r"v_Basketball_g01_c01.avi: listed in .* but missing \(1 of 3"):
        load_ucf101(data, "test")
    skipped = load_ucf101(data, "test", on_missing="skip")
    assert len(skipped) == 2 and skipped.skipped[0].name == "v_Basketball_g01_c01.avi"
    (tmp_path / "ucfTrainTestlist" / "trainlist01.txt").write_text("Basketball/v_Basketball_g08_c01.avi 3\n")
    with pytest.raises(InputError, match="disagrees with classInd"):
        load_ucf101(data, "train")
    with pytest.raises(InputError, match="dataset folder not found"):
        load_ucf101(tmp_path / "nope")
    with pytest.raises(InputError, match="split must be one of"):
        load_ucf101(data, "train", 4)


def test_hmdb51_layout_uses_train_and_test_marks(tmp_path):
    data = tmp_path / "hmdb51"
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    marks = {
        "brush_hair": {"a.avi": "1", "b.avi": "2", "c.avi": "0"},
        "cartwheel": {"d.avi": "2", "e.avi": "1"},
    }
    for name, videos in marks.items():
        for video in videos:
            write_video(data / name / video)
        (splits / f"{name}_test_split1.txt").write_text("".join(f"{v} {m} \n" for v, m in videos.items()))
        (splits / f"{name}_test_split2.txt").write_text("".join(f"{v} 1 \n" for v in videos))
    train = load_hmdb51(data, "train", 1)
    test = load_videos(data, subset="test", split=1)
    assert test.layout == "hmdb51" and train.classes == ["brush_hair", "cartwheel"]
    assert [(r.name, r.label) for r in train.records] == [("brush_hair/a", 0), ("cartwheel/e", 1)]
    assert [(r.name, r.label) for r in test.records] == [("brush_hair/b", 0), ("cartwheel/d", 1)]
    assert len(load_hmdb51(data, "train", 2)) == 5  # the unused mark 0 of split 1 is a train mark in split 2
    (splits / "cartwheel_test_split1.txt").write_text("d.avi train\n")
    with pytest.raises(InputError, match="expected lines 'video.avi 0\\|1\\|2'"):
        load_hmdb51(data, "train", 1)


def test_kinetics_csv_layout(tmp_path):
    data = tmp_path / "kinetics"
    rows = [
        ("abseiling", "aaa", 5, 15, "train"),
        ("air drumming", "bbb", 0, 10, "train"),
        ("abseiling", "ccc", 30, 40, "val"),
        ("air drumming", "ddd", 120, 130, "val"),
    ]
    for label, yid, start, end, split in rows:
        folder = label.replace(" ", "_") if yid == "bbb" else label  # both spellings occur in the wild
        write_video(data / split / folder / f"{yid}_{start:06d}_{end:06d}.mp4")
    csv_file = tmp_path / "kinetics400.csv"
    csv_file.write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        + "".join(f"{label},{yid},{start},{end},{split},0\n" for label, yid, start, end, split in rows)
    )
    train = load_kinetics(data, csv_file, "train")
    val = load_videos(data, subset="val", csv_file=csv_file)
    assert train.classes == val.classes == ["abseiling", "air drumming"]
    assert [(r.name, r.label) for r in train.records] == [
        ("train/abseiling/aaa_000005_000015", 0),
        ("train/air_drumming/bbb_000000_000010", 1),
    ]
    assert [r.label for r in val.records] == [0, 1] and val.layout == "kinetics"
    (data / "val" / "abseiling" / "ccc_000030_000040.mp4").unlink()
    with pytest.raises(InputError, match="ccc_000030_000040.mp4: listed in"):
        load_kinetics(data, csv_file, "val")
    assert len(load_kinetics(data, csv_file, "val", on_missing="skip")) == 1
    with pytest.raises(InputError, match="needs an annotation CSV"):
        load_videos(data, layout="kinetics")


def make_rawframes(root: Path, frames: int = 6) -> Path:
    """denseflow layout: CLASS/VIDEO/img_%05d.jpg + flow_x/flow_y_%05d.jpg; flow u = 1 + class index."""
    for label, name in enumerate(("jump", "run")):
        for video in ("v1", "v2"):
            folder = root / name / video
            folder.mkdir(parents=True)
            for i in range(1, frames + 1):
                cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), np.full((24, 32, 3), 20 * i, np.uint8))
            for i in range(1, frames):
                write_flow_jpeg(
                    folder, i, np.dstack([np.full((24, 32), 1.0 + label), np.full((24, 32), -2.0)])
                )
    return root


def test_rawframes_layout_rgb_and_precomputed_flow(tmp_path):
    root = make_rawframes(tmp_path / "rawframes")
    videos = load_videos(root)
    assert videos.layout == "rawframes" and videos.classes == ["jump", "run"]
    assert [(r.name, r.label, r.kind) for r in videos.records] == [
        ("jump/v1", 0, "frames"), ("jump/v2", 0, "frames"), ("run/v1", 1, "frames"), ("run/v2", 1, "frames"),
    ]  # fmt: skip
    listed = tmp_path / "val_list.txt"
    listed.write_text("run/v2 6 1\njump/v1 6 0\n")
    from_list = load_rawframes(root, listed)
    assert [(r.name, r.label) for r in from_list.records] == [("run/v2", 1), ("jump/v1", 0)]
    assert from_list.classes == ["jump", "run"]

    rgb = make_source(parse_source("rgb"))
    record = videos.records[2]
    assert rgb.count(record) == 6  # flow_x/flow_y images are not frames
    maps = rgb.read(record, [0, 5])
    assert maps.shape == (2, 24, 32, 3) and abs(maps[1].mean() - 120 / 255) < 0.02

    flow = make_source(parse_source("precomputed"))  # the frame folder's own flow images
    assert flow.count(record) == 5
    maps = flow.read(record, [0, 4])
    assert maps.shape == (2, 24, 32, 2)
    np.testing.assert_allclose(maps[..., 0], 2.0 / 20.0, atol=0.01)  # run: u = 2 px, bound 20
    np.testing.assert_allclose(maps[..., 1], -2.0 / 20.0, atol=0.01)
    with pytest.raises(InputError, match="label 1 is out of range"):
        load_rawframes(root, listed, classes=["jump"])


# ---- sampling ------------------------------------------------------------------------------------------


def test_segment_sampling_matches_tsn():
    # 15 maps, 3 segments of 5-map snippets: 11 valid starts, test snippets centred in thirds of them.
    assert segment_starts(15, 3, 5, train=False).tolist() == [1, 5, 9]
    assert segment_starts(16, 1, 1, train=False).tolist() == [8]
    rng = np.random.default_rng(0)
    for _ in range(50):
        starts = segment_starts(15, 3, 5, train=True, rng=rng)
        assert 0 <= starts[0] <= 2 and 3 <= starts[1] <= 5 and 6 <= starts[2] <= 8  # one per third of 0..8
    assert len({tuple(segment_starts(15, 3, 5, True, np.random.default_rng(s))) for s in range(20)}) > 3
    # fewer valid starts than segments: sorted random starts within range
    starts = segment_starts(6, 4, 5, True, np.random.default_rng(1))
    assert starts.tolist() == sorted(starts.tolist()) and starts.max() <= 1
    # too short for one snippet: start at 0, the last map repeats
    assert snippet_indices(segment_starts(3, 2, 5, train=False), 5, 3).tolist() == [[0, 1, 2, 2, 2]] * 2
    with pytest.raises(ValueError):
        segment_starts(0, 3, 5, train=False)


# ---- sources -------------------------------------------------------------------------------------------


def test_estimated_motion_is_cached_once_and_read_back_everywhere(tmp_path):
    data = tmp_path / "videos"
    write_video(data / "right" / "a.mp4", frames=8, size=48, direction=1)
    write_video(data / "left" / "b.mp4", frames=8, size=48, direction=-1, seed=1)
    videos = load_videos(data)
    assert videos.layout == "folders" and videos.classes == ["left", "right"]
    spec = parse_source("dis")
    source = make_source(spec, tmp_path / "cache")
    stats = source.prepare(videos.records)
    assert (stats.clips, stats.pairs, stats.computed, stats.reused) == (2, 14, 2, 0) and stats.seconds > 0
    left, right = videos.records
    centre = (slice(None), slice(12, 36), slice(12, 36))
    u_right = source.read(right, range(7))[centre + (0,)]
    u_left = source.read(left, range(7))[centre + (0,)]
    assert abs(np.median(u_right) - SPEED / 20) < 0.03 and abs(np.median(u_left) + SPEED / 20) < 0.03

    marker = json.loads((tmp_path / "cache" / cache_key(spec) / "right" / "a" / DONE_MARKER).read_text())
    assert marker["pairs"] == 7 and marker["timings"]["model"] > 0
    again = make_source(spec, tmp_path / "cache").prepare(videos.records)  # another seed, another run
    assert (again.computed, again.reused) == (0, 2) and again.seconds == pytest.approx(stats.seconds)

    # The cache is a denseflow folder: readable as a pre-extracted source with the same values.
    pre = make_source(parse_source(f"precomputed:{tmp_path / 'cache' / cache_key(spec)}"))
    np.testing.assert_array_equal(pre.read(right, [0, 6]), source.read(right, [0, 6]))

    os.utime(right.path, ns=(1, 1))  # a changed video is recomputed
    fresh = make_source(spec, tmp_path / "cache").prepare(videos.records)
    assert (fresh.computed, fresh.reused) == (1, 1)
    assert isinstance(source, EstimatedFlowSource)


def test_estimated_motion_is_extracted_by_extracts_streaming_path(tmp_path, monkeypatch):
    from scattermotion.action import sources as sources_module
    from scattermotion.data.video import VideoSource
    from scattermotion.extract import ExtractOptions, is_done, source_fingerprint
    from scattermotion.inputs import InputItem

    data = tmp_path / "videos"
    write_video(data / "right" / "a.mp4", frames=8, size=48, direction=1)
    record = load_videos(data).records[0]
    calls = []
    real_extract_item = sources_module.extract_item

    def spy(item, estimator, options, *args, **kwargs):
        calls.append((item, options))
        return real_extract_item(item, estimator, options, *args, **kwargs)

    def no_whole_videos(self, *args, **kwargs):
        raise AssertionError("motion extraction must stream, not load whole videos")

    monkeypatch.setattr(sources_module, "extract_item", spy)
    monkeypatch.setattr(VideoSource, "read_all", no_whole_videos)
    spec = parse_source("dis", short_side=32)
    source = make_source(spec, tmp_path / "cache")
    assert source.count(record) == 7 and len(calls) == 1
    item, options = calls[0]
    assert item == InputItem(record.path, "video", item.rel) and str(item.rel) == "right/a"
    assert (options.format, options.method, options.short_side, options.bound) == ("jpg", "dis", 32, 20.0)
    # The cache entry is what `scattermotion extract` writes, with its done marker: extract skips it.
    cache = tmp_path / "cache" / cache_key(spec)
    assert is_done(cache / "right" / "a", ExtractOptions(cache, method="dis", short_side=32).settings(),
                   source_fingerprint(item))  # fmt: skip
    assert source.read(record, [0]).shape == (1, 32, 32, 2)
    assert make_source(spec, tmp_path / "cache").count(record) == 7 and len(calls) == 1  # reused
    # One frame cache: the frame sources and the training clips share FrameCache.
    from scattermotion.data.frame_cache import FrameCache

    assert isinstance(make_source(parse_source("rgb")).frames, FrameCache)
    assert isinstance(make_source(parse_source("rgbdiff")).frames, FrameCache)


def test_frame_cache_is_bounded_and_reads_past_the_end_as_the_last_frame(tmp_path):
    from scattermotion.data.frame_cache import ByteLRU, FrameCache

    lru = ByteLRU(100)
    for key in range(5):
        lru.put(key, np.zeros(40, np.uint8))
    assert lru.nbytes == 80 and len(lru) == 2 and lru.get(0) is None and lru.get(4) is not None
    data = tmp_path / "videos"
    video = write_video(data / "a" / "x.mp4", frames=8, size=32)
    frames = np.stack(list(open_video(video).frames()))
    cache = FrameCache(frames.nbytes)
    got = cache.read(video, [7, 20, 0])
    np.testing.assert_array_equal(np.stack(got), frames[[7, 7, 0]])
    assert cache.cached_videos == 1 and cache.cached_bytes == frames.nbytes and cache.streamed_reads == 0
    np.testing.assert_array_equal(cache.clip(video, 6, 3, 1), frames[5:8])  # moved back to fit
    small = FrameCache(frames.nbytes - 1)  # too large to keep: streamed, same frames
    np.testing.assert_array_equal(np.stack(small.read(video, [3, 1])), frames[[3, 1]])
    assert small.cached_bytes == 0 and small.streamed_reads == 1
    with pytest.raises(InputError, match="too few for a 9-frame clip"):
        small.clip(video, 0, 9, 1)


def test_rgb_difference_and_snippet_stacks(tmp_path):
    data = tmp_path / "videos"
    write_video(data / "a" / "x.mp4", frames=8, size=32)
    write_video(data / "b" / "y.mp4", frames=8, size=32, seed=3)
    videos = load_videos(data)
    record = videos.records[0]
    diff = make_source(parse_source("rgbdiff"))
    assert diff.count(record) == 7
    frames = np.stack(list(open_video(record.path).frames())).astype(np.float32) / 255
    np.testing.assert_allclose(diff.read(record, [2])[0], frames[3] - frames[2], atol=1e-6)

    dataset = SnippetDataset(videos.records, diff, num_segments=3, length=2, train=False, crop=24)
    item, label = dataset[1]
    assert item.shape == (3, 2 * 3, 24, 24) and label == 1
    assert dataset.indices(1).tolist() == [[1, 2], [3, 4], [5, 6]]
    # channel order: map-major (map 0 RGB, then map 1 RGB), centre crop
    expected = diff.read(videos.records[1], [1, 2])[:, 4:28, 4:28].transpose(0, 3, 1, 2).reshape(6, 24, 24)
    np.testing.assert_allclose(item[0].numpy(), expected, atol=1e-6)
    train = SnippetDataset(videos.records, diff, 3, 2, train=True, crop=24, seed=5)
    first = train[0][0]
    assert torch.equal(first, train[0][0])  # a function of (seed, epoch, index)
    train.set_epoch(1)
    assert not torch.equal(first, train[0][0])
    with pytest.raises(InputError, match="crop 40 is larger than the 32x32 frames"):
        SnippetDataset(videos.records, diff, 3, 2, train=False, crop=40)[0]
    with pytest.raises(InputError, match="unknown source 'flownet'"):
        parse_source("flownet")
    with pytest.raises(InputError, match="only precomputed takes a folder"):
        parse_source("dis:/tmp")


def test_ours_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    import scattermotion.estimator as estimator

    monkeypatch.setattr(estimator, "DEFAULT_WEIGHTS", tmp_path / "none.safetensors")
    with pytest.raises(InputError, match="weights file not found"):
        cache_key(parse_source("ours"))
    with pytest.raises(InputError, match="weights file not found"):
        cache_key(parse_source("ours", weights=tmp_path / "missing.safetensors"))


# ---- the generated benchmark ---------------------------------------------------------------------------

TINY = BenchSettings(
    per_class=2, test_per_class=1, frames=6, width=32, height=32, seed=3,
    classes=("pan-left", "zoom-in", "object-crossing-right-to-left"),
)  # fmt: skip


def test_motion_bench_layout_disjoint_footage_determinism(tmp_path):
    first = make_motion_bench(tmp_path / "a", TINY)
    assert first.built and first.clips == 9
    train, test = load_ucf101(first.path, "train"), load_ucf101(first.path, "test")
    assert train.classes == list(TINY.classes) and len(train) == 6 and len(test) == 3
    assert [r.label for r in train.records] == [0, 0, 1, 1, 2, 2]
    clips = first.manifest["clips"]
    train_sources = {c["source"] for c in clips if c["split"] == "train"}
    test_sources = {c["source"] for c in clips if c["split"] == "test"}
    assert train_sources and test_sources and not train_sources & test_sources
    groups = {c["split"]: set() for c in clips}
    for c in clips:
        groups[c["split"]].add(c["group"])
    assert not groups["train"] & groups["test"]
    assert not any(tag in c["source"].lower() for c in clips for tag in EVALUATION_ONLY)
    video = open_video(train.records[0].path)
    assert (video.width, video.height, video.frame_count) == (32, 32, 6)

    again = make_motion_bench(tmp_path / "a", TINY)  # idempotent
    assert not again.built and again.clips == 9
    other = make_motion_bench(tmp_path / "b", TINY)  # deterministic
    for record in train.records + test.records:
        rel = record.path.relative_to(first.path)
        a = np.stack(list(open_video(record.path).frames()))
        b = np.stack(list(open_video(other.path / rel).frames()))
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="other settings"):
        make_motion_bench(tmp_path / "a", BenchSettings(per_class=1, test_per_class=1, frames=6, width=32,
                                                        height=32, classes=TINY.classes))  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
    with pytest.raises(InputError, match="classes must be two or more"):
        BenchSettings(classes=("static", "spin"))
