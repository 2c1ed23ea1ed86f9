"""The public inference API: :class:`MotionEstimator` (our network) and :func:`get_estimator` (ours or a
classical baseline behind the same interface).

Frames go in as H×W×3 uint8 RGB (or H×W grayscale) NumPy arrays of any size; motion comes out as H×W×2
float32 ``(u, v)`` in pixels of the given frames. Padding to the network's stride happens here, outside the
model, and is cropped off the motion.

**Windows.** The network sees clips of ``T = clip_len`` frames (the length it was trained on; any T ≥ 2 runs).
A sequence of N frames is cut into windows of T consecutive frames that share their end frames
(frames 0..T-1, T-1..2T-2, ...), so each adjacent pair lies in exactly one window and gets exactly one
motion map. When the pairs left at the end do not fill a window, the last window is moved back to end at
the last frame (full T-frame context, all real frames) and only its new pairs are kept. A sequence shorter
than T is one window of all N frames. So:

- ``estimate(f1, f2)`` is the network on the 2-frame clip ``[f1, f2]``; it equals ``estimate_clip([f1, f2])``
  exactly, and equals the pair inside a longer ``estimate_clip`` only up to clip context: there the pair
  also sees its window's other frames through the network's temporal mixing.
- ``estimate_stream(frames)`` yields exactly what ``estimate_clip(frames)`` returns, one pair at a time,
  holding at most ``batch_size`` windows of frames (bounded memory on any video length).

**Small frames** (``min_side``). The network decodes motion on a stride-16 grid, so a 112×112 clip gives it
only 7×7 cells, and sub-pixel motion is where it is least precise. With ``min_side=S``, frames whose short
side is below S are resized up (bilinear) so that it is S, and the motion is resized back and rescaled to
the given frames' pixels. Measured with the default model on generated 112×112 clips with 0.4–4 px/frame
motion (``benchmarks/small_motion.py``): EPE 0.34 px native, 0.24 px at ``min_side=224`` (TV-L1 0.15,
DIS 0.12), for 4× the network time. Off by default.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from scattermotion.errors import InputError
from scattermotion.io.checks import as_rgb, check_frame_count, check_same_size
from scattermotion.methods import OURS

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.safetensors"


class FlowEstimator(Protocol):
    """What extraction and evaluation need from any motion method."""

    name: str
    clip_len: int

    def estimate(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray: ...

    def estimate_clip(self, frames: Sequence[np.ndarray]) -> np.ndarray: ...

    def estimate_stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]: ...


# ---- frame checks shared by every method -----------------------------------------------------------------


def checked_frames(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield ``frames`` as H×W×3 uint8 RGB (:func:`~scattermotion.io.checks.as_rgb`), all of the first one's
    size; ``InputError`` for fewer than 2 (raised once the input is exhausted: a stream is not read ahead)."""
    first: np.ndarray | None = None
    count = 0
    for count, frame in enumerate(frames, start=1):
        frame = as_rgb(frame, f"frame {count - 1}")
        if first is None:
            first = frame
        check_same_size(frame, first, count - 1)
        yield frame
    check_frame_count(count)


def _stack_flows(flows: list[np.ndarray], count: int) -> np.ndarray:
    if len(flows) != count - 1:  # a bug, never the caller's fault
        raise RuntimeError(f"expected {count - 1} motion maps for {count} frames, got {len(flows)}")
    return np.stack(flows).astype(np.float32, copy=False)


# ---- device ----------------------------------------------------------------------------------------------


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:i"``. Plain ``"cuda"`` under torchrun picks ``cuda:$LOCAL_RANK``."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(None, f"unknown device {device!r}: use cpu, cuda or cuda:N") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(None, f"device {device!r} asked for, but CUDA is not available on this machine")
        if dev.index is None and "LOCAL_RANK" in os.environ:
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    elif dev.type != "cpu":
        raise InputError(None, f"unsupported device {device!r}: use cpu, cuda or cuda:N")
    return dev


# ---- our network -----------------------------------------------------------------------------------------


