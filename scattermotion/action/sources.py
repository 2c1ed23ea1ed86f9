"""What the classifier sees of a video: a sequence of *maps* (motion maps, RGB frames or frame differences),
read through one interface whatever produced them.

Sources (``SourceSpec.kind``):

- ``ours``, ``tvl1``, ``dis``, ``dis-fast``, ``farneback``: motion estimated from the decoded frames, once per
  video, and cached on disk in the denseflow layout (``CACHE/<key>/<video name>/flow_x_00001.jpg`` ...,
  ``.done`` written last with the measured extraction time), so later epochs, seeds and runs only read it.
  The cache key names the method, its weights (hashed), the frame size and the bound.
- ``precomputed``: flow folders already on disk in the denseflow layout (``scattermotion extract``,
  denseflow, MMAction ``rawframes``): ``DIR/<video name>/flow_x_%05d.jpg``, or the video's own frame folder
  when no DIR is given.
- ``rgbdiff``: RGB difference of adjacent frames (TSN's RGB-diff motion stand-in), 3 channels per map.
- ``rgb``: the frames themselves (the appearance stream).

Every motion map is clipped to ±``bound`` pixels and divided by it (values in [-1, 1]), for every motion
source alike, as the denseflow JPEGs store it (so cached and pre-extracted motion read back the same way).
RGB frames are in [0, 1]; RGB differences in [-1, 1].
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from scattermotion.action.datasets import VideoRecord
from scattermotion.data.video import open_video, read_image, resize_frame
from scattermotion.errors import InputError
from scattermotion.inputs import FrameFolderSource
from scattermotion.io.atomic import write_json_atomic
from scattermotion.io.flow_jpeg import (
    DEFAULT_BOUND,
    X_NAME,
    Y_NAME,
    read_flow_component,
    uint8_to_flow,
    write_flow_jpeg,
)
from scattermotion.methods import MOTION_SOURCES

PRECOMPUTED = "precomputed"
SOURCE_KINDS = (*MOTION_SOURCES, PRECOMPUTED, "rgbdiff", "rgb")
DONE_MARKER = ".done"
DEFAULT_MOTION_LENGTH = 5  # maps per snippet: 5 flow maps -> 10 channels (TSN)
FRAME_CACHE_BYTES = 512 * 2**20  # decoded short videos kept in memory per reader
FLOW_CACHE_BYTES = 512 * 2**20  # decoded flow images kept in memory per source


@dataclass(frozen=True)
class SourceSpec:
    """Which source, and the settings that change what it produces."""

    kind: str
    weights: str | None = None  # ours: a weights file (None: the packaged default model)
    folder: str | None = None  # precomputed: the flow root (None: each video's own frame folder)
    bound: float = DEFAULT_BOUND
    short_side: int | None = None  # frames resized so the short side has this many pixels (None: as stored)
    device: str = "cpu"  # ours: where the network runs
    min_side: int | None = None  # ours: the network runs on frames scaled up to this short side

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise InputError(None, f"unknown source {self.kind!r}; choose from {', '.join(SOURCE_KINDS)}")
        if self.bound <= 0:
            raise InputError(None, f"bound must be positive, got {self.bound}")
        if self.short_side is not None and self.short_side < 8:
            raise InputError(None, f"short side must be at least 8 px, got {self.short_side}")
        if self.weights is not None and self.kind != "ours":
            raise InputError(self.weights, f"weights apply to the ours source only, not {self.kind}")
        if self.min_side is not None and self.kind != "ours":
            raise InputError(None, f"min side applies to the ours source only, not {self.kind}")

    @property
    def is_motion(self) -> bool:
        return self.kind in (*MOTION_SOURCES, PRECOMPUTED)

    @property
    def channels(self) -> int:
        return 2 if self.is_motion else 3

    @property
    def default_length(self) -> int:
        return 1 if self.kind == "rgb" else DEFAULT_MOTION_LENGTH

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SourceSpec:
        return cls(**data)


def parse_source(
    text: str,
    weights: str | os.PathLike | None = None,
    bound: float = DEFAULT_BOUND,
    short_side: int | None = None,
    device: str = "cpu",
    min_side: int | None = None,
) -> SourceSpec:
    """``ours``, ``tvl1``, ``dis``, ``rgbdiff``, ``rgb``, ``precomputed`` or ``precomputed:DIR``
    (``pre-extracted`` is accepted for ``precomputed``)."""
    kind, _, folder = text.partition(":")
    kind = PRECOMPUTED if kind == "pre-extracted" else kind
    if folder and kind != PRECOMPUTED:
        raise InputError(None, f"source {text!r}: only precomputed takes a folder (precomputed:DIR)")
    if folder and not Path(folder).is_dir():
        raise InputError(folder, "precomputed flow folder not found")
    return SourceSpec(
        kind=kind,
        weights=str(weights) if weights is not None else None,
        folder=str(Path(folder).resolve()) if folder else None,
        bound=float(bound),
        short_side=short_side,
        device=device,
        min_side=min_side,
    )


@dataclass
class ExtractionStats:
    """Motion extraction of one source over a list of videos. ``seconds`` counts only the motion estimation
    (frames already decoded), summed over the videos, including times recorded when a cache was made."""

    clips: int = 0
    pairs: int = 0
    seconds: float = 0.0
    computed: int = 0  # videos estimated in this call
    reused: int = 0  # videos found in the cache

    @property
    def ms_per_clip(self) -> float:
        return 1000.0 * self.seconds / self.clips if self.clips else 0.0

    @property
    def ms_per_pair(self) -> float:
        return 1000.0 * self.seconds / self.pairs if self.pairs else 0.0


# ---- memory ---------------------------------------------------------------------------------------------


class MemoryCache:
    """Arrays by key, least recently used dropped first once they hold more than ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[object, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: object) -> np.ndarray | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: object, item: np.ndarray) -> np.ndarray:
        if key in self._items:
            self._bytes -= self._items.pop(key).nbytes
        self._items[key] = item
        self._bytes += item.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= dropped.nbytes
        return item


