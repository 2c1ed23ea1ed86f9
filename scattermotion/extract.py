"""Dataset-scale motion extraction: videos (or frame folders) in, one motion file per frame pair out.

Layout (denseflow-compatible), for an input item with output folder ``<rel>`` (``<class>/<video_stem>`` for
a folder of class sub-folders, see :mod:`scattermotion.inputs`):

- ``jpg``:   ``DIR/<rel>/flow_x_00001.jpg``, ``flow_y_00001.jpg``, ... (±bound mapped to 0..255)
- ``flo`` / ``kitti`` / ``npy``: ``DIR/<rel>/flow_00001.flo`` / ``.png`` (KITTI 16-bit) / ``.npy``
- ``viz``:   ``DIR/<rel>/flow_00001.png``, Middlebury colours saturating at ``bound`` px (a fixed radius,
  not a per-sequence one, so that frames stream and colours are comparable across frames and videos)

- ``rgb`` (with ``jpg``): also ``DIR/<rel>/img_00001.jpg``, ... the sampled frames at the output size, so
  the folder is an mmaction2 / denseflow *rawframes* folder (``build_file_list.py`` counts its frames)

Indices are 1-based: file k holds the motion from sampled frame k to k+1 (``img_k`` to ``img_k+1``). With
``step`` K the frames 0, K, 2K, ... are sampled, so the pairs are (0, K), (K, 2K), ... and a video of N
frames gives ``ceil(N / K) - 1`` motion maps (``N - 1`` for K = 1), each in pixels of motion over K frames.
(denseflow's ``-s K`` differs: it keeps every frame and pairs frame i with i + K, giving N - K overlapping
maps of K-frame motion.)

Robustness: every file is written atomically (temporary name, then rename). A done marker per format
(``DIR/<rel>/.done`` for ``jpg``, ``.done-flo``, ``.done-kitti``, ... for the others: JSON with the
settings, counts, timings and a fingerprint of the source: size, modification time and SHA-256 of its first
MiB; for a frame folder its frame names, sizes and times) is written last; a re-run skips items whose marker
matches the current settings and source and whose files are all there, and redoes the rest after deleting
their partial outputs (only files named like that format's outputs, so a second format into the same
``DIR`` keeps the first; ``kitti`` and ``viz`` share names, ``flow_%05d.png``, so one replaces the other;
and only inside ``DIR``: an output folder that resolves outside it is refused). A failing item (missing,
corrupt, fewer than 2 frames) is logged in one line and skipped; the rest finish and the summary lists the
failures; a video that ends before the frame count its header declares is extracted with a warning in the
summary.

Parallelism: ``workers`` N runs N processes over videos for the classical methods (``ours`` runs in one
process: several would each hold a model); ``threads`` caps the torch and OpenCV threads of each process
(the network already uses every core it is given). SIGINT and SIGTERM stop
the run promptly (workers are terminated, queued videos dropped) and :class:`ExtractInterrupted` carries a
one-line summary; workers also end on their own when the parent dies (kill -9 included). Sharding: ``shard``
(i, N) takes items i, i+N, ... of the sorted list; under torchrun it defaults to (RANK, WORLD_SIZE).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import chain, islice
from pathlib import Path

import numpy as np
from tqdm import tqdm

from scattermotion.data.video import output_size
from scattermotion.errors import InputError
from scattermotion.estimator import OURS, FlowEstimator, get_estimator
from scattermotion.inputs import InputItem, expand_inputs, open_source, shard_from_env, shard_items
from scattermotion.io.atomic import write_json_atomic
from scattermotion.io.flow_jpeg import check_bound
from scattermotion.methods import uses_network
from scattermotion.threads import set_threads

FORMATS = ("jpg", "flo", "kitti", "npy", "viz")
DONE_MARKER = ".done"  # the jpg marker (the name it always had); the other formats add -<format>
FIRST_INDEX = 1  # TSN / mmaction2 loaders count from 1 (start_index=1)
RGB_NAME = "img_{:05d}.jpg"  # --rgb frames: mmaction2's rawframes name, numbered like the flow
# The files each format writes (and so may delete when redoing an item); kitti and viz share names.
_FORMAT_FILES = {
    "jpg": r"flow_[xy]_\d{5,}\.jpg",
    "flo": r"flow_\d{5,}\.flo",
    "kitti": r"flow_\d{5,}\.png",
    "npy": r"flow_\d{5,}\.npy",
    "viz": r"flow_\d{5,}\.png",
}
_RGB_FILES = r"img_\d{5,}\.jpg"
_TEMP_NAME = re.compile(r"^\.(.+)\.[0-9a-f]+\.tmp(\.\w+)?$")  # io.atomic's temporary for name \1\2
FINGERPRINT_HEAD_BYTES = 1 << 20  # hashed from the start of a video: a replaced file differs there
PREFETCH_BYTES = 256 * 2**20  # decoded frames held ahead at most (huge frames get a shallower queue)


@dataclass
class ExtractOptions:
    """Everything ``scattermotion extract`` takes besides the INPUT list."""

    out_dir: Path
    format: str = "jpg"
    method: str = OURS
    weights: Path | None = None
    bound: float = 20.0
    resize: tuple[int, int] | None = None  # (W, H)
    short_side: int | None = None
    step: int = 1
    workers: int | None = None  # processes over videos (classical methods); None = one
    threads: int | None = None  # torch and OpenCV threads per process; None = their defaults
    device: str = "cpu"
    fp16: bool = False
    batch_size: int | None = None
    min_side: int | None = None  # ours: run the network on frames scaled up to this short side
    shard: tuple[int, int] | None = None  # (i, N); None = (RANK, WORLD_SIZE) under torchrun, else all
    # Read at most this many (sampled) frames per item: quick runs and tests.
    max_frames: int | None = None
    list_root: Path | None = None
    prefetch: int = 8  # frames decoded ahead in a background thread (0: decode in line)
    progress: bool | None = None  # None = progress bars when stderr is a terminal
    rgb: bool = False  # jpg: also write the sampled frames as img_%05d.jpg (a rawframes folder)

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.format not in FORMATS:
            raise InputError(None, f"unknown --format {self.format!r}; choose from {', '.join(FORMATS)}")
        if self.step < 1:
            raise InputError(None, f"--step must be >= 1, got {self.step}")
        check_bound(self.bound, "--bound")
        if self.workers is not None and self.workers < 1:
            raise InputError(None, f"--workers must be >= 1, got {self.workers}")
        if self.uses_network and (self.workers or 1) > 1:  # ours once took --workers as threads: say so
            raise InputError(
                None,
                "--workers N runs N processes for the classical methods; ours runs in one process: "
                "use --threads N for its CPU threads (or --shard i/N for several processes)",
            )
        if self.threads is not None and self.threads < 1:
            raise InputError(None, f"--threads must be >= 1, got {self.threads}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(None, f"--batch-size must be >= 1, got {self.batch_size}")
        if self.min_side is not None and self.min_side < 1:
            raise InputError(None, f"--min-side must be a positive number of pixels, got {self.min_side}")
        if self.max_frames is not None and self.max_frames < 2:
            raise InputError(None, f"--max-frames must be >= 2, got {self.max_frames}")
        if self.rgb and self.format != "jpg":
            raise InputError(
                None, "--rgb writes the rawframes layout (img_ beside flow_x/flow_y): use --format jpg"
            )
        output_size(None, 1, 1, resize=self.resize, short_side=self.short_side)  # both given, or bad values

    @property
    def uses_network(self) -> bool:
        """Ours, refined or not: one process, ``--weights`` and ``--min-side`` apply."""
        return uses_network(self.method)

    def settings(self) -> dict:
        """What determines the outputs: a finished item is redone when any of these differ."""
        weights = str(Path(self.weights).resolve()) if self.weights is not None else None
        settings = {
            "method": self.method,
            "weights": weights if self.uses_network else None,
            "format": self.format,
            "bound": self.bound if self.format in ("jpg", "viz") else None,
            "resize": list(self.resize) if self.resize else None,
            "short_side": self.short_side,
            "min_side": self.min_side if self.uses_network else None,
            "step": self.step,
            "max_frames": self.max_frames,
        }
        if self.rgb:  # only when on: markers written before --rgb existed stay valid
            settings["rgb"] = True
        return settings


@dataclass
class ItemResult:
    """How one item went. ``timings`` splits its seconds into decode / model / write."""

    item: InputItem
    status: str  # "done" | "skipped" | "failed"
    frames: int = 0
    pairs: int = 0
    files: int = 0
    reason: str = ""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    warning: str = ""  # e.g. the video ended before the frame count its header declares


@dataclass
class ExtractSummary:
    results: list[ItemResult]
    shard: tuple[int, int]
    total_items: int  # before sharding
    seconds: float
    interrupted: int | None = None  # the signal that stopped the run (results then cover only part)

    def of(self, status: str) -> list[ItemResult]:
        return [r for r in self.results if r.status == status]

    @property
    def exit_code(self) -> int:
        if self.interrupted is not None:
            return 128 + self.interrupted  # what a shell reports for a process ended by that signal
        return 1 if self.of("failed") else 0

    def report(self) -> str:
        done, skipped, failed = self.of("done"), self.of("skipped"), self.of("failed")
        pairs = sum(r.pairs for r in done)
        shard = f" (shard {self.shard[0]}/{self.shard[1]} of {self.total_items})" if self.shard[1] > 1 else ""
        counts = (
            f"{len(done)} extracted ({pairs} motion maps), {len(skipped)} already done, "
            f"{len(failed)} failed, in {self.seconds:.1f} s"
        )
        if self.interrupted is not None:
            name = signal.Signals(self.interrupted).name
            unfinished = len(self.results) - len(done) - len(skipped) - len(failed)
            return (
                f"extract: interrupted by {name}: {counts}, {unfinished} of {len(self.results)} item(s)"
                f"{shard} not finished; run the same command again to resume"
            )
        lines = [f"extract: {len(self.results)} item(s){shard}: {counts}"]
        warned = [r for r in done if r.warning]
        if warned:
            lines.append("warnings:")
            lines.extend(f"  {r.item.source}: {r.warning}" for r in warned)
        if failed:
            lines.append("failed:")
            lines.extend(f"  {r.reason}" for r in failed)
        return "\n".join(lines)


class ExtractInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped :func:`extract`; ``summary`` says how far it got (a KeyboardInterrupt, so
    that callers who stop on Ctrl-C keep doing so)."""

    def __init__(self, summary: ExtractSummary):
        super().__init__(summary.report())
        self.summary = summary


