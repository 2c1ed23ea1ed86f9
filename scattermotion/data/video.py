"""Video input: open a video file or a folder of frame images and stream its frames.

Every source yields frames one at a time as ``H×W×3 uint8 RGB`` NumPy arrays (never the whole video in
memory), optionally resized. Video files are decoded with PyAV (FFmpeg, frame-threaded); a file PyAV cannot
open is tried with OpenCV's ``cv2.VideoCapture``. A folder of images is read in natural order (``img_2``
before ``img_10``), its frames chosen by :mod:`scattermotion.data.frame_folder` (the flow images of a
denseflow / mmaction2 rawframes folder are left out).

Bad input raises :class:`~scattermotion.errors.InputError` naming the file: a missing path, an empty file, a
file that is not a video, a video without a video stream, an empty folder, an unreadable image, too few frames
(``require_frames``), or a decoding error in the middle of the stream (``on_error="raise"``, the default; with
``on_error="stop"`` the stream just ends there, after a logged warning). A truncated file whose frames stop
cleanly (FFmpeg finds no more data) simply yields the frames it holds.

Frame indices are positions in display order, counted from 0.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import av
import av.error
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from scattermotion.data.frame_folder import frame_files
from scattermotion.data.frame_folder import natural_key as natural_key  # re-exported: its old home
from scattermotion.errors import InputError
from scattermotion.io import checks

log = logging.getLogger(__name__)

DEFAULT_FOLDER_FPS = 25.0
# read_all() refuses to build one array larger than this unless max_frames bounds it.
READ_ALL_MAX_BYTES = 4 * 2**30
# Frames above this many pixels that are to be shrunk are scaled by FFmpeg while converting to RGB, so the
# full-size RGB frame is never built (smaller ones go through resize_frame, as before).
DECODER_SCALE_PIXELS = 2**23
# Colour conversions on one thread. PyAV 17 added threaded conversion and the `threads` argument (before
# it, a conversion had no threads to pass).
_ONE_THREAD = {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}

OnError = Literal["raise", "stop"]
Backend = Literal["auto", "pyav", "opencv"]


# ---- sizes -----------------------------------------------------------------------------------------------


def _round_even(x: float) -> int:
    return max(2, 2 * round(x / 2))


def output_size(
    path: str | os.PathLike,
    width: int,
    height: int,
    resize: tuple[int, int] | None = None,
    short_side: int | None = None,
) -> tuple[int, int]:
    """The ``(W, H)`` that frames of a ``width×height`` source are brought to.

    ``resize=(w, h)`` exactly; ``short_side=N`` scales the shorter side to ``N`` and the longer one keeping
    the aspect ratio, rounded to an even number (codecs and network strides like even sizes); neither keeps
    the source size. ``path`` only names the source in the error for bad arguments.
    """
    if resize is not None and short_side is not None:
        raise InputError(path, "give either resize or short_side, not both")
    if resize is not None:
        w, h = (int(v) for v in resize)
        if w < 1 or h < 1:
            raise InputError(path, f"resize must be two positive integers (w, h), got {tuple(resize)}")
        return w, h
    if short_side is not None:
        if int(short_side) < 1:
            raise InputError(path, f"short_side must be positive, got {short_side}")
        scale = int(short_side) / min(width, height)
        if width <= height:
            return int(short_side), _round_even(height * scale)
        return _round_even(width * scale), int(short_side)
    return width, height


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` at ``size = (W, H)``: area averaging when shrinking (no aliasing), linear otherwise."""
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    shrinking = size[0] <= frame.shape[1] and size[1] <= frame.shape[0]
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


# ---- the common interface ------------------------------------------------------------------------------