# ---- frames ------------------------------------------------------------------------------------------------


class FrameReader:
    """Decoded frames of videos and frame folders, resized to ``short_side``; counts are remembered.

    Short videos are decoded whole once and kept in a least-recently-used memory cache of ``cache_bytes``
    (decoding a small clip costs far more than reading it back; every epoch reads every video again);
    long ones are streamed up to the last frame asked for.
    """

    def __init__(self, short_side: int | None = None, cache_bytes: int = FRAME_CACHE_BYTES):
        self.short_side = short_side
        self.cache_bytes = cache_bytes
        self._counts: dict[Path, int] = {}
        self._cache = MemoryCache(cache_bytes)
        self._streamed: set[Path] = set()  # videos too long to keep in memory

    def count(self, record: VideoRecord) -> int:
        if record.path not in self._counts:
            if record.kind == "frames":
                self._counts[record.path] = FrameFolderSource(record.path).frame_count
            else:
                self._counts[record.path] = open_video(record.path).frame_count
        return self._counts[record.path]

    def read_all(self, record: VideoRecord) -> list[np.ndarray]:
        cached = self._cache.get(record.path)
        if cached is not None:
            return list(cached)
        if record.kind == "frames":
            frames = list(FrameFolderSource(record.path, short_side=self.short_side).frames())
        else:
            frames = list(open_video(record.path, short_side=self.short_side).frames())
        if not frames:
            raise InputError(record.path, "no frames could be decoded")
        self._counts[record.path] = len(frames)
        return frames

    def read(self, record: VideoRecord, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames at ``indices`` (repeats allowed; past the end means the last frame)."""
        cached = self._cached(record)
        if cached is not None:
            last = len(cached) - 1
            return [cached[min(int(i), last)] for i in indices]
        wanted = sorted(set(int(i) for i in indices))
        if record.kind == "frames":
            folder = FrameFolderSource(record.path, short_side=self.short_side)
            last = folder.frame_count - 1
            size = (folder.width, folder.height)
            got = {i: resize_frame(read_image(folder.files[min(i, last)]), size) for i in wanted}
        else:
            source = open_video(record.path, short_side=self.short_side)
            got = {}
            index = -1
            for index, frame in enumerate(source.frames(stop=wanted[-1] + 1)):
                if index in wanted:
                    got[index] = frame
            if not got:
                raise InputError(record.path, "no frames could be decoded")
            last = max(got)
            if last < wanted[-1]:  # the container promised more frames than decode: remember the truth
                self._counts[record.path] = index + 1
            got.update({i: got[last] for i in wanted if i > last})
        return [got[int(i)] for i in indices]

    def _cached(self, record: VideoRecord) -> np.ndarray | None:
        """The whole decoded video from memory, decoding it first if it is small enough to keep."""
        cached = self._cache.get(record.path)
        if cached is not None or record.path in self._streamed:
            return cached
        if record.kind == "frames":
            source = FrameFolderSource(record.path, short_side=self.short_side)
        else:
            source = open_video(record.path, short_side=self.short_side)
        size = source.frame_count * source.width * source.height * 3
        if size > self.cache_bytes // 8:  # a long video: stream it instead of flushing the cache
            self._streamed.add(record.path)
            return None
        return self._cache.put(record.path, np.stack(self.read_all(record)))


# ---- sources -----------------------------------------------------------------------------------------------


class MapSource(ABC):
    """A sequence of maps per video: ``count(record)`` of them, ``read(record, indices)`` as K×H×W×C."""

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        self.channels = spec.channels
        self.default_length = spec.default_length

    @property
    def name(self) -> str:
        return self.spec.kind

    @abstractmethod
    def count(self, record: VideoRecord) -> int:
        """How many maps the video has."""

    @abstractmethod
    def read(self, record: VideoRecord, indices: Sequence[int]) -> np.ndarray:
        """Maps at ``indices`` (each in ``0..count-1``): K×H×W×C float32."""

    def prepare(
        self, records: Sequence[VideoRecord], progress: Callable[[int, int], None] | None = None
    ) -> ExtractionStats:
        """Make every map readable (compute and cache motion); nothing to do for most sources."""
        return ExtractionStats(clips=len(records))


class RGBSource(MapSource):
    """The frames, in [0, 1]."""

    def __init__(self, spec: SourceSpec):
        super().__init__(spec)
        self.frames = FrameReader(spec.short_side)

    def count(self, record: VideoRecord) -> int:
        return self.frames.count(record)

    def read(self, record: VideoRecord, indices: Sequence[int]) -> np.ndarray:
        frames = self.frames.read(record, indices)
        return np.stack(frames).astype(np.float32) * np.float32(1.0 / 255.0)


class RGBDiffSource(MapSource):
    """Differences of adjacent frames, ``(frame[i+1] - frame[i]) / 255`` in [-1, 1]: map i of N-1."""

    def __init__(self, spec: SourceSpec):
        super().__init__(spec)
        self.frames = FrameReader(spec.short_side)

    def count(self, record: VideoRecord) -> int:
        return max(self.frames.count(record) - 1, 1)

    def read(self, record: VideoRecord, indices: Sequence[int]) -> np.ndarray:
        indices = [int(i) for i in indices]
        frames = self.frames.read(record, indices + [i + 1 for i in indices])
        first = np.stack(frames[: len(indices)]).astype(np.float32)
        second = np.stack(frames[len(indices) :]).astype(np.float32)
        return (second - first) * np.float32(1.0 / 255.0)


class FlowFolderSource(MapSource):
    """Motion stored as denseflow JPEGs: ``folder_of(record)/flow_x_%05d.jpg`` + ``flow_y``, 1-based."""

    def __init__(self, spec: SourceSpec):
        super().__init__(spec)
        self._counts: dict[str, int] = {}
        self._levels = MemoryCache(FLOW_CACHE_BYTES)

    def folder_of(self, record: VideoRecord) -> Path:
        if self.spec.folder is not None:
            return Path(self.spec.folder) / record.name
        if record.kind == "frames":
            return record.path
        raise InputError(
            record.path, "precomputed motion needs a flow folder (precomputed:DIR) for video files"
        )

    def count(self, record: VideoRecord) -> int:
        if record.name not in self._counts:
            folder = self.folder_of(record)
            count = 0
            while (folder / X_NAME.format(count + 1)).is_file():
                count += 1
            if count == 0:
                raise InputError(folder, "no flow_x_00001.jpg here (expected denseflow flow images)")
            self._counts[record.name] = count
        return self._counts[record.name]

    def read(self, record: VideoRecord, indices: Sequence[int]) -> np.ndarray:
        folder = self.folder_of(record)
        bound = self.spec.bound
        maps = []
        for i in indices:
            key = (str(folder), int(i))
            levels = self._levels.get(key)
            if levels is None:  # the 8-bit images as stored: 4x smaller in memory than the float map
                x_path, y_path = folder / X_NAME.format(int(i) + 1), folder / Y_NAME.format(int(i) + 1)
                x_u8, y_u8 = read_flow_component(x_path), read_flow_component(y_path)
                if x_u8.shape != y_u8.shape:
                    raise InputError(y_path, f"size {y_u8.shape[::-1]} differs from {x_path.name}")
                levels = self._levels.put(key, np.stack([x_u8, y_u8], axis=2))
            maps.append(self._resize(uint8_to_flow(levels[..., 0], levels[..., 1], bound)))
        return np.clip(np.stack(maps) / np.float32(bound), -1.0, 1.0)

    def _resize(self, flow: np.ndarray) -> np.ndarray:
        """Flow stored at another size than ``short_side`` asks for: resize it and scale its values."""
        short = self.spec.short_side
        height, width = flow.shape[:2]
        if short is None or min(height, width) == short:
            return flow
        from scattermotion.data.video import output_size

        new_w, new_h = output_size("flow", width, height, short_side=short)
        scaled = cv2.resize(flow, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        scaled[..., 0] *= new_w / width
        scaled[..., 1] *= new_h / height
        return scaled


class EstimatedFlowSource(FlowFolderSource):
    """Motion from an estimator, computed once per video into a denseflow-layout cache."""

    def __init__(self, spec: SourceSpec, cache_dir: str | os.PathLike):
        super().__init__(spec)
        self.cache_dir = Path(cache_dir) / cache_key(spec)
        self.frames = FrameReader(spec.short_side)
        self._estimator = None

    def folder_of(self, record: VideoRecord) -> Path:
        return self.cache_dir / record.name

    def count(self, record: VideoRecord) -> int:
        return self._ensure(record)

    def read(self, record: VideoRecord, indices: Sequence[int]) -> np.ndarray:
        self._ensure(record)
        return super().read(record, indices)

    def _ensure(self, record: VideoRecord) -> int:
        """Compute the video's motion unless a current cache entry exists; returns its number of maps."""
        if record.name not in self._counts:
            marker = self._marker(record) or self._compute(record)
            self._counts[record.name] = int(marker["maps"])
        return self._counts[record.name]

    def prepare(
        self, records: Sequence[VideoRecord], progress: Callable[[int, int], None] | None = None
    ) -> ExtractionStats:
        stats = ExtractionStats()
        for done, record in enumerate(records, start=1):
            marker = self._marker(record)
            if marker is None:
                marker = self._compute(record)
                stats.computed += 1
            else:
                stats.reused += 1
            stats.clips += 1
            stats.pairs += int(marker["maps"])
            stats.seconds += float(marker["seconds"])
            if progress is not None:
                progress(done, len(records))
        return stats

    # ---- cache ----------------------------------------------------------------------------------------

    @staticmethod
    def _video_stamp(record: VideoRecord) -> list:
        stat = record.path.stat()
        return [stat.st_size, stat.st_mtime_ns] if record.path.is_file() else [stat.st_mtime_ns]

    def _marker(self, record: VideoRecord) -> dict | None:
        """The cache marker of a complete, current cache entry; None when it must be (re)computed."""
        path = self.folder_of(record) / DONE_MARKER
        try:
            marker = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if marker.get("video") != self._video_stamp(record):
            return None
        return marker

    def _compute(self, record: VideoRecord) -> dict:
        frames = self.frames.read_all(record)
        if len(frames) < 2:
            raise InputError(record.path, f"has {len(frames)} frame; motion needs at least 2")
        estimator = self._get_estimator(frames[0])
        start = time.perf_counter()
        flows = estimator.estimate_clip(frames)
        seconds = time.perf_counter() - start
        folder = self.folder_of(record)
        (folder / DONE_MARKER).unlink(missing_ok=True)
        self._levels = MemoryCache(FLOW_CACHE_BYTES)  # nothing read before this may be served again
        for index, flow in enumerate(flows, start=1):
            write_flow_jpeg(folder, index, flow, self.spec.bound)
        marker = {
            "maps": len(flows),
            "seconds": seconds,
            "video": self._video_stamp(record),
            "size": [frames[0].shape[1], frames[0].shape[0]],
            "source": self.spec.to_dict(),
        }
        write_json_atomic(folder / DONE_MARKER, marker)
        self._counts[record.name] = len(flows)
        return marker

    def _get_estimator(self, frame: np.ndarray):
        """Build the estimator once and warm it up untimed (first-call allocations are not extraction)."""
        if self._estimator is None:
            from scattermotion.estimator import get_estimator

            weights = self.spec.weights if self.spec.kind == "ours" else None
            self._estimator = get_estimator(
                self.spec.kind, weights=weights, device=self.spec.device, min_side=self.spec.min_side
            )
            self._estimator.estimate(frame, frame)
        return self._estimator


def weights_digest(path: str | os.PathLike) -> str:
    """A short content hash of a weights file, so caches of different models never mix."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def cache_key(spec: SourceSpec) -> str:
    """The cache sub-folder of a motion source: method, weights hash, frame size and bound."""
    parts = [spec.kind]
    if spec.kind == "ours":
        from scattermotion.estimator import DEFAULT_WEIGHTS

        weights = spec.weights or DEFAULT_WEIGHTS
        if not Path(weights).is_file():
            raise InputError(weights, "weights file not found")
        parts.append(weights_digest(weights))
    parts.append(f"s{spec.short_side}" if spec.short_side else "native")
    if spec.min_side:
        parts.append(f"m{spec.min_side}")
    parts.append(f"b{spec.bound:g}")
    return "-".join(parts)


def default_cache_dir(dataset_root: str | os.PathLike) -> Path:
    """``$XDG_CACHE_HOME/scattermotion/motion/<dataset folder name>-<hash of its path>``."""
    root = Path(dataset_root).resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tag = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return base / "scattermotion" / "motion" / f"{root.name}-{tag}"


def make_source(spec: SourceSpec, cache_dir: str | os.PathLike | None = None) -> MapSource:
    """The :class:`MapSource` for ``spec``; estimated motion needs a ``cache_dir``."""
    if spec.kind == "rgb":
        return RGBSource(spec)
    if spec.kind == "rgbdiff":
        return RGBDiffSource(spec)
    if spec.kind == PRECOMPUTED:
        return FlowFolderSource(spec)
    if cache_dir is None:
        raise ValueError("estimated motion sources need a cache_dir")
    return EstimatedFlowSource(spec, cache_dir)
