"""Dataset-scale extraction: INPUT expansion, output layout and counts, bad items in a batch, resuming after
an interruption, sharding, streaming on a long video, process workers, and the ``flow`` / ``extract`` verbs.

Most runs use DIS (fast); the network runs with random weights (speed and plumbing only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from scattermotion import extract as extract_module
from scattermotion.cli import app
from scattermotion.data.fetched import ensure_data, frame_pairs, real_video
from scattermotion.data.video import open_video
from scattermotion.errors import InputError
from scattermotion.estimator import get_estimator
from scattermotion.extract import DONE_MARKER, ExtractOptions, done_marker, extract
from scattermotion.inputs import expand_inputs, parse_shard, shard_from_env, shard_items
from scattermotion.io import read_flo, read_flow, read_flow_jpeg
from scattermotion.model import build_motion_net, save_weights


@pytest.fixture(scope="module", autouse=True)
def _setup():
    ensure_data()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: more threads only wait on each other
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random_small.safetensors"
    save_weights(build_motion_net("small"), path)
    return path


def write_video(path: Path, count: int, size: tuple[int, int] = (48, 32), seed: int = 0) -> Path:
    """A synthetic MPEG-4 video of a random texture moving right by 1 px per frame."""
    width, height = size
    rng = np.random.default_rng(seed)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (height, width + count, 3), dtype=np.uint8), (5, 5), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(count):
            frame = np.ascontiguousarray(texture[:, count - i : count - i + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def flow_files(root: Path) -> dict[str, bytes]:
    """Every output file under ``root`` (done markers excluded: they hold timings) by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(DONE_MARKER)
    }


def done_markers(root: Path) -> dict[str, dict]:
    return {p.parent.relative_to(root).as_posix(): json.loads(p.read_text()) for p in root.rglob(DONE_MARKER)}