class VideoSource(ABC):
    """A streaming source of ``H×W×3 uint8 RGB`` frames; build one with :func:`open_video`.

    Attributes: ``path``, ``fps``, ``width`` and ``height`` (of the frames it yields, after resizing),
    ``source_width`` and ``source_height`` (as stored), ``on_error``.
    """

    path: Path
    fps: float
    width: int
    height: int
    source_width: int
    source_height: int
    on_error: OnError

    def _set_size(self, resize: tuple[int, int] | None, short_side: int | None) -> None:
        self.width, self.height = output_size(
            self.path, self.source_width, self.source_height, resize=resize, short_side=short_side
        )

    @property
    @abstractmethod
    def frame_count(self) -> int:
        """Number of frames: exact for folders; for video files see the subclass."""

    @abstractmethod
    def _decode(
        self, start: int, step: int, stop: int | None, size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        """Frames ``start, start+step, ...`` (before ``stop``) as RGB uint8: as stored, or at ``size``
        (W, H) where the decoder can scale while converting (callers resize what it did not)."""

    def frames(self, start: int = 0, step: int = 1, stop: int | None = None) -> Iterator[np.ndarray]:
        """Stream frames ``start, start + step, ...`` (before ``stop`` if given), one array at a time.

        Video files are decoded from the beginning (frames before ``start`` are decoded, not converted), so
        ``start`` costs decoding time but never memory. Closing the iterator early releases the file.
        """
        if start < 0 or step < 1 or (stop is not None and stop < 0):
            raise ValueError(f"need start >= 0, step >= 1, stop >= 0; got {start=}, {step=}, {stop=}")
        size = (self.width, self.height)
        huge = self.source_width * self.source_height > DECODER_SCALE_PIXELS
        shrink = self.width <= self.source_width and self.height <= self.source_height
        for frame in self._decode(start, step, stop, size if huge and shrink else None):
            yield resize_frame(frame, size)

    def read_all(self, max_frames: int | None = None) -> np.ndarray:
        """The first ``max_frames`` frames (all when ``None``) as one ``T×H×W×3`` array: for short clips.

        Refuses (``InputError``) to build more than 4 GiB without an explicit ``max_frames``.
        """
        if max_frames is None:
            size = self.frame_count * self.width * self.height * 3
            if size > READ_ALL_MAX_BYTES:
                raise InputError(
                    self.path,
                    f"{self.frame_count} frames are {size / 2**30:.1f} GiB decoded; stream them instead",
                )
        frames = list(self.frames(stop=max_frames))
        if not frames:
            raise InputError(self.path, "no frames could be decoded")
        return np.stack(frames)

    def read_clip(self, start: int, length: int, step: int = 1) -> np.ndarray:
        """Frames ``start, start+step, ...`` (``length`` of them) as one ``T×H×W×3`` array.

        ``InputError`` when the video ends before the clip does.
        """
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        frames = list(self.frames(start=start, step=step, stop=start + (length - 1) * step + 1))
        if len(frames) < length:
            problem = f"video is shorter than a {length}-frame clip from frame {start} (step {step})"
            raise InputError(self.path, problem)
        return np.stack(frames)

    def count_frames(self) -> int:
        """Count the frames exactly by decoding them all (no colour conversion); the result is cached."""
        return sum(1 for _ in self._decode(0, 1, None))

    def require_frames(self, minimum: int = 2) -> None:
        """``InputError`` unless at least ``minimum`` frames actually decode (decodes only that many)."""
        got = sum(1 for _ in self._decode(0, 1, minimum))
        if got < minimum:
            raise InputError(
                self.path, f"has {got} frame{'s' if got != 1 else ''}; at least {minimum} needed"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, {self.width}x{self.height}, fps={self.fps:g})"


def _stopped(source: VideoSource, decoded: int, err: Exception) -> None:
    """Handle a decoding error after ``decoded`` frames: raise (the default) or log and end the stream."""
    if source.on_error == "raise":
        raise InputError(source.path, f"decoding failed after {decoded} frames: {err}") from err
    log.warning("%s: decoding stopped after %d frames: %s", source.path, decoded, err)


# ---- video files through PyAV --------------------------------------------------------------------------


class PyAVVideoSource(VideoSource):
    """A video file decoded by PyAV (FFmpeg) with frame threading.

    ``frame_count`` counts the container's video packets (reads the file once without decoding; cached):
    exact for ordinary files, unlike header counts (``tree.avi`` declares 444 frames and holds 68, which is
    kept as ``declared_frame_count``). After one complete pass of :meth:`frames` or :meth:`count_frames` it
    is the number of frames that actually decoded.
    """

    def __init__(self, path: Path, container: av.container.InputContainer, on_error: OnError, threads: int):
        self.path = path
        self.on_error = on_error
        self.threads = threads
        try:
            stream = container.streams.video[0]
            codec = stream.codec_context
            self.source_width, self.source_height = codec.width, codec.height
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self.fps = float(rate) if rate else DEFAULT_FOLDER_FPS
            self.declared_frame_count = int(stream.frames or 0)
        finally:
            container.close()
        if self.source_width < 1 or self.source_height < 1:
            raise InputError(path, "video stream has no frame size")
        checks.check_pixels(path, self.source_width, self.source_height)  # before any frame decodes
        self._frame_count: int | None = None

    def _open(self) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as err:  # the file changed since it was opened
            raise InputError(self.path, f"cannot open video: {err}") from err
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads: several times faster on long streams
        stream.thread_count = self.threads
        return container, stream

    @property
    def frame_count(self) -> int:
        if self._frame_count is None:
            container, stream = self._open()
            count = 0
            try:
                for packet in container.demux(stream):
                    count += packet.size > 0  # the final flush packet is empty
            except av.error.FFmpegError:
                pass  # a damaged tail: count what could be read
            finally:
                container.close()
            self._frame_count = count
        return self._frame_count

    def _decode(
        self, start: int, step: int, stop: int | None, size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        convert = {} if size is None else {"width": size[0], "height": size[1], "interpolation": "AREA"}
        # Our own converter, not the one PyAV (18.1.1+) keeps per thread and shares between frames: a process
        # forked after a conversion (a DataLoader worker) inherits that one with its scaler's slice threads
        # gone, and its next conversion waits for them forever (the training tests hung in CI). One thread
        # (_ONE_THREAD): a conversion is a small part of decoding, which keeps its own threads.
        reformatter = VideoReformatter()
        container, stream = self._open()
        index = 0
        try:
            frames = container.decode(stream)
            while stop is None or index < stop:
                try:
                    frame = next(frames)
                except StopIteration:
                    if stop is None:
                        self._frame_count = index  # a complete pass: now exact
                    return
                except av.error.FFmpegError as err:
                    _stopped(self, index, err)
                    return
                if index >= start and (index - start) % step == 0:
                    yield reformatter.reformat(frame, format="rgb24", **_ONE_THREAD, **convert).to_ndarray()
                index += 1
        finally:
            container.close()


# ---- video files through OpenCV (fallback) ---------------------------------------------------------------


class OpenCVVideoSource(VideoSource):
    """A video file decoded by ``cv2.VideoCapture``: the fallback for files PyAV cannot open.

    ``frame_count`` is OpenCV's ``CAP_PROP_FRAME_COUNT``, read from the header (an estimate; it is counted by
    decoding when the header has none). OpenCV reports no decoding errors: a damaged stream just ends.
    """

    def __init__(self, path: Path, capture: cv2.VideoCapture, on_error: OnError):
        self.path = path
        self.on_error = on_error
        self.source_width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.source_height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_FOLDER_FPS
        declared = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.declared_frame_count = int(declared) if declared and declared > 0 else 0
        capture.release()
        if self.source_width < 1 or self.source_height < 1:
            raise InputError(path, "video stream has no frame size")
        checks.check_pixels(path, self.source_width, self.source_height)
        self._frame_count: int | None = self.declared_frame_count or None

    @property
    def frame_count(self) -> int:
        if self._frame_count is None:
            self._frame_count = self.count_frames()
        return self._frame_count

    def _decode(
        self, start: int, step: int, stop: int | None, size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path))
        index = 0
        try:
            while stop is None or index < stop:
                wanted = index >= start and (index - start) % step == 0
                if not capture.grab():  # grab() decodes; retrieve() converts, needed only for wanted frames
                    if stop is None:
                        self._frame_count = index
                    return
                if wanted:
                    ok, bgr = capture.retrieve()
                    if not ok or bgr is None:
                        _stopped(self, index, RuntimeError("OpenCV could not retrieve the frame"))
                        return
                    yield _bgr_to_rgb(bgr)
                index += 1
        finally:
            capture.release()


def _bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


# ---- folders of frame images ---------------------------------------------------------------------------


def read_image(path: Path) -> np.ndarray:
    """An image file as ``H×W×3 uint8 RGB`` (grayscale expanded, alpha dropped, 16-bit scaled to 8-bit).

    ``InputError`` for a file that is not a regular file, not a PNG, JPEG, BMP, WebP, TIFF or PPM/PGM, or
    whose header declares more than :data:`scattermotion.io.checks.MAX_IMAGE_PIXELS` (checked before
    decoding)."""
    data = np.frombuffer(checks.read_image_bytes(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype not in (np.uint8, np.uint16):
        raise InputError(path, "not a readable 8- or 16-bit image")
    return _bgr_to_rgb(image)


class FolderVideoSource(VideoSource):
    """A folder of frame images (:func:`scattermotion.data.frame_folder.frame_files`: natural order, flow
    images left out). ``frame_count`` is exact; ``fps`` is given or 25.

    Every image must have the size of the first; an unreadable image raises ``InputError`` naming it when
    it is reached (or ends the stream with ``on_error="stop"``).
    """

    def __init__(self, path: Path, on_error: OnError = "raise", fps: float | None = None):
        self.path = Path(path)
        self.on_error = on_error
        self.fps = float(fps) if fps else DEFAULT_FOLDER_FPS
        self.files = frame_files(self.path)
        if not self.files:
            raise InputError(self.path, "folder holds no frame images")
        first = read_image(self.files[0])
        self.source_height, self.source_width = first.shape[:2]

    @property
    def frame_count(self) -> int:
        return len(self.files)

    def _decode(
        self, start: int, step: int, stop: int | None, size: tuple[int, int] | None = None
    ) -> Iterator[np.ndarray]:
        for index in range(start, len(self.files) if stop is None else min(stop, len(self.files)), step):
            file = self.files[index]
            try:
                image = read_image(file)
                if image.shape[:2] != (self.source_height, self.source_width):
                    raise InputError(
                        file,
                        f"size {image.shape[1]}x{image.shape[0]} differs from the first frame's "
                        f"{self.source_width}x{self.source_height}",
                    )
            except InputError as err:
                if self.on_error == "raise":
                    raise
                log.warning("%s; the frame stream stops there", err)
                return
            yield image


# ---- opening -----------------------------------------------------------------------------------------


def open_video(
    path: str | os.PathLike,
    resize: tuple[int, int] | None = None,
    short_side: int | None = None,
    *,
    require_frames: int = 0,
    on_error: OnError = "raise",
    fps: float | None = None,
    backend: Backend = "auto",
    threads: int = 0,
) -> VideoSource:
    """Open a video file or a folder of frame images as a streaming :class:`VideoSource`.

    ``resize=(w, h)`` or ``short_side=N`` set the size of the frames it yields (see :func:`output_size`).
    ``require_frames=n`` decodes the first ``n`` frames now and raises ``InputError`` if there are fewer
    (use 2 where frame pairs are needed). ``on_error``: what a decoding error mid-stream does ("raise" an
    ``InputError``, or "stop" the stream). ``fps`` is used for folders (default 25); videos report their own.
    ``backend``: "auto" tries PyAV then OpenCV; "pyav" or "opencv" force one. ``threads``: PyAV decoding
    threads (0 lets FFmpeg choose).
    """
    path = Path(path)
    if on_error not in ("raise", "stop"):
        raise ValueError(f"on_error must be 'raise' or 'stop', got {on_error!r}")
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_dir():
        source: VideoSource = FolderVideoSource(path, on_error, fps)
    else:
        source = _open_video_file(path, on_error, backend, threads)
    source._set_size(resize, short_side)
    if require_frames > 0:
        source.require_frames(require_frames)
    return source


def _open_video_file(path: Path, on_error: OnError, backend: Backend, threads: int) -> VideoSource:
    try:
        size = path.stat().st_size
    except OSError as err:
        raise InputError(path, f"cannot read: {err.strerror or err}") from err
    checks.require_regular_file(path)  # a FIFO would block FFmpeg's open forever
    if size == 0:
        raise InputError(path, "file is empty")
    problem = "not a readable video"
    if backend in ("auto", "pyav"):
        try:
            container = av.open(str(path))
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
            problem = f"not a readable video ({_short(err)})"
        else:
            if not container.streams.video:
                container.close()
                raise InputError(path, "has no video stream")
            try:
                return PyAVVideoSource(path, container, on_error, threads)
            except av.error.FFmpegError as err:
                problem = f"not a readable video ({_short(err)})"
            except AttributeError:  # PyAV gives a damaged stream no codec context (a truncated MP4)
                problem = "not a readable video (its video stream has no codec parameters)"
    if backend in ("auto", "opencv"):
        capture = cv2.VideoCapture(str(path))
        if capture.isOpened():
            return OpenCVVideoSource(path, capture, on_error)
        capture.release()
    raise InputError(path, problem)


def _short(err: Exception) -> str:
    """An FFmpeg error without the repeated file name, on one line."""
    text = getattr(err, "strerror", None) or str(err)
    return " ".join(str(text).split())
