"""Training clips: T-frame windows sampled inside shots of unlabeled videos, mixed with synthetic clips.

**Sources** are the INPUTs of ``scattermotion train``: video files, folders searched recursively for videos
and frame folders, frame folders, and list files (``.txt``: one path per line), expanded by
:func:`scattermotion.inputs.expand_inputs`. :func:`scan_videos` opens each once to count its frames and find
its scene cuts (:func:`~scattermotion.data.scenecut.detect_scene_cuts`); the result is cached in a JSON
file keyed by path, size and modification time, so a second run (or a resumed one) does not decode again.

**Sampling** is a pure function of ``(seed, rank, index)``: sample ``index`` of rank ``rank`` draws its
frame step, its clip (uniformly over all clips of all videos that stay inside one shot) and its
augmentation from ``np.random.default_rng([seed, rank, index])``. So the data do not depend on the number of
DataLoader workers, a resumed run continues with exactly the clips it would have seen, and every rank of a
distributed run draws its own clips.

**Decoding is lazy**, through :class:`scattermotion.data.frame_cache.FrameCache`: frame folders are read image
by image, only the T frames of a clip. A video is decoded once at training scale and kept in a per-process
LRU cache bounded in bytes (each DataLoader worker has its own); a video too large for the cache on its own
is streamed for every clip (decoded from its start up to the clip: slow for long videos, but memory stays
bounded).

**Synthetic clips** (:class:`~scattermotion.data.synthetic.SyntheticClips`) come with exact ground truth.
Training draws them from seeds disjoint from every evaluation set; :class:`MixedClipDataset` mixes them in
at a ratio. The ground truth travels with the sample (``has_gt``) but is used only if the training config
asks for a supervised term; by default training is self-supervised only.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from scattermotion.augment import AugmentConfig, augment_clip
from scattermotion.data.frame_cache import FrameCache
from scattermotion.data.nuisance import NuisanceConfig, apply_nuisances
from scattermotion.data.scenecut import detect_scene_cuts, sample_clip_starts, shots
from scattermotion.errors import InputError
from scattermotion.inputs import InputItem, expand_inputs, open_source
from scattermotion.io.atomic import write_json_atomic

log = logging.getLogger(__name__)

CUT_CACHE_VERSION = 1
# Training synthetic seeds start here: far from every evaluation seed (flowsets and validation use 8 digits).
TRAINING_SYNTHETIC_SEED_BASE = 2**40
SYNTHETIC_CLIP_COUNT = 2**31 - 1  # effectively endless; clip i is a pure function of (seed, i)


# ---- scanning: frame counts and shots ----------------------------------------------------------------------


@dataclass(frozen=True)
class VideoEntry:
    """One training source after scanning: where it is, how many frames, where its shots are."""

    item: InputItem
    frame_count: int
    cuts: tuple[int, ...]
    height: int  # frame size at training scale (after ``short_side``)
    width: int

    @property
    def shots(self) -> list[tuple[int, int]]:
        return shots(self.frame_count, self.cuts)

    @property
    def frame_bytes(self) -> int:
        return self.height * self.width * 3


def _cache_key(item: InputItem) -> str:
    """Path + size + modification time: a changed file or folder is scanned again."""
    path = item.source.resolve()
    stat = path.stat()
    size = len(list(path.iterdir())) if path.is_dir() else stat.st_size
    return f"{path}|{size}|{stat.st_mtime_ns}"


def _counted(frames: Iterable[np.ndarray], counter: list[int]) -> Iterator[np.ndarray]:
    for frame in frames:
        counter[0] += 1
        yield frame


def scan_videos(
    inputs: Sequence[str | os.PathLike],
    short_side: int | None = None,
    cut_cache: str | os.PathLike | None = None,
    detect_cuts: bool = True,
    list_root: str | os.PathLike | None = None,
    min_frames: int = 2,
) -> list[VideoEntry]:
    """Expand ``inputs`` and scan every source: exact frame count (by decoding) and scene cuts.

    ``cut_cache``: a JSON file holding earlier scans (read if present, updated atomically). Sources with
    fewer than ``min_frames`` frames are skipped with a warning; a source that cannot be opened raises
    :class:`InputError` naming it.
    """
    items = expand_inputs(inputs, list_root=list_root)
    if not items:
        raise InputError(None, "no training videos or frame folders found in the inputs")
    cache_path = Path(cut_cache) if cut_cache is not None else None
    cache: dict[str, Any] = {}
    if cache_path is not None and cache_path.is_file():
        try:
            data = json.loads(cache_path.read_text())
            if data.get("version") == CUT_CACHE_VERSION:
                cache = data.get("videos", {})
        except (OSError, ValueError):
            log.warning("%s: unreadable scene-cut cache; scanning again", cache_path)
    changed = False
    entries = []
    for item in items:
        if not item.source.exists():
            raise InputError(item.source, "no such file or folder")
        source = open_source(item, short_side=short_side)
        key = _cache_key(item)
        record = cache.get(key)
        if record is None or (detect_cuts and record.get("cuts") is None):
            if detect_cuts:
                counter = [0]
                cuts: list[int] | None = detect_scene_cuts(_counted(source.frames(), counter))
                count = counter[0]
            else:
                cuts, count = None, int(source.frame_count)
            record = {"frame_count": count, "cuts": cuts}
            cache[key] = record
            changed = True
        count = int(record["frame_count"])
        if count < min_frames:
            log.warning("%s: %d frames, fewer than %d; skipped", item.source, count, min_frames)
            continue
        cuts = record["cuts"] if detect_cuts else []
        entries.append(VideoEntry(item, count, tuple(int(c) for c in cuts), source.height, source.width))
    if cache_path is not None and changed:
        cached = {"version": CUT_CACHE_VERSION, "videos": cache}
        write_json_atomic(cache_path, cached, sort_keys=True, make_parents=True)
    return entries


# ---- samples -----------------------------------------------------------------------------------------------


def make_sample(
    frames: np.ndarray, flows: np.ndarray | None, index: int, synthetic: bool
) -> dict[str, torch.Tensor]:
    """A training sample as tensors: frames ``T×3×H×W`` float in [0, 1], ground truth ``(T-1)×2×H×W`` (zeros
    and ``has_gt`` False when there is none), so real and synthetic samples batch together."""
    frames_t = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
    if flows is None:
        flows_t = torch.zeros(frames_t.shape[0] - 1, 2, *frames_t.shape[-2:], dtype=torch.float32)
    else:
        flows_t = torch.from_numpy(flows).permute(0, 3, 1, 2).contiguous()
    return {
        "frames": frames_t,
        "flows": flows_t,
        "has_gt": torch.tensor(flows is not None),
        "synthetic": torch.tensor(synthetic),
        "index": torch.tensor(index, dtype=torch.int64),
    }


@dataclass(frozen=True)
class ClipPlan:
    video: int  # index into the dataset's entries
    start: int  # first frame
    step: int  # frame step inside the clip


@dataclass
class ClipSampling:
    """How clips are cut from videos (shared by every sample)."""

    clip_len: int = 4
    crop_size: tuple[int, int] = (256, 256)  # (H, W)
    frame_steps: tuple[int, ...] = (1,)  # the step of each clip is drawn uniformly from these
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        self.crop_size = (int(self.crop_size[0]), int(self.crop_size[1]))
        self.frame_steps = tuple(int(s) for s in self.frame_steps)
        if self.clip_len < 2:
            raise ValueError(f"clip_len must be >= 2, got {self.clip_len}")
        if not self.frame_steps or min(self.frame_steps) < 1:
            raise ValueError(f"frame_steps must be positive integers, got {self.frame_steps}")


class VideoClipDataset(Dataset):
    """Endless map-style dataset: ``dataset[index]`` is a random augmented clip, a pure function of
    ``(seed, rank, index)`` (see the module docstring). ``len()`` is ``length`` (huge by default)."""

    def __init__(
        self,
        entries: Sequence[VideoEntry],
        sampling: ClipSampling,
        seed: int = 0,
        rank: int = 0,
        cache_bytes: int = 2**30,
        short_side: int | None = None,
        length: int = 2**62,
    ):
        self.entries = list(entries)
        self.sampling = sampling
        self.seed, self.rank, self.length = int(seed), int(rank), int(length)
        self.cache_bytes, self.short_side = int(cache_bytes), short_side
        self._store: FrameCache | None = None
        self._store_pid = -1
        # Per frame step: the valid clip starts of every video and their running totals.
        self._starts: dict[int, list[np.ndarray]] = {}
        self._cumulative: dict[int, list[int]] = {}
        for step in sampling.frame_steps:
            span = (sampling.clip_len - 1) * step + 1
            starts = [np.asarray(sample_clip_starts(e.shots, span, 1), dtype=np.int64) for e in self.entries]
            self._starts[step] = starts
            self._cumulative[step] = np.cumsum([len(s) for s in starts]).tolist()
        for step, cumulative in self._cumulative.items():
            if not cumulative or cumulative[-1] == 0:
                raise InputError(
                    None,
                    f"no shot of the training videos is long enough for a {sampling.clip_len}-frame clip "
                    f"with frame step {step}",
                )

    def __len__(self) -> int:
        return self.length

    def clip_count(self, step: int = 1) -> int:
        """How many distinct clips (before cropping) the videos hold at this frame step."""
        return self._cumulative[step][-1]

    @property
    def store(self) -> FrameCache:
        if self._store is None or self._store_pid != os.getpid():  # one cache per DataLoader worker
            self._store = FrameCache(self.cache_bytes, self.short_side)
            self._store_pid = os.getpid()
        return self._store

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.rank, int(index)])

    def _draw_plan(self, rng: np.random.Generator) -> ClipPlan:
        steps = self.sampling.frame_steps
        step = steps[int(rng.integers(len(steps)))]
        cumulative = self._cumulative[step]
        pick = int(rng.integers(cumulative[-1]))
        video = bisect.bisect_right(cumulative, pick)
        offset = pick - (cumulative[video - 1] if video else 0)
        return ClipPlan(video, int(self._starts[step][video][offset]), step)

    def plan(self, index: int) -> ClipPlan:
        """Which video, start frame and step sample ``index`` uses (without decoding anything)."""
        return self._draw_plan(self._rng(index))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng(index)
        plan = self._draw_plan(rng)
        sampling = self.sampling
        raw = self.store.clip(self.entries[plan.video].item.source, plan.start, sampling.clip_len, plan.step)
        frames, _ = augment_clip(raw, rng, sampling.augment, crop_size=sampling.crop_size)
        return make_sample(frames, None, index, synthetic=False)


class SyntheticClipDataset(Dataset):
    """Endless synthetic clips at the crop size with exact ground truth, augmented (flips, reversal,
    colour; no crop or scale), from seeds disjoint from every evaluation set."""

    def __init__(
        self,
        sampling: ClipSampling,
        seed: int = 0,
        rank: int = 0,
        kind: str = "mixed",
        max_disp: float = 32.0,
        length: int = 2**62,
        keep_ground_truth: bool = False,
        fast_render: bool = True,
    ):
        from scattermotion.data.synthetic import SyntheticClips

        if (
            keep_ground_truth
        ):  # a reversed clip loses its ground truth; the generator's motion is random anyway
            sampling = dataclasses.replace(
                sampling, augment=dataclasses.replace(sampling.augment, reverse=0.0)
            )
        self.sampling = sampling
        self.seed, self.rank, self.length = int(seed), int(rank), int(length)
        self.clips = SyntheticClips(
            seed=training_synthetic_seed(seed, rank),
            count=SYNTHETIC_CLIP_COUNT,
            size=sampling.crop_size,
            clip_len=sampling.clip_len,
            kind=kind,
            max_disp=max_disp,
            fast=fast_render,
        )

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip = self.clips[int(index) % SYNTHETIC_CLIP_COUNT]
        rng = np.random.default_rng([self.seed, self.rank, int(index), 2])
        frames, flows = augment_clip(
            clip.frames, rng, self.sampling.augment, crop_size=None, flows=clip.flows
        )
        return make_sample(frames, flows, index, synthetic=True)


def training_synthetic_seed(seed: int, rank: int) -> int:
    """The SyntheticClips seed of a training run's rank: never one of the evaluation seeds."""
    return TRAINING_SYNTHETIC_SEED_BASE + int(seed) * 4096 + int(rank)