# ---- output files ----------------------------------------------------------------------------------------


def output_writer(fmt: str, bound: float) -> Callable[[Path, int, np.ndarray], int]:
    """``write(folder, index, flow) -> number of files written`` for one of :data:`FORMATS`."""
    from scattermotion import io as flow_io

    def single(
        suffix: str, write: Callable[[Path, np.ndarray], None]
    ) -> Callable[[Path, int, np.ndarray], int]:
        def write_one(folder: Path, index: int, flow: np.ndarray) -> int:
            write(folder / f"flow_{index:05d}{suffix}", flow)
            return 1

        return write_one

    if fmt == "jpg":
        return lambda folder, index, flow: len(flow_io.write_flow_jpeg(folder, index, flow, bound=bound))
    if fmt == "flo":
        return single(".flo", flow_io.write_flo)
    if fmt == "kitti":
        return single(".png", flow_io.write_kitti)
    if fmt == "npy":
        return single(".npy", flow_io.write_npy)
    if fmt == "viz":
        return single(".png", lambda path, flow: flow_io.write_png(path, flow_io.flow_to_color(flow, bound)))
    raise InputError(None, f"unknown format {fmt!r}")


def done_marker(fmt: str) -> str:
    """The done marker's file name for format ``fmt``: one per format, so formats share a folder."""
    return DONE_MARKER if fmt == "jpg" else f"{DONE_MARKER}-{fmt}"