class StreamingEstimator:
    """``estimate`` and ``estimate_clip`` from a subclass's ``estimate_stream``: one place for the contract
    that a pair is the 2-frame clip and a clip is its stream."""

    def estimate(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        """Motion from ``frame1`` to ``frame2``: H×W×2 float32 (the 2-frame clip)."""
        return self.estimate_clip([frame1, frame2])[0]

    def estimate_clip(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """One motion map per adjacent pair of ``frames`` (N ≥ 2): (N-1)×H×W×2 float32."""
        frames = list(frames)
        return _stack_flows(list(self.estimate_stream(frames)), len(frames))

    def estimate_stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        raise NotImplementedError


class MotionEstimator(StreamingEstimator):
    """Dense motion from our network. See the module docstring for how clips are cut into windows.

    >>> est = MotionEstimator.from_pretrained("run/ckpt.safetensors", device="cuda", fp16=True)
    >>> flow = est.estimate(frame1, frame2)          # H×W×2 float32
    >>> flows = est.estimate_clip(frames)            # (N-1)×H×W×2 for N frames
    """

    name = OURS

    def __init__(
        self,
        model: torch.nn.Module,
        device: str | torch.device = "cpu",
        fp16: bool = False,
        batch_size: int | None = None,
        min_side: int | None = None,
        precision: str = "fp32",
    ):
        from scattermotion.precision import resolve_precision

        self.device = resolve_device(device)
        try:
            # fp32 by default: bf16 is faster where the CPU has it natively, but moves motion by ~0.1 px.
            self.precision = resolve_precision(precision, self.device)
        except ValueError as err:
            raise InputError(None, str(err)) from None
        if min_side is not None and int(min_side) < 1:
            raise InputError(None, f"--min-side must be a positive number of pixels, got {min_side}")
        self.min_side = int(min_side) if min_side is not None else None
        if fp16 and self.device.type != "cuda":
            raise InputError(None, "fp16 runs only on CUDA (autocast); drop --fp16 on the CPU")
        self.fp16 = fp16
        # Windows per forward pass: batching pays off on a GPU; on a CPU it only adds memory.
        self.batch_size = (
            int(batch_size) if batch_size is not None else (8 if self.device.type == "cuda" else 1)
        )
        if self.batch_size < 1:
            raise InputError(None, f"--batch-size must be >= 1, got {batch_size}")
        self.model = model.to(self.device).eval()
        self.clip_len = int(model.config.clip_len)
        self.stride = int(model.stride)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        fp16: bool = False,
        batch_size: int | None = None,
        min_side: int | None = None,
        precision: str = "fp32",
    ) -> MotionEstimator:
        """Load safetensors weights (``path``; None = the default model shipped in the package)."""
        from scattermotion.model import load_weights

        path = Path(path) if path is not None else DEFAULT_WEIGHTS
        if not path.is_file():
            raise InputError(
                path, "weights file not found" if not path.exists() else "weights path is not a file"
            )
        dev = resolve_device(device)
        model = load_weights(path, device=dev)
        return cls(
            model, device=dev, fp16=fp16, batch_size=batch_size, min_side=min_side, precision=precision
        )

    # ---- public API ---------------------------------------------------------------------------------------

    def estimate_stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield the motion of each adjacent pair in order, reading ``frames`` lazily.

        At most ``batch_size`` windows of ``clip_len`` frames are held at a time; the output is exactly that
        of :meth:`estimate_clip`. Raises ``InputError`` for fewer than 2 frames or frames of different sizes.
        """
        length = self.clip_len
        recent: deque[np.ndarray] = deque(maxlen=length)  # the last T frames: every window is a slice of it
        pending: list[tuple[list[np.ndarray], int]] = []  # (window frames, pairs of it already emitted)
        count = 0
        for count, frame in enumerate(checked_frames(frames), start=1):
            recent.append(frame)
            if count >= length and (count - 1) % (length - 1) == 0:  # a full window ends at this frame
                pending.append((list(recent), 0))
                if len(pending) == self.batch_size:
                    yield from self._run_windows(pending)
                    pending = []
        if count < length:  # the whole (short) sequence is one window
            pending.append((list(recent), 0))
        else:
            last_window_end = (count - 1) // (length - 1) * (length - 1)  # frame index, 0-based
            new_pairs = count - 1 - last_window_end
            if new_pairs:  # move the last window back to end at the last frame; keep only the new pairs
                pending.append((list(recent), length - 1 - new_pairs))
        yield from self._run_windows(pending)

    # ---- internals ----------------------------------------------------------------------------------------

    def _run_windows(self, windows: list[tuple[list[np.ndarray], int]]) -> Iterator[np.ndarray]:
        """Run windows of equal length in one forward pass; yield each window's kept pairs in order."""
        if not windows:
            return
        from scattermotion.padding import InputPadder

        clips = np.stack([np.stack(frames) for frames, _ in windows])  # B×T×H×W×3 uint8
        height, width = clips.shape[2:4]
        work_size = self._work_size(height, width)
        resized = work_size != (height, width)
        padder = InputPadder(*work_size, self.stride)
        if self.fp16:
            autocast = torch.autocast("cuda", dtype=torch.float16)
        else:
            from scattermotion.precision import autocast as precision_autocast

            autocast = precision_autocast(self.precision, self.device)
        with torch.inference_mode(), autocast:
            batch = torch.from_numpy(clips).to(self.device, non_blocking=True)
            batch = batch.permute(0, 1, 4, 2, 3).float().div_(255.0)  # B×T×3×H×W in [0, 1]
            if resized:
                batch = _resize_frames(batch, work_size)
            (batch,) = padder.pad(batch)
            flows = padder.unpad(self.model(batch).flows)  # B×(T-1)×2×h×w
            if resized:
                flows = _resize_motion(flows.float(), (height, width))
            flows = flows.float().permute(0, 1, 3, 4, 2).contiguous().cpu().numpy()
        for (_, skip), window_flows in zip(windows, flows, strict=True):
            yield from window_flows[skip:]

    def _work_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the network runs at: the frames' own, or scaled up to ``min_side`` on the short side."""
        short = min(height, width)
        if self.min_side is None or short >= self.min_side:
            return height, width
        scale = self.min_side / short
        return max(round(height * scale), self.min_side), max(round(width * scale), self.min_side)


def _resize_frames(clips: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×T×3×H×W → B×T×3×h×w (bilinear)."""
    flat = torch.nn.functional.interpolate(
        clips.flatten(0, 1), size=size, mode="bilinear", align_corners=False
    )
    return flat.unflatten(0, clips.shape[:2])


def _resize_motion(flows: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """B×P×2×h×w motion in pixels of h×w → B×P×2×H×W in pixels of H×W (area-like when shrinking)."""
    height, width = flows.shape[-2:]
    flat = torch.nn.functional.interpolate(
        flows.flatten(0, 1), size=size, mode="bilinear", align_corners=False, antialias=True
    )
    scale = torch.tensor([size[1] / width, size[0] / height], dtype=flat.dtype, device=flat.device)
    return (flat * scale.view(1, 2, 1, 1)).unflatten(0, flows.shape[:2])


class RefinedEstimator(StreamingEstimator):
    """Our network, then OpenCV's variational refinement on each pair's motion
    (:func:`scattermotion.baselines.refine_flow`): the ``ours-refined`` method. Streams like the network
    (the refinement needs only the pair a motion map belongs to)."""

    def __init__(self, network: MotionEstimator):
        from scattermotion.methods import REFINED

        self.name = REFINED
        self.network = network
        self.model = network.model  # what runs (the speed benchmark records its config)
        self.clip_len = network.clip_len

    def estimate_stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        from scattermotion.baselines import refine_flow

        pending: deque[np.ndarray] = deque()  # frames the network has read whose pair is not out yet

        def recorded(stream: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
            for frame in stream:
                pending.append(frame)
                yield frame

        # The network yields pair k only after reading frame k+1, so both frames of it are in ``pending``.
        for flow in self.network.estimate_stream(recorded(frames)):
            first = pending.popleft()
            yield refine_flow(first, pending[0], flow)


# ---- classical baselines behind the same interface -------------------------------------------------------


class ClassicalEstimator(StreamingEstimator):
    """A classical OpenCV method (:class:`scattermotion.baselines.ClassicalFlow`) as a :class:`FlowEstimator`.

    Classical methods see one pair at a time, so a clip is just its pairs and the stream holds two frames.
    """

    clip_len = 2

    def __init__(self, method: str):
        from scattermotion.baselines import ClassicalFlow

        self.name = method
        self.flow = ClassicalFlow(method)

    def estimate(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        first, second = as_rgb(frame1, "frame 0"), as_rgb(frame2, "frame 1")
        check_same_size(second, first, 1)
        return np.asarray(self.flow.estimate(first, second), dtype=np.float32)

    def estimate_stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        previous: np.ndarray | None = None
        for frame in checked_frames(frames):
            if previous is not None:
                yield np.asarray(self.flow.estimate(previous, frame), dtype=np.float32)
            previous = frame


def get_estimator(
    method: str = OURS,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    fp16: bool = False,
    batch_size: int | None = None,
    min_side: int | None = None,
) -> FlowEstimator:
    """``"ours"`` (``weights`` or the packaged default) or a classical method of
    :data:`scattermotion.methods.REGISTRY`; classical methods run on the CPU only. The public name of
    :func:`scattermotion.methods.build_estimator`."""
    from scattermotion.methods import build_estimator

    return build_estimator(method, weights, device, fp16=fp16, batch_size=batch_size, min_side=min_side)


def estimate_image_files(
    image1: str | os.PathLike,
    image2: str | os.PathLike,
    method: str = OURS,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    fp16: bool = False,
    min_side: int | None = None,
) -> np.ndarray:
    """Motion between two image files (``scattermotion flow``); :class:`InputError` names a bad file."""
    from scattermotion.clipsets import read_image_pair

    first, second = read_image_pair(image1, image2)
    estimator = get_estimator(method, weights, device=device, fp16=fp16, min_side=min_side)
    return estimator.estimate(first, second)
