"""What the classifier sees of a video: a sequence of *maps* (motion maps, RGB frames or frame differences),
read through one interface whatever produced them.

Sources (``SourceSpec.kind``):

- ``ours``, ``tvl1``, ``dis``, ``dis-fast``, ``farneback``: motion estimated from the decoded frames, once per
  video by ``scattermotion extract``'s own path and cached on disk in its denseflow layout
  (``CACHE/<key>/<video name>/flow_x_00001.jpg`` ..., its ``.done`` marker written last with the measured
  timings), so later epochs, seeds and runs only read it.
  The cache key names the method, its weights (hashed), the frame size and the bound.
- ``precomputed``: flow folders already on disk (``scattermotion extract``, denseflow, mmaction2
  ``rawframes``): ``DIR/<video name>/flow_x_%05d.jpg`` + ``flow_y_`` or mmaction2's ``x_%05d.jpg`` +
  ``y_``, numbered from 1 or (denseflow since 2019) from 0; or the video's own frame folder when no DIR is
  given.
- ``rgbdiff``: RGB difference of adjacent frames (TSN's RGB-diff motion stand-in), 3 channels per map.
- ``rgb``: the frames themselves (the appearance stream).

Every motion map is clipped to ±``bound`` pixels and divided by it (values in [-1, 1]), for every motion
source alike, as the denseflow JPEGs store it (so cached and pre-extracted motion read back the same way).
RGB frames are in [0, 1]; RGB differences in [-1, 1].
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from scattermotion.action.datasets import VideoRecord
from scattermotion.data.frame_cache import ByteLRU, FrameCache
from scattermotion.errors import InputError
from scattermotion.extract import ExtractOptions, extract_item, is_done, read_done, source_fingerprint
from scattermotion.inputs import InputItem
from scattermotion.io.flow_jpeg import (
    DEFAULT_BOUND,
    FlowImageSeries,
    check_bound,
    find_flow_images,
    read_flow_component,
    uint8_to_flow,
)
from scattermotion.methods import MOTION_SOURCES, uses_network

PRECOMPUTED = "precomputed"
SOURCE_KINDS = (*MOTION_SOURCES, PRECOMPUTED, "rgbdiff", "rgb")
DEFAULT_MOTION_LENGTH = 5  # maps per snippet: 5 flow maps -> 10 channels (TSN)
FRAME_CACHE_BYTES = 512 * 2**20  # decoded short videos kept in memory per source
FRAME_CACHE_ENTRY_BYTES = FRAME_CACHE_BYTES // 8  # a longer video is streamed instead of flushing the cache
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
        check_bound(self.bound)
        if self.short_side is not None and self.short_side < 8:
            raise InputError(None, f"short side must be at least 8 px, got {self.short_side}")
        if self.weights is not None and not self.uses_network:
            raise InputError(self.weights, f"weights apply to the ours source only, not {self.kind}")
        if self.min_side is not None and not self.uses_network:
            raise InputError(None, f"min side applies to the ours source only, not {self.kind}")

    @property
    def uses_network(self) -> bool:
        """Our network (refined or not): weights, minimum side and device apply, and key the cache."""
        return uses_network(self.kind)

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


# ---- sources -----------------------------------------------------------------------------------------------


def frame_cache(spec: SourceSpec) -> FrameCache:
    """The decoded-frame cache of one source."""
    return FrameCache(FRAME_CACHE_BYTES, spec.short_side, max_entry_bytes=FRAME_CACHE_ENTRY_BYTES)


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
        self.frames = frame_cache(spec)

    def count(self, record: VideoRecord) -> int:
        return self.frames.count(record.path)

    def read(self, record: VideoRecord, indices: Sequence[int]) -> np.ndarray:
        frames = self.frames.read(record.path, indices)
        return np.stack(frames).astype(np.float32) * np.float32(1.0 / 255.0)


class RGBDiffSource(MapSource):
    """Differences of adjacent frames, ``(frame[i+1] - frame[i]) / 255`` in [-1, 1]: map i of N-1."""

    def __init__(self, spec: SourceSpec):
        super().__init__(spec)
        self.frames = frame_cache(spec)

    def count(self, record: VideoRecord) -> int:
        return max(self.frames.count(record.path) - 1, 1)

    def read(self, record: VideoRecord, indices: Sequence[int]) -> np.ndarray:
        indices = [int(i) for i in indices]
        frames = self.frames.read(record.path, indices + [i + 1 for i in indices])
        first = np.stack(frames[: len(indices)]).astype(np.float32)
        second = np.stack(frames[len(indices) :]).astype(np.float32)
        return (second - first) * np.float32(1.0 / 255.0)


class FlowFolderSource(MapSource):
    """Motion stored as flow JPEGs in ``folder_of(record)``: denseflow's ``flow_x_N.jpg`` + ``flow_y_N.jpg``
    or mmaction2's ``x_N.jpg`` + ``y_N.jpg``, numbered from 0 or from 1
    (:func:`scattermotion.io.flow_jpeg.find_flow_images`)."""

    def __init__(self, spec: SourceSpec):
        super().__init__(spec)
        self._series: dict[str, FlowImageSeries] = {}
        self._levels = ByteLRU(FLOW_CACHE_BYTES)

    def folder_of(self, record: VideoRecord) -> Path:
        if self.spec.folder is not None:
            return Path(self.spec.folder) / record.name
        if record.kind == "frames":
            return record.path
        raise InputError(
            record.path, "precomputed motion needs a flow folder (precomputed:DIR) for video files"
        )

    def series(self, record: VideoRecord) -> FlowImageSeries:
        if record.name not in self._series:
            self._series[record.name] = find_flow_images(self.folder_of(record))
        return self._series[record.name]

    def count(self, record: VideoRecord) -> int:
        return self.series(record).count

    def read(self, record: VideoRecord, indices: Sequence[int]) -> np.ndarray:
        series = self.series(record)
        bound = self.spec.bound
        maps = []
        for i in indices:
            key = (str(series.folder), int(i))
            levels = self._levels.get(key)
            if levels is None:  # the 8-bit images as stored: 4x smaller in memory than the float map
                x_path, y_path = series.paths(int(i))
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
    """Motion from an estimator, computed once per video into a denseflow-layout cache by ``extract``'s own
    path (:func:`scattermotion.extract.extract_item`: frames streamed, files written atomically, its done
    marker last), so a cache entry is exactly what ``scattermotion extract`` would write."""

    def __init__(self, spec: SourceSpec, cache_dir: str | os.PathLike):
        super().__init__(spec)
        self.cache_dir = Path(cache_dir) / cache_key(spec)
        self._estimator = None

    def folder_of(self, record: VideoRecord) -> Path:
        return self.cache_dir / record.name

    def series(self, record: VideoRecord) -> FlowImageSeries:
        if record.name not in self._series:
            self._marker(record) or self._compute(record)
        return super().series(record)

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
            stats.pairs += int(marker["pairs"])
            stats.seconds += float(marker.get("timings", {}).get("model", 0.0))
            if progress is not None:
                progress(done, len(records))
        return stats

    # ---- cache ----------------------------------------------------------------------------------------

    def _options(self) -> ExtractOptions:
        spec = self.spec
        return ExtractOptions(
            out_dir=self.cache_dir,
            format="jpg",
            method=spec.kind,
            weights=Path(spec.weights) if spec.weights else None,
            bound=spec.bound,
            short_side=spec.short_side,
            device=spec.device,
            min_side=spec.min_side,
            progress=False,
        )

    @staticmethod
    def _item(record: VideoRecord) -> InputItem:
        return InputItem(record.path, record.kind, PurePosixPath(record.name))

    def _marker(self, record: VideoRecord) -> dict | None:
        """The done marker of a complete, current cache entry; None when it must be (re)computed."""
        folder = self.folder_of(record)
        if not is_done(folder, self._options().settings(), source_fingerprint(self._item(record))):
            return None
        return read_done(folder)

    def _compute(self, record: VideoRecord) -> dict:
        self._levels = ByteLRU(FLOW_CACHE_BYTES)  # nothing read before this may be served again
        self._series.pop(record.name, None)
        result = extract_item(self._item(record), self._get_estimator(record), self._options())
        marker = read_done(self.folder_of(record)) if result.status == "done" else None
        if marker is None:
            raise InputError(None, result.reason or f"{record.path}: motion extraction failed")
        return marker

    def _get_estimator(self, record: VideoRecord):
        """Build the estimator once and warm it up untimed (first-call allocations are not extraction)."""
        if self._estimator is None:
            from scattermotion.data.video import open_video
            from scattermotion.estimator import get_estimator

            weights = self.spec.weights if self.spec.uses_network else None
            self._estimator = get_estimator(
                self.spec.kind, weights=weights, device=self.spec.device, min_side=self.spec.min_side
            )
            frame = next(open_video(record.path, short_side=self.spec.short_side).frames(stop=1), None)
            if frame is not None:
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
    if spec.uses_network:
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