def _output_names(fmt: str, rgb: bool = False) -> re.Pattern:
    """The names of the files format ``fmt`` writes (with the RGB frames when ``rgb``)."""
    return re.compile(rf"^(?:{_FORMAT_FILES[fmt]}{'|' + _RGB_FILES if rgb else ''})$")


def clean_outputs(folder: Path, fmt: str = "jpg", rgb: bool = False) -> int:
    """Delete the outputs of format ``fmt`` (and of a format with the same names), their temporaries and
    done markers from ``folder``; nothing else, so other formats' outputs stay. Returns the count."""
    if not folder.is_dir():
        return 0
    outputs = _output_names(fmt, rgb)
    markers = {done_marker(other) for other, names in _FORMAT_FILES.items() if names == _FORMAT_FILES[fmt]}
    removed = 0
    for path in folder.iterdir():
        name = path.name
        temp = _TEMP_NAME.match(name)
        target = temp.group(1) + (temp.group(2) or "") if temp else name
        if (target in markers or outputs.match(target)) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def count_outputs(folder: Path, fmt: str = "jpg", rgb: bool = False) -> int:
    """How many files of format ``fmt`` (and RGB frames when ``rgb``) ``folder`` holds."""
    outputs = _output_names(fmt, rgb)
    return sum(1 for p in folder.iterdir() if outputs.match(p.name)) if folder.is_dir() else 0


