"""MP4 output with PyAV: H.264 (libx264, yuv420p) when the build has it, MPEG-4 Part 2 otherwise.

The video is encoded into a temporary file beside the target and renamed onto it when the writer closes
cleanly; after an exception the temporary file is removed, so a half-written video never appears.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from scattermotion.io.atomic import commit, discard, temp_path_beside
from scattermotion.io.checks import as_rgb
from scattermotion.io.visualize import make_strip

CODECS = ("libx264", "mpeg4")  # in order of preference
X264_OPTIONS = {"crf": "20", "preset": "fast"}
X264_LOSSLESS = {"qp": "0", "preset": "fast", "threads": "1"}  # deterministic=True: exact pixels, one thread


def available_codec() -> str:
    """The first of :data:`CODECS` this PyAV build can encode."""
    for name in CODECS:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # PyAV raises its own UnknownCodecError / ValueError depending on version
            continue
        return name
    raise RuntimeError(f"PyAV has none of the encoders {CODECS}")


class Mp4Writer:
    """Write H×W×3 uint8 RGB frames (grayscale accepted) of a fixed size to an MP4 file.

    ``with Mp4Writer("out.mp4", fps=25, width=w, height=h) as video: video.write(frame)``.
    yuv420p needs even dimensions, so an odd width or height is padded by repeating the last column or row.
    ``deterministic=True`` encodes losslessly (x264 ``qp=0``) on one thread, so the same frames always decode
    to the same pixels: lossy libx264 (PyAV 18) gave a 32x32 clip slightly different pixels from one encode
    to the next within one process (measured), which breaks generated benchmarks that must be reproducible.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        width: int,
        height: int,
        codec: str | None = None,
        deterministic: bool = False,
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"video size must be positive, got {width}×{height}")
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.codec = codec or available_codec()
        self.frames_written = 0
        rate = Fraction(fps).limit_denominator(1001)
        self._temp = temp_path_beside(self.path)
        try:
            self._container = av.open(str(self._temp), mode="w", format="mp4")
            self._stream = self._container.add_stream(self.codec, rate=rate)
            self._stream.width = self.width + self.width % 2
            self._stream.height = self.height + self.height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.codec_context.time_base = 1 / rate
            if deterministic:
                self._stream.codec_context.thread_count = 1
            if self.codec == "libx264":
                self._stream.options = dict(X264_LOSSLESS if deterministic else X264_OPTIONS)
            else:  # MPEG-4 Part 2 has no CRF; about 0.25 bit per pixel keeps visualisations clean
                self._stream.bit_rate = int(self._stream.width * self._stream.height * float(rate) * 0.25)
        except BaseException:
            discard(self._temp)
            raise
        self._open = True

    def write(self, rgb_frame: np.ndarray) -> None:
        """Encode one H×W×3 uint8 RGB frame of the size given at construction."""
        if not self._open:
            raise ValueError(f"{self.path}: writer is closed")
        frame = as_rgb(rgb_frame)
        if frame.shape[:2] != (self.height, self.width):
            got = f"{frame.shape[1]}×{frame.shape[0]}"
            raise ValueError(f"{self.path}: frame is {got}, the video is {self.width}×{self.height}")
        frame = np.pad(frame, ((0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames_written
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and move the finished file onto the target path."""
        if not self._open:
            return
        self._open = False
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            commit(self._temp, self.path)
        except BaseException:
            self._close_quietly()
            discard(self._temp)
            raise

    def abort(self) -> None:
        """Stop without producing the file (the temporary file is removed)."""
        if not self._open:
            return
        self._open = False
        self._close_quietly()
        discard(self._temp)

    def _close_quietly(self) -> None:
        try:
            self._container.close()
        except Exception:  # the file is being thrown away; the original error matters, not this one
            pass

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def side_by_side(frame: np.ndarray, motion_rgb: np.ndarray, gap: int = 0) -> np.ndarray:
    """The video frame and its motion colour image next to each other: H×(W1+gap+W2)×3, with ``gap`` white
    pixels between (none by default, so two W-wide images make a 2W-wide video frame)."""
    return make_strip([frame, motion_rgb], gap=gap)