def options(out: Path, **kwargs) -> ExtractOptions:
    kwargs.setdefault("method", "dis")
    kwargs.setdefault("progress", False)
    return ExtractOptions(out_dir=out, **kwargs)


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A UCF101-like folder: two classes of short synthetic videos."""
    root = tmp_path / "videos"
    write_video(root / "Jump" / "v_Jump_g01_c01.avi", 5, seed=1)
    write_video(root / "Jump" / "v_Jump_g02_c01.avi", 4, seed=2)
    write_video(root / "Run" / "v_Run_g01_c01.mp4", 6, seed=3)
    write_video(root / "Run" / "v_Run_g02_c01.mkv", 3, seed=4)
    return root


# ---- INPUT expansion and sharding -------------------------------------------------------------------------


def test_expand_inputs_folders_frame_folders_and_lists(dataset, tmp_path):
    frames = tmp_path / "frames" / "Wave" / "clip7"
    frames.mkdir(parents=True)
    for i in (1, 2, 10):
        cv2.imwrite(str(frames / f"img_{i}.jpg"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(frames / "flow_x_00001.jpg"), np.zeros((8, 8), np.uint8))  # ignored: an old output
    listing = tmp_path / "trainlist.txt"
    listing.write_text("# split\nJump/v_Jump_g01_c01.avi 1\n\nRun/v_Run_g02_c01.mkv 2\n")

    items = expand_inputs([dataset, tmp_path / "frames", tmp_path / "missing.mp4"])
    assert [str(i.rel) for i in items] == [
        "Jump/v_Jump_g01_c01",
        "Jump/v_Jump_g02_c01",
        "Run/v_Run_g01_c01",
        "Run/v_Run_g02_c01",
        "Wave/clip7",
        "missing",
    ]
    assert items[4].kind == "frames" and items[5].kind == "video"
    source = open_video(frames)
    assert [p.name for p in source.files] == ["img_1.jpg", "img_2.jpg", "img_10.jpg"]

    listed = expand_inputs([listing], list_root=dataset)
    assert [(str(i.rel), i.source) for i in listed] == [
        ("Jump/v_Jump_g01_c01", dataset / "Jump" / "v_Jump_g01_c01.avi"),
        ("Run/v_Run_g02_c01", dataset / "Run" / "v_Run_g02_c01.mkv"),
    ]
    with pytest.raises(InputError, match="same output folder"):
        expand_inputs([dataset / "Jump" / "v_Jump_g01_c01.avi", tmp_path / "other" / "v_Jump_g01_c01.mp4"])


def test_shards_are_disjoint_and_cover_the_list(dataset):
    items = expand_inputs([dataset])
    shards = [shard_items(items, i, 3) for i in range(3)]
    flat = [item for shard in shards for item in shard]
    assert sorted(map(str, (i.rel for i in flat))) == sorted(map(str, (i.rel for i in items)))
    assert len(flat) == len(set(flat))
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "1", "-1/2", "a/b"):
        with pytest.raises(InputError):
            parse_shard(bad)
    assert shard_from_env({"RANK": "1", "WORLD_SIZE": "2"}) == (1, 2)
    assert shard_from_env({}) is None


# ---- layout, counts, values -------------------------------------------------------------------------------


def test_real_clip_jpg_layout_counts_and_values(tmp_path):
    video = real_video("carphone")
    summary = extract([video], options(tmp_path / "out", format="jpg", short_side=64, max_frames=8))
    assert summary.exit_code == 0 and [r.status for r in summary.results] == ["done"]
    folder = tmp_path / "out" / "carphone_pristine"
    names = sorted(p.name for p in folder.iterdir())
    expected = [f"flow_{c}_{i:05d}.jpg" for c in "xy" for i in range(1, 8)]
    assert names == sorted([DONE_MARKER, *expected])
    marker = json.loads((folder / DONE_MARKER).read_text())
    assert (marker["frames"], marker["pairs"], marker["files"]) == (8, 7, 14)

    # The JPEGs hold DIS motion of the resized frames, clipped at ±20 and quantised (0.16 px per level).
    frames = [f for _, f in zip(range(8), open_video(video, short_side=64).frames(), strict=False)]
    assert frames[0].shape[:2] == (64, 78)
    reference = get_estimator("dis").estimate_clip(frames)
    for k in range(7):
        back = read_flow_jpeg(folder / f"flow_x_{k + 1:05d}.jpg", folder / f"flow_y_{k + 1:05d}.jpg")
        assert back.shape == (64, 78, 2)
        assert np.abs(back - np.clip(reference[k], -20, 20)).mean() < 0.25


def test_ours_with_random_weights_class_folders_step_and_flo(dataset, tmp_path, random_weights):
    out = tmp_path / "out"
    summary = extract([dataset], options(out, method="ours", weights=random_weights, format="flo", step=2))
    assert summary.exit_code == 0
    # N frames sampled every 2nd: ceil(N / 2) frames, one fewer motion maps.
    counts = {
        "Jump/v_Jump_g01_c01": 2,
        "Jump/v_Jump_g02_c01": 1,
        "Run/v_Run_g01_c01": 2,
        "Run/v_Run_g02_c01": 1,
    }
    for rel, pairs in counts.items():
        assert sorted(p.name for p in (out / rel).glob("flow_*")) == [
            f"flow_{i:05d}.flo" for i in range(1, pairs + 1)
        ]
    est = get_estimator("ours", weights=random_weights)
    frames = list(open_video(dataset / "Jump" / "v_Jump_g01_c01.avi").frames(step=2))
    expected = est.estimate_clip(frames)
    for k in range(2):
        np.testing.assert_allclose(
            read_flo(out / "Jump/v_Jump_g01_c01" / f"flow_{k + 1:05d}.flo"), expected[k], atol=1e-5
        )


@pytest.mark.parametrize("fmt, suffix", [("kitti", ".png"), ("npy", ".npy"), ("viz", ".png")])
def test_other_formats(dataset, tmp_path, fmt, suffix):
    out = tmp_path / "out"
    summary = extract([dataset / "Run" / "v_Run_g02_c01.mkv"], options(out, format=fmt))
    assert summary.exit_code == 0
    files = sorted((out / "v_Run_g02_c01").glob("flow_*"))
    assert [p.name for p in files] == [f"flow_{i:05d}{suffix}" for i in (1, 2)]
    if fmt == "viz":
        image = cv2.imread(str(files[0]))
        assert image.shape == (32, 48, 3) and image.dtype == np.uint8
    else:
        assert read_flow(files[0]).shape == (32, 48, 2)


# ---- robustness -------------------------------------------------------------------------------------------


def test_bad_items_are_reported_and_the_rest_finish(dataset, tmp_path):
    corrupt = tmp_path / "bad" / "corrupt.mp4"
    corrupt.parent.mkdir()
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    one_frame = write_video(tmp_path / "bad" / "single.avi", 1)
    missing = tmp_path / "bad" / "missing.avi"
    good = dataset / "Jump" / "v_Jump_g01_c01.avi"
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "extract",
            str(corrupt),
            str(missing),
            str(good),
            str(one_frame),
            "--out",
            str(out),
            "--method",
            "dis",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "1 extracted" in result.stdout and "3 failed" in result.stdout
    failures = result.stdout.split("failed:\n", 1)[1].splitlines()
    assert len(failures) == 3
    assert any("missing.avi" in line for line in failures)
    assert any("corrupt.mp4" in line for line in failures)
    assert any("single.avi" in line and "has 1 frame;" in line for line in failures)
    assert result.stderr.count("failed: ") == 3  # each failure is also logged when it happens
    assert (out / "v_Jump_g01_c01" / DONE_MARKER).exists()
    for name in ("corrupt", "missing", "single"):  # failed items leave no outputs behind
        assert not list((out / name).glob("*")) if (out / name).is_dir() else not (out / name).exists()


def test_interrupted_run_resumes_and_matches_a_clean_run(dataset, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    assert extract([dataset], options(clean)).exit_code == 0

    out = tmp_path / "out"
    real_writer = extract_module.output_writer
    written = 0

    def interrupting_writer(fmt, bound):
        write = real_writer(fmt, bound)

        def write_then_maybe_stop(folder, index, flow):
            nonlocal written
            if written == 6:  # 4 pairs of the first video, then 2 of the second: stop mid-video
                raise KeyboardInterrupt
            written += 1
            return write(folder, index, flow)

        return write_then_maybe_stop

    monkeypatch.setattr(extract_module, "output_writer", interrupting_writer)
    with pytest.raises(KeyboardInterrupt):
        extract([dataset], options(out))
    monkeypatch.setattr(extract_module, "output_writer", real_writer)
    assert set(done_markers(out)) == {"Jump/v_Jump_g01_c01"}
    partial = out / "Jump" / "v_Jump_g02_c01"
    assert len(list(partial.glob("flow_*"))) == 4  # 2 pairs written, no marker
    assert not [p for p in out.rglob(".*tmp*")]  # atomic writes leave no temporaries behind
    # Leftovers of another crash: a stale output, a temporary file; and a user file that must survive.
    (partial / "flow_x_00099.jpg").write_bytes(b"stale")
    (partial / ".flow_y_00002.0123abcd.tmp.jpg").write_bytes(b"half")
    (partial / "notes.txt").write_text("keep me")

    summary = extract([dataset], options(out))
    assert [r.status for r in summary.results] == ["skipped", "done", "done", "done"]
    assert (partial / "notes.txt").read_text() == "keep me"
    (partial / "notes.txt").unlink()
    assert flow_files(out) == flow_files(clean)
    assert set(done_markers(out)) == set(done_markers(clean))

    # A marker for other settings does not count as done; a deleted output file does not either.
    (out / "Run" / "v_Run_g01_c01" / "flow_y_00003.jpg").unlink()
    summary = extract([dataset], options(out, bound=10.0))
    assert [r.status for r in summary.results] == ["done"] * 4
    summary = extract([dataset], options(out, bound=10.0))
    assert [r.status for r in summary.results] == ["skipped"] * 4


def test_shard_union_equals_full_run(dataset, tmp_path, monkeypatch):
    full, sharded = tmp_path / "full", tmp_path / "sharded"
    extract([dataset], options(full))
    first = extract([dataset], options(sharded, shard=(0, 2)))
    monkeypatch.setenv("RANK", "1")  # the second shard comes from the torchrun environment
    monkeypatch.setenv("WORLD_SIZE", "2")
    second = extract([dataset], options(sharded))
    assert second.shard == (1, 2)
    assert len(first.results) == len(second.results) == 2
    assert not {r.item for r in first.results} & {r.item for r in second.results}
    assert flow_files(sharded) == flow_files(full)
    assert len(flow_files(full)) == 2 * (4 + 3 + 5 + 2)
    assert set(done_markers(sharded)) == set(done_markers(full))


def test_long_video_streams_with_bounded_lookahead(tmp_path, monkeypatch, random_weights):
    """300 frames through the network: every pair gets one output and frames are read only as needed."""
    video = write_video(tmp_path / "long.mp4", 300, size=(32, 32))
    pulled = 0
    lookahead = []
    real_open = extract_module.open_source

    class CountingSource:
        def __init__(self, source):
            self.source, self.frame_count = source, source.frame_count

        def frames(self, start=0, step=1):
            nonlocal pulled
            for frame in self.source.frames(start=start, step=step):
                pulled += 1
                yield frame

    monkeypatch.setattr(extract_module, "open_source", lambda *a, **k: CountingSource(real_open(*a, **k)))
    real_writer = extract_module.output_writer

    def watching_writer(fmt, bound):
        write = real_writer(fmt, bound)

        def record(folder, index, flow):
            lookahead.append(pulled - index)
            return write(folder, index, flow)

        return record

    monkeypatch.setattr(extract_module, "output_writer", watching_writer)
    opts = options(tmp_path / "out", method="ours", weights=random_weights, batch_size=1)
    summary_prefetch = opts.prefetch
    summary = extract([video], opts)
    assert summary.exit_code == 0 and summary.results[0].pairs == 299
    assert len(list((tmp_path / "out" / "long").glob("flow_x_*.jpg"))) == 299
    # Ahead of the writer: at most one T=4 window, the prefetch queue and the frame waiting to enter it.
    assert pulled == 300 and max(lookahead) <= 4 + summary_prefetch + 1
    timings = summary.results[0].timings
    assert set(timings) == {"decode", "model", "write"} and all(v >= 0 for v in timings.values())


def test_prefetch_keeps_order_raises_errors_and_stops_early():
    assert list(extract_module.prefetch(iter(range(50)), 3)) == list(range(50))

    def failing():
        yield 1
        raise InputError("clip.mp4", "decoding failed after 1 frames")

    stream = extract_module.prefetch(failing(), 4)
    assert next(stream) == 1
    with pytest.raises(InputError, match="decoding failed"):
        next(stream)

    closed = []

    def endless():
        try:
            i = 0
            while True:
                i += 1
                yield i
        finally:
            closed.append(True)

    stream = extract_module.prefetch(endless(), 2)
    assert [next(stream) for _ in range(5)] == [1, 2, 3, 4, 5]
    stream.close()  # stops the thread and closes the source
    assert closed == [True]


def test_workers_processes_give_the_same_outputs(dataset, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    extract([dataset], options(one))
    summary = extract([dataset], options(two, workers=2))
    assert [r.status for r in summary.results] == ["done"] * 4
    assert flow_files(two) == flow_files(one)


# ---- the flow verb ----------------------------------------------------------------------------------------


def test_flow_verb_writes_each_format_and_viz(tmp_path, random_weights):
    a, b = frame_pairs()["RubberWhale"]
    small = []
    for src in (a, b):
        image = cv2.resize(cv2.imread(str(src)), (96, 64), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(tmp_path / src.name), image)
        small.append(tmp_path / src.name)
    runner = CliRunner()
    for name in ("out.flo", "out.png", "out.npy"):
        result = runner.invoke(app, ["flow", *map(str, small), "-o", str(tmp_path / name), "--method", "dis"])
        assert result.exit_code == 0, result.output
        assert read_flow(tmp_path / name).shape == (64, 96, 2)
    result = runner.invoke(
        app,
        [
            "flow",
            *map(str, small),
            "-o",
            str(tmp_path / "ours.flo"),
            "--weights",
            str(random_weights),
            "--viz",
            str(tmp_path / "v.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert read_flo(tmp_path / "ours.flo").shape == (64, 96, 2)
    assert cv2.imread(str(tmp_path / "v.png")).shape == (64, 96, 3)


def test_flow_verb_bad_input_is_one_line(tmp_path):
    a, _ = frame_pairs()["RubberWhale"]
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), np.zeros((10, 10, 3), np.uint8))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scattermotion.cli",
            "flow",
            str(a),
            str(other),
            "-o",
            str(tmp_path / "x.flo"),
            "--method",
            "dis",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip().count("\n") == 0
        and "differs from" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert not (tmp_path / "x.flo").exists()


# ---- hostile and unlucky input (issue 14) ----------------------------------------------------------------


def test_list_entries_never_write_or_delete_outside_out(tmp_path):
    """A relative entry's path used to become the output folder: ``../UCF/c/a1.mp4`` wrote next to the
    video, and a hostile list deleted flow files of a folder outside --out."""
    write_video(tmp_path / "UCF" / "c" / "a1.mp4", 3)
    write_video(tmp_path / "UCF" / "c" / "my clip.mp4", 3, seed=5)
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("flow_x_00001.jpg", ".done"):
        (victim / name).write_bytes(b"precious")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "flow_x_00001.jpg").write_bytes(b"precious")
    out = tmp_path / "flows"
    out.mkdir()
    (out / "link").symlink_to(elsewhere, target_is_directory=True)
    splits = tmp_path / "splits"
    splits.mkdir()
    listing = splits / "l.txt"
    listing.write_text("../UCF/c/a1.mp4 1\n../UCF/c/my clip.mp4 2\n../victim.mp4\nlink/../link/x.mp4\n")
    summary = extract([listing], options(out))
    by_rel = {r.item.name: r for r in summary.results}
    assert sorted(by_rel) == ["UCF/c/a1", "UCF/c/my clip", "link/x", "victim"]
    assert by_rel["UCF/c/a1"].status == "done" and by_rel["UCF/c/my clip"].status == "done"
    assert (out / "UCF" / "c" / "a1" / "flow_x_00002.jpg").is_file()
    assert (out / "UCF" / "c" / "my clip" / "flow_y_00002.jpg").is_file()
    assert sorted(p.name for p in (tmp_path / "UCF" / "c").iterdir()) == ["a1.mp4", "my clip.mp4"]
    assert by_rel["victim"].status == "failed" and "no such file" in by_rel["victim"].reason
    assert by_rel["link/x"].status == "failed" and "outside --out" in by_rel["link/x"].reason
    assert (victim / "flow_x_00001.jpg").read_bytes() == b"precious" and (victim / ".done").is_file()
    assert (elsewhere / "flow_x_00001.jpg").read_bytes() == b"precious"


def test_empty_or_wrong_inputs_and_bad_options_are_one_line_errors(tmp_path, dataset):
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("no videos here")
    (tmp_path / "empty.txt").write_text("# nothing listed\n\n")
    for folder, problem in (
        (tmp_path / "empty", "holds no videos"),
        (tmp_path / "docs", "holds no videos"),
        (tmp_path / "empty.txt", "list file names no videos"),
    ):
        with pytest.raises(InputError, match=f"{folder.name}: {problem}"):
            extract([folder], options(tmp_path / "out"))
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="file: cannot create the output folder"):
        extract([dataset], options(tmp_path / "file"))
    for kwargs, flag in (
        ({"bound": float("inf")}, "--bound"),
        ({"bound": 0.0}, "--bound"),
        ({"bound": float("nan")}, "--bound"),
        ({"batch_size": 0}, "--batch-size"),
        ({"min_side": 0}, "--min-side"),
    ):
        with pytest.raises(InputError, match=flag):
            options(tmp_path / "out", **kwargs)
    result = CliRunner().invoke(app, ["extract", str(tmp_path / "empty"), "-o", str(tmp_path / "o")])
    assert result.exit_code != 0 and isinstance(result.exception, InputError)


def test_done_marker_knows_its_source(tmp_path):
    """A truncated video replaced by the full one (or another file of the same name, size and time) is
    redone; a truncated one gets a warning; a source deleted after extraction keeps its outputs."""
    import os

    full = write_video(tmp_path / "full.avi", 30, seed=1)
    video = tmp_path / "in" / "v.avi"
    video.parent.mkdir()
    video.write_bytes(full.read_bytes()[: full.stat().st_size * 9 // 10])  # AVI: its header declares 30
    out = tmp_path / "out"
    first = extract([video], options(out)).results[0]
    assert first.status == "done" and 2 <= first.frames < 30
    assert "header declares 30" in first.warning
    assert "warnings:" in extract([video], options(tmp_path / "out2")).report()
    video.write_bytes(full.read_bytes())
    again = extract([video], options(out)).results[0]
    assert again.status == "done" and again.frames == 30 and again.warning == ""
    assert extract([video], options(out)).results[0].status == "skipped"
    # Same size and modification time, different bytes at the start: the head hash tells them apart.
    info = video.stat()
    data = bytearray(video.read_bytes())
    data[-1000] ^= 0xFF
    data[100] ^= 0xFF
    video.write_bytes(bytes(data))
    os.utime(video, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert extract([video], options(out)).results[0].status != "skipped"
    video.write_bytes(full.read_bytes())
    assert extract([video], options(out)).results[0].status == "done"
    video.unlink()
    gone = extract([video], options(out)).results[0]
    assert gone.status == "skipped" and (out / "v" / "flow_x_00029.jpg").is_file()


def _descendants(pid: int) -> set[int]:
    """Live descendants of ``pid`` (from /proc; zombies excluded)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _wait_until(condition, timeout: float) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process trees from /proc")
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_workers_end_with_their_parent(tmp_path, how):
    """Workers used to outlive a SIGTERM or kill -9 of the parent and go on through the queue. Now
    SIGTERM stops the pool at once (exit 143, one summary line) and every worker ends with its parent."""
    import os
    import signal

    videos = []
    for name in "abc":  # long real videos under TV-L1: minutes of work if the workers were to go on
        videos.append(tmp_path / f"{name}.avi")
        videos[-1].symlink_to(real_video("vtest"))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scattermotion.cli", "extract", *map(str, videos), "-o", str(out),
         "--method", "tvl1", "--workers", "2", "--short-side", "96"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        started = _wait_until(lambda: len(list(out.rglob("flow_x_*.jpg"))) >= 2, timeout=120)
        assert started, "extraction never started"
        workers = _descendants(proc.pid)
        assert len(workers) >= 2
        os.kill(proc.pid, getattr(signal, how))
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert _wait_until(lambda: not _alive(workers), timeout=15), f"workers still alive: {_alive(workers)}"
    if how == "SIGTERM":
        assert proc.returncode == 128 + signal.SIGTERM
        assert "Traceback" not in stderr
        lines = stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("extract: interrupted by SIGTERM"), stdout
        assert "run the same command again to resume" in lines[0]
    else:
        assert proc.returncode == -signal.SIGKILL


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def test_flow_checks_every_output_before_computing(tmp_path):
    """``flow`` used to write the .flo and then fail on a bad --viz path (and -o DIR was a traceback)."""
    first, second = frame_pairs()["RubberWhale"]
    (tmp_path / "dir.flo").mkdir()
    cases = (
        (["-o", str(tmp_path / "a.flo"), "--viz", str(tmp_path / "no" / "such" / "v.png")], "v.png: cannot"),
        (["-o", str(tmp_path / "b.flo"), "--viz", str(tmp_path / "v.jpg")], "v.jpg: --viz writes a PNG"),
        (["-o", str(tmp_path / "dir.flo")], "dir.flo: cannot write: is a folder"),
        (["--min-side", "0", "-o", str(tmp_path / "c.flo")], "--min-side must be a positive"),
    )
    for args, problem in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "scattermotion.cli", "flow", str(first), str(second), *args],
            capture_output=True, text=True,
        )  # fmt: skip
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip().startswith("error: ") and problem in proc.stderr, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.flo"]