def source_fingerprint(item: InputItem) -> dict | None:
    """What identifies the source's content cheaply: a video's size, modification time and the SHA-256 of
    its first MiB; a frame folder's image names, sizes and times. None when it cannot be read."""
    from scattermotion.data.frame_folder import list_frames

    try:
        if item.kind == "frames":
            digest = hashlib.sha256()
            files = list_frames(item.source).frames
            for file in files:
                info = file.stat()
                digest.update(f"{file.name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
            return {"files": len(files), "listing_sha256": digest.hexdigest()}
        info = item.source.stat()
        with open(item.source, "rb") as f:
            head = hashlib.sha256(f.read(FINGERPRINT_HEAD_BYTES)).hexdigest()
        return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "head_sha256": head}
    except OSError:
        return None


def is_done(folder: Path, settings: dict, fingerprint: dict | None = None) -> bool:
    """True when ``folder`` has a done marker for ``settings`` and every file it counts is there, and the
    source still has the fingerprint the marker recorded. A source that is gone (``fingerprint`` None)
    keeps its finished outputs: deleting sources after extraction is common, and redoing would only fail
    and delete them."""
    marker = read_done(folder, settings["format"])
    if marker is None:
        return False
    if fingerprint is not None and marker.get("source_fingerprint") != fingerprint:
        return False
    files = count_outputs(folder, settings["format"], bool(settings.get("rgb")))
    return marker.get("settings") == settings and marker.get("files") == files