class MixedClipDataset(Dataset):
    """Sample ``index`` is synthetic with probability ``synthetic_ratio`` (decided from ``(seed, rank,
    index)``), else real. Either part may be absent when the ratio is 0 or 1. With ``student_nuisance`` every
    sample also has ``student_frames``: the frames self-distillation's student sees."""

    def __init__(
        self,
        real: VideoClipDataset | None,
        synthetic: SyntheticClipDataset | None,
        synthetic_ratio: float,
        seed: int = 0,
        rank: int = 0,
        length: int = 2**62,
        student_nuisance: NuisanceConfig | None = None,
    ):
        if not 0 <= synthetic_ratio <= 1:
            raise ValueError(f"synthetic_ratio must be in [0, 1], got {synthetic_ratio}")
        if synthetic_ratio < 1 and real is None:
            raise ValueError("real clips are needed unless synthetic_ratio is 1")
        if synthetic_ratio > 0 and synthetic is None:
            raise ValueError("synthetic clips are needed when synthetic_ratio > 0")
        self.real, self.synthetic, self.synthetic_ratio = real, synthetic, float(synthetic_ratio)
        self.seed, self.rank, self.length = int(seed), int(rank), int(length)
        self.student_nuisance = student_nuisance

    def __len__(self) -> int:
        return self.length

    def is_synthetic(self, index: int) -> bool:
        if self.synthetic_ratio in (0.0, 1.0):
            return self.synthetic_ratio == 1.0
        return bool(
            np.random.default_rng([self.seed, self.rank, int(index), 1]).random() < self.synthetic_ratio
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        synthetic = self.is_synthetic(index)
        part = self.synthetic if synthetic else self.real
        assert part is not None
        sample = part[index]
        if self.student_nuisance is not None:
            # Self-distillation: the teacher reads the clean clip, the student this copy. Synthetic clips
            # carry their nuisances already; a real one gets its own (they move no pixel: the target holds).
            rng = np.random.default_rng([self.seed, self.rank, int(index), 3])
            sample["student_frames"] = (
                sample["frames"]
                if synthetic
                else with_nuisances(sample["frames"], rng, self.student_nuisance)
            )
        return sample


def with_nuisances(frames: torch.Tensor, rng: np.random.Generator, cfg: NuisanceConfig) -> torch.Tensor:
    """``T×3×H×W`` float frames in [0, 1] with the nuisances of :func:`apply_nuisances` drawn from ``rng``
    (no motion blur: a real clip's motion is unknown)."""
    cfg = dataclasses.replace(cfg, blur=0.0)
    grey_levels = (frames.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
    still = np.zeros((len(frames) - 1, *grey_levels.shape[1:3], 2), np.float32)
    out = apply_nuisances(grey_levels, still, rng, cfg)
    return torch.from_numpy(out.astype(np.float32) / np.float32(255.0)).permute(0, 3, 1, 2).contiguous()