# ---- several formats in one --out, and the mmaction2 rawframes layout -------------------------------------


def test_a_second_format_keeps_the_first(dataset, tmp_path):
    video = dataset / "Run" / "v_Run_g01_c01.mp4"  # 6 frames: 5 maps
    out = tmp_path / "out"
    assert extract([video], options(out, format="jpg")).exit_code == 0
    jpegs = flow_files(out)
    assert len(jpegs) == 10
    summary = extract([video], options(out, format="flo"))
    assert [r.status for r in summary.results] == ["done"]
    after = flow_files(out)
    assert {k: v for k, v in after.items() if k.endswith(".jpg")} == jpegs  # the JPEGs are kept
    assert sorted(k for k in after if k.endswith(".flo")) == [
        f"v_Run_g01_c01/flow_{i:05d}.flo" for i in range(1, 6)
    ]
    folder = out / "v_Run_g01_c01"
    assert (folder / DONE_MARKER).is_file() and (folder / done_marker("flo")).is_file()
    for fmt in ("jpg", "flo"):  # both are finished: running either again skips it
        assert [r.status for r in extract([video], options(out, format=fmt)).results] == ["skipped"]
    (folder / "flow_00003.flo").unlink()  # a partial flo output is redone; the JPEGs stay untouched
    assert [r.status for r in extract([video], options(out, format="flo")).results] == ["done"]
    assert {k: v for k, v in flow_files(out).items() if k.endswith(".jpg")} == jpegs