def read_done(folder: Path, fmt: str = "jpg") -> dict | None:
    """The done marker of format ``fmt`` in ``folder`` as a dict, or None when there is none readable."""
    try:
        marker = json.loads((folder / done_marker(fmt)).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def write_done(folder: Path, settings: dict, result: ItemResult, fingerprint: dict | None = None) -> None:
    marker = {
        "settings": settings,
        "source": str(result.item.source),
        "source_fingerprint": fingerprint,
        "warning": result.warning or None,
        "frames": result.frames,
        "pairs": result.pairs,
        "files": result.files,
        "seconds": round(result.seconds, 3),
        "timings": {key: round(value, 4) for key, value in result.timings.items()},
    }
    write_json_atomic(folder / done_marker(settings["format"]), marker)


# ---- one item --------------------------------------------------------------------------------------------


def prefetch(frames: Iterable[np.ndarray], depth: int) -> Iterator[np.ndarray]:
    """Iterate ``frames`` in a background thread, at most ``depth`` ahead, so that decoding (PyAV and OpenCV
    release the GIL) overlaps motion estimation. Errors are re-raised here; closing the generator stops the
    thread and closes ``frames``."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    source = iter(frames)

    def produce() -> None:
        try:
            for frame in source:
                while not stop.is_set():
                    try:
                        buffer.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item: object = end
        except BaseException as err:  # handed to the consumer, which raises it
            item = err
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=produce, name="frame-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
        close = getattr(source, "close", None)
        if close is not None:
            close()


class _Timed:
    """Wraps an iterator and adds the time spent inside ``next()`` to ``timings[key]``; counts items."""

    def __init__(self, iterable: Iterable, timings: dict[str, float], key: str):
        self.iterator, self.timings, self.key, self.count = iter(iterable), timings, key, 0
        timings.setdefault(key, 0.0)

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        start = time.perf_counter()
        try:
            value = next(self.iterator)
        finally:
            self.timings[self.key] += time.perf_counter() - start
        self.count += 1
        return value


def extract_item(
    item: InputItem,
    estimator: FlowEstimator,
    options: ExtractOptions,
    write: Callable[[Path, int, np.ndarray], int] | None = None,
    frame_bar: tqdm | None = None,
) -> ItemResult:
    """Extract one item into ``out_dir / item.rel``; never raises for a bad item (returns status failed)."""
    folder = options.out_dir / item.rel
    write = write or output_writer(options.format, options.bound)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    frames: Iterator[np.ndarray] | None = None
    if not _inside(folder, options.out_dir):  # never clean or write outside --out (symlinks included)
        reason = f"{item.source}: output folder {folder} lies outside --out {options.out_dir}; skipped"
        return ItemResult(item, "failed", reason=reason)
    if (
        options.rgb
        and item.kind == "frames"
        and _inside(folder, item.source)
        and _inside(item.source, folder)
    ):
        reason = f"{item.source}: --rgb would overwrite the frame folder's own img_ frames; skipped"
        return ItemResult(item, "failed", reason=reason)
    try:
        fingerprint = source_fingerprint(item)  # before decoding: a change while we read means redo
        clean_outputs(folder, options.format, options.rgb)
        source = open_source(item, resize=options.resize, short_side=options.short_side)
        frames = source.frames(step=options.step)
        if options.max_frames is not None:
            frames = islice(frames, options.max_frames)
        if options.prefetch > 0:
            frame_bytes = max(1, getattr(source, "width", 0) * getattr(source, "height", 0) * 3)
            frames = prefetch(frames, max(1, min(options.prefetch, PREFETCH_BYTES // frame_bytes)))
        decoded = _Timed(frames, timings, "decode")  # with prefetch: time spent waiting for frames
        head = list(islice(decoded, 2))
        head_decode = timings["decode"]  # decoded before the stream's timer starts
        if len(head) < 2:
            step = f" sampled with --step {options.step}" if options.step > 1 else ""
            frames_text = f"{len(head)} frame{'' if len(head) == 1 else 's'}"
            raise InputError(item.source, f"has {frames_text}{step}; motion needs at least 2")
        if frame_bar is not None and not frame_bar.disable:
            # The header's count (may be off) rather than frame_count, which reads the whole file once more.
            total = getattr(source, "declared_frame_count", None)
            total = source.frame_count if total is None else total
            if options.max_frames is not None:
                total = min(total, options.max_frames * options.step)
            frame_bar.reset(total=max(0, -(-total // options.step) - 1) or None)
            frame_bar.set_description(item.name[-40:])
        folder.mkdir(parents=True, exist_ok=True)
        stream: Iterable[np.ndarray] = chain(head, decoded)
        if options.rgb:
            stream = _written_frames(stream, folder, timings)
        flows = _Timed(estimator.estimate_stream(stream), timings, "stream")
        pairs = files = 0
        for index, flow in enumerate(flows, start=FIRST_INDEX):
            write_start = time.perf_counter()
            files += write(folder, index, flow)
            timings["write"] = timings.get("write", 0.0) + time.perf_counter() - write_start
            pairs += 1
            if frame_bar is not None:
                frame_bar.update()
        # The stream's time includes decoding every frame after the first two (and writing --rgb frames).
        rgb_write = timings.get("write_rgb", 0.0)
        model = timings.pop("stream") - (timings["decode"] - head_decode) - rgb_write
        timings["model"] = max(0.0, model)
        files += decoded.count if options.rgb else 0  # every frame went through _written_frames
        result = ItemResult(item, "done", frames=decoded.count, pairs=pairs, files=files, timings=timings)
        result.warning = _short_video_warning(source, decoded.count, options)
        result.seconds = time.perf_counter() - start
        write_done(folder, options.settings(), result, fingerprint)
        return result
    except Exception as err:  # one bad item must not stop the batch: report it and go on
        try:
            clean_outputs(folder, options.format, options.rgb)
        except OSError:
            pass
        return ItemResult(item, "failed", reason=_one_line(item, err), seconds=time.perf_counter() - start)
    finally:
        close = getattr(frames, "close", None)  # stops the prefetch thread at once, also on an interrupt
        if close is not None:
            close()


def _written_frames(
    frames: Iterable[np.ndarray], folder: Path, timings: dict[str, float]
) -> Iterator[np.ndarray]:
    """Pass ``frames`` on, writing each as ``img_%05d.jpg`` (1-based, like the flow) on the way; the time
    spent goes to ``timings["write_rgb"]``."""
    from scattermotion.io import write_jpeg

    timings.setdefault("write_rgb", 0.0)
    for index, frame in enumerate(frames, start=FIRST_INDEX):
        start = time.perf_counter()
        write_jpeg(folder / RGB_NAME.format(index), frame)
        timings["write_rgb"] += time.perf_counter() - start
        yield frame


def _inside(folder: Path, root: Path) -> bool:
    """Whether ``folder`` resolves (symlinks followed) to ``root`` or below it."""
    try:
        folder.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _short_video_warning(source, decoded: int, options: ExtractOptions) -> str:
    """A warning when a video decoded fewer frames than its header declares (truncated or damaged)."""
    declared = getattr(source, "declared_frame_count", 0) or 0
    if declared <= 0:
        return ""
    expected = -(-declared // options.step)
    if options.max_frames is not None:
        expected = min(expected, options.max_frames)
    if decoded >= expected:
        return ""
    return f"ended after {decoded} frames, its header declares {declared} (truncated or damaged?)"


def _one_line(item: InputItem, err: Exception) -> str:
    if isinstance(err, InputError):
        text = str(err) if err.path is not None else f"{item.source}: {err}"
    else:
        text = f"{item.source}: {type(err).__name__}: {err}"
    return " ".join(text.split())


# ---- many items ------------------------------------------------------------------------------------------


def extract(
    inputs: Sequence[str | os.PathLike], options: ExtractOptions, estimator: FlowEstimator | None = None
) -> ExtractSummary:
    """Extract every item of ``inputs`` (this shard's part), skipping finished ones (see the module doc)."""
    start = time.perf_counter()
    items = expand_inputs(inputs, options.list_root)
    shard = options.shard or shard_from_env() or (0, 1)
    mine = shard_items(items, *shard)
    try:
        options.out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(options.out_dir, f"cannot create the output folder: {err.strerror or err}") from None
    settings = options.settings()
    results: dict[InputItem, ItemResult] = {}
    todo = []
    for item in mine:
        if is_done(options.out_dir / item.rel, settings, source_fingerprint(item)):
            results[item] = ItemResult(item, "skipped")
        else:
            todo.append(item)

    def summary(interrupted: int | None = None) -> ExtractSummary:
        ordered = [results.get(item, ItemResult(item, "unfinished")) for item in mine]
        return ExtractSummary(ordered, shard, len(items), time.perf_counter() - start, interrupted)

    show = options.progress
    try:
        with (
            _signals_as_interrupts(),
            tqdm(
                total=len(mine), initial=len(results), desc="videos", unit="video", disable=_disable(show)
            ) as bar,
        ):

            def record(result: ItemResult) -> None:
                results[result.item] = result
                if result.status == "failed":
                    tqdm.write(f"failed: {result.reason}", file=sys.stderr)
                bar.update()

            if todo and not options.uses_network and (options.workers or 1) > 1:
                _extract_parallel(todo, options, record)
            elif todo:
                estimator = estimator or _make_estimator(options)
                write = output_writer(options.format, options.bound)
                with tqdm(desc="frames", unit="pair", leave=False, disable=_disable(show)) as frame_bar:
                    for item in todo:
                        record(extract_item(item, estimator, options, write, frame_bar))
    except _Interrupted as stop:
        raise ExtractInterrupted(summary(stop.signum)) from None
    except KeyboardInterrupt:
        raise ExtractInterrupted(summary(signal.SIGINT)) from None
    return summary()


class _Interrupted(BaseException):
    """SIGTERM (or SIGINT) arrived; raised in the main thread by the handler below."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into an exception in the main thread, so the run stops its workers and
    reports how far it got instead of dying silently (SIGTERM) or waiting for the queue (Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise _Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _disable(show: bool | None) -> bool | None:
    return None if show is None else not show  # tqdm: None = only on a terminal


def _make_estimator(options: ExtractOptions) -> FlowEstimator:
    set_threads(options.threads, with_torch=options.uses_network)  # classical workers never import torch
    return get_estimator(
        options.method,
        options.weights,
        device=options.device,
        fp16=options.fp16,
        batch_size=options.batch_size,
        min_side=options.min_side,
    )


# Process-pool workers (classical methods): one estimator per process, OpenCV single-threaded in each.
_worker_estimator: FlowEstimator | None = None


def _worker_init(options: ExtractOptions) -> None:
    import cv2

    global _worker_estimator
    # Only the parent decides about Ctrl-C (it reaches the whole process group); SIGTERM from the parent
    # ends a worker at once. A worker also ends when its parent dies, even by kill -9.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    cv2.setNumThreads(1)
    _worker_estimator = _make_estimator(options)


def _exit_with_parent() -> None:
    """End this worker process as soon as the process that started the pool is gone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])  # ready once the parent has exited
        os._exit(1)  # no cleanup: the temporaries it leaves are removed when the item is redone

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_extract(item: InputItem, options: ExtractOptions) -> ItemResult:
    assert _worker_estimator is not None
    return extract_item(item, _worker_estimator, options)


