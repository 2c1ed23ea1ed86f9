"""TSN segment sampling and the one torch ``Dataset`` every source goes through.

A video with ``count`` maps is split into ``num_segments`` equal segments; from each, one *snippet* of
``length`` consecutive maps is taken (a random start in training, the segment's centre in testing), as in
TSN (Wang et al., 2016). A snippet of motion maps is stacked along channels (``u1, v1, u2, v2, ...``: 10
channels for 5 flow maps), so an item is ``S×(length·C)×H×W``. Videos shorter than a snippet repeat their
last map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from scattermotion.action.datasets import VideoRecord
from scattermotion.action.sources import MapSource
from scattermotion.errors import InputError


def segment_starts(
    count: int, num_segments: int, length: int, train: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Start index of each segment's snippet among ``count`` maps (TSN's ``_sample_indices`` in training,
    ``_get_val_indices`` in testing). Snippets are ``length`` maps long; starts lie in ``0..count-length``."""
    if count < 1 or num_segments < 1 or length < 1:
        raise ValueError(f"need count, num_segments, length >= 1; got {count}, {num_segments}, {length}")
    span = count - length + 1  # number of valid starts
    if span <= 1:
        return np.zeros(num_segments, dtype=np.int64)
    if not train:
        tick = span / num_segments
        return (tick / 2.0 + tick * np.arange(num_segments)).astype(np.int64)
    if rng is None:
        raise ValueError("training sampling needs a random generator")
    average = span // num_segments
    if average > 0:
        return np.arange(num_segments) * average + rng.integers(average, size=num_segments)
    return np.sort(rng.integers(span, size=num_segments))


def snippet_indices(starts: np.ndarray, length: int, count: int) -> np.ndarray:
    """``S×length`` map indices: each start and the maps after it, past the end clamped to the last map."""
    indices = np.asarray(starts)[:, None] + np.arange(length)[None, :]
    return np.minimum(indices, count - 1)


class SnippetDataset(Dataset):
    """``(S×(length·C)×H×W float32 tensor, label)`` per video, for any :class:`MapSource`.

    ``crop`` (pixels, square) takes a random crop in training and the centre crop in testing, the same for
    every segment of a video. Sampling is a function of ``(seed, epoch, index)`` (call :meth:`set_epoch`),
    so results do not depend on DataLoader workers.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        source: MapSource,
        num_segments: int = 3,
        length: int | None = None,
        train: bool = True,
        crop: int | None = None,
        seed: int = 0,
    ):
        if not records:
            raise InputError(None, "no videos to load")
        self.records = list(records)
        self.source = source
        self.num_segments = int(num_segments)
        self.length = int(length) if length is not None else source.default_length
        if self.num_segments < 1 or self.length < 1:
            raise InputError(None, f"segments and snippet length must be >= 1, got {num_segments}, {length}")
        self.train = train
        self.crop = crop
        self.seed = int(seed)
        self.epoch = 0

    @property
    def channels(self) -> int:
        return self.length * self.source.channels

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def indices(self, index: int) -> np.ndarray:
        """The ``S×length`` map indices item ``index`` reads this epoch."""
        record = self.records[index]
        count = self.source.count(record)
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        starts = segment_starts(count, self.num_segments, self.length, self.train, rng)
        return snippet_indices(starts, self.length, count)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        record = self.records[index]
        indices = self.indices(index)
        maps = self.source.read(record, indices.reshape(-1))  # (S·L)×H×W×C
        maps = self._crop(maps, index)
        segments, length = indices.shape
        height, width, channels = maps.shape[1:]
        stacked = maps.reshape(segments, length, height, width, channels).transpose(0, 1, 4, 2, 3)
        stacked = stacked.reshape(segments, length * channels, height, width)
        return torch.from_numpy(np.ascontiguousarray(stacked, dtype=np.float32)), record.label

    def _crop(self, maps: np.ndarray, index: int) -> np.ndarray:
        if self.crop is None:
            return maps
        height, width = maps.shape[1:3]
        if self.crop > min(height, width):
            raise InputError(
                self.records[index].path, f"crop {self.crop} is larger than the {width}x{height} frames"
            )
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            top = int(rng.integers(height - self.crop + 1))
            left = int(rng.integers(width - self.crop + 1))
        else:
            top, left = (height - self.crop) // 2, (width - self.crop) // 2
        return maps[:, top : top + self.crop, left : left + self.crop]


def collate_snippets(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack items into ``B×S×C×H×W``; videos of different sizes get a one-line hint instead of a trace."""
    shapes = {tuple(item.shape) for item, _ in batch}
    if len(shapes) > 1:
        raise InputError(
            None,
            f"videos of different sizes in one batch {sorted(shapes)}: set a short side and a crop "
            "(--short-side 128 --crop 112) so that every item has the same size",
        )
    return torch.stack([item for item, _ in batch]), torch.tensor([label for _, label in batch])