MMACTION2_RECIPE = (
    "scattermotion extract data/ucf101/videos/ -o data/ucf101/rawframes/ --format jpg --rgb --bound 20"
)


def test_rgb_writes_the_rawframes_folder_mmaction2_reads(dataset, tmp_path):
    import fnmatch
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert MMACTION2_RECIPE in readme and "filename_tmpl='flow_{}_{:05d}.jpg', start_index=1" in readme
    out = tmp_path / "rawframes"
    args = MMACTION2_RECIPE.split()[1:]
    args[1], args[3] = str(dataset), str(out)  # the recipe's command on the test videos
    result = CliRunner().invoke(app, [*args, "--method", "dis"])
    assert result.exit_code == 0, result.output
    counts = {"v_Jump_g01_c01": 5, "v_Jump_g02_c01": 4, "v_Run_g01_c01": 6, "v_Run_g02_c01": 3}
    for folder in sorted(out.glob("*/*")):  # --level 2: <class>/<video>
        frames = counts[folder.name]
        names = os.listdir(folder)
        # What mmaction2's build_file_list.py counts (parse_directory: fnmatch on the prefixes).
        rgb, flow_x, flow_y = (len(fnmatch.filter(names, p + "*")) for p in ("img_", "flow_x_", "flow_y_"))
        assert (rgb, flow_x, flow_y) == (frames, frames - 1, frames - 1)
        # What RawFrameDataset then opens: filename_tmpl.format(...) from start_index=1 on.
        assert all((folder / f"img_{i:05d}.jpg").is_file() for i in range(1, rgb + 1))
        for i in range(1, flow_x + 1):
            assert all((folder / f"flow_{c}_{i:05d}.jpg").is_file() for c in "xy")
        assert not [n for n in names if not re.fullmatch(r"(img|flow_x|flow_y)_\d{5}\.jpg|\.done", n)]
        # The frames are the decoded frames at the flow's size; our own readers see a rawframes folder.
        video = next(dataset.glob(f"*/{folder.name}.*"))
        decoded = open_video(video).read_all()
        written = open_video(folder).read_all()
        assert written.shape == decoded.shape and np.abs(written.astype(int) - decoded).mean() < 6  # JPEG q95
        assert read_flow_jpeg(
            folder / "flow_x_00001.jpg", folder / "flow_y_00001.jpg"
        ).shape == decoded.shape[1:3] + (2,)
    again = CliRunner().invoke(app, [*args, "--method", "dis"])
    assert "0 extracted" in again.stdout and "4 already done" in again.stdout


def test_rgb_needs_jpg_and_never_overwrites_its_own_frame_folder(tmp_path):
    with pytest.raises(InputError, match="--rgb .* use --format jpg"):
        options(tmp_path / "out", format="flo", rgb=True)
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(1, 4):
        cv2.imwrite(str(folder / f"img_{i:05d}.jpg"), np.full((16, 16, 3), 40 * i, np.uint8))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    summary = extract([folder], options(tmp_path, rgb=True))  # --out is the folder's parent: same folder
    assert summary.exit_code == 1 and "would overwrite the frame folder's own img_ frames" in summary.report()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # Without --rgb the flow is added beside the frames, as in a denseflow rawframes folder.
    assert extract([folder], options(tmp_path)).exit_code == 0
    assert len(list(folder.glob("flow_x_*.jpg"))) == 2 and len(list(folder.glob("img_*.jpg"))) == 3