def _extract_parallel(
    todo: list[InputItem], options: ExtractOptions, record: Callable[[ItemResult], None]
) -> None:
    _make_estimator(options)  # fail fast here, before any worker starts
    # forkserver: workers start from a clean process, never a fork of one with threads running.
    context = multiprocessing.get_context("forkserver")
    pool = ProcessPoolExecutor(
        max_workers=options.workers, mp_context=context, initializer=_worker_init, initargs=(options,)
    )
    try:
        futures = {pool.submit(_worker_extract, item, options): item for item in todo}
        pending = set(futures)
        while pending:
            # A timeout keeps the main thread returning to Python, where the signal handler can run.
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    record(future.result())
                except Exception as err:  # a worker died (e.g. killed): the item is not done
                    item = futures[future]
                    record(ItemResult(item, "failed", reason=_one_line(item, err)))
    except BaseException:  # interrupted: stop the workers now, not after the queue
        _terminate(pool)
        raise
    pool.shutdown(wait=True)


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Cancel what is queued and end the running workers (their partial items are redone next run)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


def summary_json(summary: ExtractSummary) -> dict:
    """The summary as plain data (for benchmarks and logs)."""
    return {
        "shard": list(summary.shard),
        "seconds": summary.seconds,
        "items": [
            {
                **{k: v for k, v in asdict(r).items() if k != "item"},
                "source": str(r.item.source),
                "rel": r.item.name,
            }
            for r in summary.results
        ],
    }
