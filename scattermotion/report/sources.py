"""One ``scattermotion report`` INPUT as frames (and ground truth where it exists), bounded and resized.

An INPUT is one of:

- a built-in set with ground-truth motion (``motorcycle``, ``aloe``, ``graf``, ``synthetic-smooth``,
  ``synthetic-sprites``; :data:`scattermotion.data.flowsets.FLOW_SETS`): up to ``pairs`` of its samples, each
  an independent pair at the set's reference scale;
- a built-in real video by name (``vtest``, ``bikes``, ...) or a video file or a folder of frames: ``pairs``
  consecutive pairs from frame ``start``, split at scene cuts (a pair across a cut has no motion to find);
- two image files joined by a comma, ``A.png,B.png``: one pair.

Frames whose long side exceeds ``max_side`` are shrunk to it (ground truth is resized and rescaled with them),
so a report stays quick on large footage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from scattermotion.data import fetched
from scattermotion.data.flowsets import FLOW_SETS, FlowSample, load_flow_set
from scattermotion.data.frame_folder import is_image_name
from scattermotion.data.scenecut import detect_scene_cuts, shots
from scattermotion.data.video import open_video, read_image, resize_frame
from scattermotion.errors import InputError


@dataclass
class ReportInput:
    """Frames to analyse: ``clips`` are runs of consecutive frames (each ≥ 2; a method sees one clip at a
    time), ``ground_truth`` holds one H×W×2 motion map (NaN = unknown) per adjacent pair of every clip, in
    order, or is None when the input has no ground truth. ``fps`` is the source's rate (None for pairs)."""

    name: str
    source: str
    clips: list[list[np.ndarray]]
    ground_truth: list[np.ndarray] | None = None
    fps: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def pair_count(self) -> int:
        return sum(len(clip) - 1 for clip in self.clips)

    @property
    def size(self) -> tuple[int, int]:
        """``(W, H)`` of the frames."""
        height, width = self.clips[0][0].shape[:2]
        return width, height


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(W, H)`` shrunk (never enlarged) so that the long side is at most ``max_side``, aspect kept."""
    scale = min(1.0, max_side / max(width, height))
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


def _shrink_sample(sample: FlowSample, max_side: int) -> FlowSample:
    height, width = sample.frame1.shape[:2]
    size = fit_size(width, height, max_side)
    if size == (width, height):
        return sample
    return FlowSample(
        sample.name,
        resize_frame(sample.frame1, size),
        resize_frame(sample.frame2, size),
        resize_flow(sample.flow, size),
    )


def load_flow_set_input(name: str, pairs: int, max_side: int) -> ReportInput:
    """Up to ``pairs`` samples of a built-in ground-truth set, each an independent 2-frame clip."""
    samples = load_flow_set(name)
    kept = [_shrink_sample(s, max_side) for s in samples[:pairs]]
    width, height = kept[0].frame1.shape[1], kept[0].frame1.shape[0]
    notes = [] if len(kept) == len(samples) else [f"first {len(kept)} of the set's {len(samples)} pairs"]
    return ReportInput(
        name,
        f"built-in evaluation set with ground truth ({width}x{height})",
        clips=[[s.frame1, s.frame2] for s in kept],
        ground_truth=[s.flow for s in kept],
        notes=notes,
    )


def load_image_pair(first: Path, second: Path, max_side: int) -> ReportInput:
    """Two image files as one pair; both must have the same size."""
    frame1, frame2 = read_image(first), read_image(second)
    if frame1.shape != frame2.shape:
        raise InputError(
            second,
            f"size {frame2.shape[1]}x{frame2.shape[0]} differs from {first} "
            f"({frame1.shape[1]}x{frame1.shape[0]})",
        )
    size = fit_size(frame1.shape[1], frame1.shape[0], max_side)
    name = f"{first.stem} → {second.stem}"
    if first.parent == second.parent and first.parent.name:  # frame10/frame11 say little without their folder
        name = f"{first.parent.name}/{name}"
    return ReportInput(
        name,
        f"{first} , {second} ({frame1.shape[1]}x{frame1.shape[0]})",
        clips=[[resize_frame(frame1, size), resize_frame(frame2, size)]],
    )


def load_video_input(path: Path, name: str, pairs: int, start: int, max_side: int) -> ReportInput:
    """``pairs + 1`` consecutive frames from frame ``start``, split into shots at scene cuts."""
    source = open_video(path)
    size = fit_size(source.width, source.height, max_side)
    frames = []
    for frame in source.frames(start=start, stop=start + pairs + 1):
        frames.append(resize_frame(frame, size))
    if len(frames) < 2:
        raise InputError(path, f"fewer than 2 frames from frame {start} on (got {len(frames)})")
    cuts = detect_scene_cuts(frames) if len(frames) > 2 else []
    clips = [frames[s:e] for s, e in shots(len(frames), cuts) if e - s >= 2]
    if not clips:
        raise InputError(path, "no two consecutive frames inside one shot")
    notes = [f"scene cuts at frames {[start + c for c in cuts]}: pairs across them skipped"] if cuts else []
    fps = float(source.fps) if source.fps and math.isfinite(source.fps) else None
    described = (
        f"{path} (frames {start}–{start + len(frames) - 1}, {source.source_width}x{source.source_height})"
    )
    return ReportInput(name, described, clips=clips, fps=fps, notes=notes)


def load_input(spec: str, pairs: int = 8, start: int = 0, max_side: int = 384) -> ReportInput:
    """Resolve one INPUT (see the module docstring); :class:`InputError` names what cannot be used."""
    if pairs < 1 or max_side < 16 or start < 0:
        raise ValueError(f"need pairs >= 1, max_side >= 16, start >= 0; got {pairs}, {max_side}, {start}")
    if spec in FLOW_SETS:
        return load_flow_set_input(spec, pairs, max_side)
    if spec in fetched.REAL_VIDEOS:
        return load_video_input(fetched.real_video(spec), spec, pairs, start, max_side)
    path = Path(spec).expanduser()
    if not path.exists() and "," in spec:
        parts = [Path(p.strip()).expanduser() for p in spec.split(",")]
        if len(parts) != 2 or not all(parts):
            raise InputError(spec, "an image pair is two image files joined by one comma: A.png,B.png")
        for part in parts:
            if not part.is_file():
                raise InputError(part, "no such image file")
        return load_image_pair(parts[0], parts[1], max_side)
    if not path.exists():
        known = ", ".join([*FLOW_SETS, *fetched.REAL_VIDEOS])
        raise InputError(spec, f"no such file or folder, and not a built-in name ({known})")
    if path.is_file() and is_image_name(path.name):
        raise InputError(path, "a single image has no motion; give two images joined by a comma: A.png,B.png")
    return load_video_input(path, path.stem if path.is_file() else path.name, pairs, start, max_side)
