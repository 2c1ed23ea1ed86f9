"""Decoded frames held in memory, bounded in bytes: the one cache of the readers that come back to the same
videos again and again (training clips, action-recognition maps).

:class:`ByteLRU` holds arrays by key, least recently used dropped first. :class:`FrameCache` reads frames of
videos and frame folders at one scale through :func:`scattermotion.data.video.open_video`:

- a video is decoded whole once and kept (decoding a short clip costs far more than reading it back, and
  every epoch reads every video again); one larger than ``max_entry_bytes`` is streamed instead, decoded
  from its start up to the last frame asked for (slow for long videos, but memory stays bounded);
- a frame folder is never cached: reading the few images asked for is cheap, and decoding a whole folder
  for them is not.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from scattermotion.data.video import FolderVideoSource, VideoSource, open_video
from scattermotion.errors import InputError


class ByteLRU:
    """Arrays by key, least recently used dropped first once they hold more than ``max_bytes`` (the newest
    one is always kept)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[object, np.ndarray] = OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: object) -> np.ndarray | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: object, item: np.ndarray) -> np.ndarray:
        if key in self._items:
            self.nbytes -= self._items.pop(key).nbytes
        self._items[key] = item
        self.nbytes += item.nbytes
        while self.nbytes > self.max_bytes and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self.nbytes -= dropped.nbytes
        return item


class FrameCache:
    """Frames of videos and frame folders (by path) at ``short_side``, whole videos kept in a
    :class:`ByteLRU` of ``budget_bytes`` (see the module docstring). One per process: a DataLoader worker
    builds its own."""

    def __init__(self, budget_bytes: int, short_side: int | None = None, max_entry_bytes: int | None = None):
        self.short_side = short_side
        self.max_entry_bytes = int(budget_bytes if max_entry_bytes is None else max_entry_bytes)
        self._videos = ByteLRU(budget_bytes)
        self._counts: dict[Path, int] = {}
        self._streamed: set[Path] = set()  # videos too large to keep
        self.streamed_reads = 0  # reads served by streaming (for tests and logging)

    @property
    def cached_bytes(self) -> int:
        return self._videos.nbytes

    @property
    def cached_videos(self) -> int:
        return len(self._videos)

    def _open(self, path: Path) -> VideoSource:
        return open_video(path, short_side=self.short_side)

    def count(self, path: str | os.PathLike) -> int:
        """How many frames the source has (a video's container count until decoding says otherwise)."""
        path = Path(path)
        if path not in self._counts:
            self._counts[path] = self._open(path).frame_count
        return self._counts[path]

    def read(self, path: str | os.PathLike, indices: Sequence[int]) -> list[np.ndarray]:
        """Frames at ``indices`` (repeats allowed; past the end means the last frame)."""
        path = Path(path)
        last = self.count(path) - 1
        got = self._read(path, [min(int(i), last) for i in indices])
        if not got:
            raise InputError(path, "no frames could be decoded")
        last = max(got)
        return [got[min(int(i), last)] for i in indices]

    def clip(self, path: str | os.PathLike, start: int, length: int, step: int = 1) -> np.ndarray:
        """Frames ``start, start + step, ...`` (``length`` of them) as ``T×H×W×3 uint8``. A source holding
        fewer frames than counted moves the clip back to stay inside it."""
        path = Path(path)
        span = (length - 1) * step + 1
        got = self._read(path, range(start, start + span, step))
        if len(got) < length:
            held = self.count(path)  # exact now that the source ended early
            if held < span:
                raise InputError(path, f"has {held} frames, too few for a {span}-frame clip")
            start = held - span
            got = self._read(path, range(start, start + span, step))
        return np.stack([got[i] for i in range(start, start + span, step)])

    def _read(self, path: Path, indices: Iterable[int]) -> dict[int, np.ndarray]:
        """``{index: frame}`` for those of ``indices`` the source holds."""
        wanted = sorted({int(i) for i in indices})
        if not wanted:
            return {}
        video = self._cached(path)
        if video is not None:
            return {i: video[i] for i in wanted if i < len(video)}
        source = self._open(path)
        if isinstance(source, FolderVideoSource):  # images are read one by one, no need to stream
            return {i: next(source.frames(start=i, stop=i + 1)) for i in wanted if i < source.frame_count}
        self.streamed_reads += 1
        got, index = {}, -1
        for index, frame in enumerate(source.frames(stop=wanted[-1] + 1)):
            if index in wanted:
                got[index] = frame
        if index < wanted[-1]:  # the container promised more frames than decode: remember the truth
            self._counts[path] = index + 1
        return got

    def _cached(self, path: Path) -> np.ndarray | None:
        """The whole decoded video, decoding it first when it is small enough to keep; None for folders
        and large videos."""
        video = self._videos.get(path)
        if video is not None or path in self._streamed or path.is_dir():
            return video
        source = self._open(path)
        count = self.count(path)
        if count * source.width * source.height * 3 > self.max_entry_bytes:
            self._streamed.add(path)
            return None
        video = np.empty((count, source.height, source.width, 3), dtype=np.uint8)  # peak memory: the array
        decoded = 0
        for frame in source.frames(stop=count):
            video[decoded] = frame
            decoded += 1
        if decoded == 0:
            raise InputError(path, "no frames could be decoded")
        self._counts[path] = decoded
        return self._videos.put(path, video if decoded == count else video[:decoded].copy())
