"""Export MotionNet to ONNX (``frames`` → ``flows``, ``confidence``) and check the file with onnxruntime.

The ONNX graph takes ``frames`` B×T×3×H×W float32 RGB in [0, 1] (H and W multiples of the network's stride;
pad outside, e.g. with :class:`scattermotion.padding.InputPadder`) and returns ``flows`` B×(T−1)×2×H×W
(pixels, frame t → t+1) and ``confidence`` B×(T−1)×1×H×W in [0, 1]. Batch, height and width are dynamic; T is
fixed at export time (default: the clip length the model was trained on).

**Exporter.** We use the TorchScript exporter (``dynamo=False``). On this model it exports in ~1.5 s and the
graph matches PyTorch to ~1e-5 px at sizes other than the traced one. The torch.export-based exporter also
gives correct dynamic shapes but takes ~50 s on 2 CPU cores, and it traces whichever correlation branch the
example size selects (the all-pairs branch is O((h·w)²) memory: gigabytes at HD sizes).

``aten::unflatten`` (encoder and network) does not trace into a shape-generic graph as it is: torch's
symbolic computes the split position with graph ops, so ONNX shape inference loses the output rank and the
exporter falls back to the *traced* static shape; later size-derived ops (``arange`` in the warp grid, slice
ends in the correlation) then freeze to the example size. :func:`_traceable_network` registers a symbolic with
the position as a constant for the duration of an export. (The network's own code is trace-safe otherwise:
``warp.backward_warp`` scales with Python numbers, and ``cues.local_correlation`` takes its shifted-window
branch, bounded in memory, whenever it is traced.)

For speed, (log-)softmax over a non-last axis (the cue logits and the CGU weights) is written out as
max / exp / sum: onnxruntime's Softmax op transposes for such an axis, which took 21 ms of an 86 ms forward
at 224×224 on one thread; written out, the whole graph runs 1.35-1.6x faster (``benchmarks/onnx_speed.py``).

Every export ends with a self-check: onnxruntime and PyTorch on the same frames at a size (and batch) other
than the traced one; the file only lands at ``out_path`` when they agree.
"""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scattermotion.io.atomic import atomic_output
from scattermotion.model.network import MotionNet
from scattermotion.model.weights import load_weights
from scattermotion.padding import InputPadder

INPUT_NAME = "frames"
OUTPUT_NAMES = ("flows", "confidence")
MIN_OPSET = 16  # GridSample (the warp) exists from opset 16
DEFAULT_OPSET = 17
METADATA_PREFIX = "scattermotion."
# Self-check tolerance: |ONNX − PyTorch| <= CHECK_ATOL + CHECK_RTOL · max|flow| (float32 reordering only).
CHECK_ATOL = 1e-4
CHECK_RTOL = 3e-5

_export_lock = threading.Lock()  # the export patches module attributes: one export at a time


class MissingExportDependency(ImportError):
    """onnx / onnxruntime are not installed (they are the optional ``export`` extra)."""


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:
        raise MissingExportDependency(
            f"ONNX export needs the '{module}' package: pip install 'scattermotion[export]'"
        ) from err


class OnnxMotionNet(nn.Module):
    """What the ONNX graph computes: ``frames`` B×T×3×H×W → ``(flows, confidence)`` of the forward pairs."""

    def __init__(self, model: MotionNet):
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(frames)
        return out.flows, out.confidence


# ---- export-time fixes (see the module docstring) -------------------------------------------------------


def _unflatten_symbolic(g, input, dim, sizes):
    """``aten::unflatten`` with the split position as a constant, so the output rank stays known."""
    from torch.onnx import symbolic_helper

    rank = symbolic_helper._get_tensor_rank(input)
    dim = symbolic_helper._get_const(dim, "i", "dim")
    if rank is None:
        return symbolic_helper._unimplemented("unflatten", "input rank unknown at export time")
    dim %= rank

    def const(value: int):
        return g.op("Constant", value_t=torch.tensor([value], dtype=torch.int64))

    shape = g.op("Shape", input)
    head = g.op("Slice", shape, const(0), const(dim))
    tail = g.op("Slice", shape, const(dim + 1), const(torch.iinfo(torch.int64).max))
    return g.op("Reshape", input, g.op("Concat", head, sizes, tail, axis_i=0))


def _reduce(g, op: str, x, axis: int):
    """``op`` over one axis, keeping it; ReduceMax takes its axes as an input only from opset 18."""
    axes = g.op("Constant", value_t=torch.tensor([axis], dtype=torch.int64))
    if op == "ReduceSum" or g.opset >= 18:
        return g.op(op, x, axes, keepdims_i=1)
    return g.op(op, x, axes_i=[axis], keepdims_i=1)


def _softmax_parts(g, x, dim, dtype):
    """``(x − max, Σ exp(x − max))`` over ``dim`` (the stable form), or None for the last axis, where
    onnxruntime's own op is fast."""
    from torch.onnx import symbolic_helper

    if not symbolic_helper._is_none(dtype):
        return symbolic_helper._unimplemented("softmax", "a dtype argument (MotionNet passes none)"), None
    rank = symbolic_helper._get_tensor_rank(x)
    dim = symbolic_helper._get_const(dim, "i", "dim")
    if rank is None or dim % rank == rank - 1:
        return None, dim
    shifted = g.op("Sub", x, _reduce(g, "ReduceMax", x, dim % rank))
    return (shifted, _reduce(g, "ReduceSum", g.op("Exp", shifted), dim % rank)), dim


def _softmax_symbolic(g, x, dim, dtype=None):
    parts, dim = _softmax_parts(g, x, dim, dtype)
    if parts is None:
        return g.op("Softmax", x, axis_i=dim)
    shifted, total = parts
    return g.op("Div", g.op("Exp", shifted), total)


def _log_softmax_symbolic(g, x, dim, dtype=None):
    parts, dim = _softmax_parts(g, x, dim, dtype)
    if parts is None:
        return g.op("LogSoftmax", x, axis_i=dim)
    shifted, total = parts
    return g.op("Sub", shifted, g.op("Log", total))


_SYMBOLICS = {
    "aten::unflatten": _unflatten_symbolic,
    "aten::softmax": _softmax_symbolic,
    "aten::log_softmax": _log_softmax_symbolic,
}


@contextmanager
def _traceable_network(opset: int) -> Iterator[None]:
    """Apply the export-time fixes and symbolics; everything is restored on exit."""
    with _export_lock:
        for name, symbolic in _SYMBOLICS.items():
            torch.onnx.register_custom_op_symbolic(name, symbolic, opset)
        try:
            yield
        finally:
            for name in _SYMBOLICS:
                torch.onnx.unregister_custom_op_symbolic(name, opset)


# ---- export ----------------------------------------------------------------------------------------------


def _as_model(model_or_weights_path: MotionNet | str | Path) -> MotionNet:
    """A CPU float32 copy in eval mode (the caller's model keeps its device and mode)."""
    if isinstance(model_or_weights_path, MotionNet):
        return copy.deepcopy(model_or_weights_path).float().cpu().eval()
    return load_weights(model_or_weights_path, device="cpu")


def _metadata(model: MotionNet, clip_len: int, dynamic: bool, size: tuple[int, int]) -> dict[str, str]:
    shape = "B×T×3×H×W" if dynamic else f"B×T×3×{size[0]}×{size[1]}"
    return {
        f"{METADATA_PREFIX}clip_len": str(clip_len),
        f"{METADATA_PREFIX}stride": str(model.stride),
        f"{METADATA_PREFIX}motion_config": model.config.to_json(),
        f"{METADATA_PREFIX}inputs": (
            f"frames: {shape} float32 RGB in [0, 1], T = {clip_len}; H and W multiples of {model.stride} "
            "(pad outside the model)"
        ),
        f"{METADATA_PREFIX}outputs": (
            "flows: B×(T−1)×2×H×W motion (u, v) in pixels, frame t → t+1; confidence: B×(T−1)×1×H×W in [0, 1]"
        ),
    }


def export_onnx(
    model_or_weights_path: MotionNet | str | Path,
    out_path: str | Path,
    clip_len: int | None = None,
    opset: int = DEFAULT_OPSET,
    dynamic: bool = True,
    size: tuple[int, int] | None = None,
    check: bool = True,
) -> Path:
    """Write the motion network as ONNX to ``out_path`` (atomically) and return the path.

    ``model_or_weights_path``: a :class:`MotionNet` or a weights file (``save_weights``). ``clip_len``: frames
    per clip T baked into the graph (default: the model's ``config.clip_len``). ``dynamic``: batch, height and
    width free; otherwise fixed at ``size`` (H, W), which is also the traced size when dynamic (default: a
    small non-square size). ``check``: compare onnxruntime with PyTorch before the file is committed
    (raises ``RuntimeError`` when they disagree).
    """
    onnx = _require("onnx")
    model = _as_model(model_or_weights_path)
    stride = model.stride
    clip_len = model.config.clip_len if clip_len is None else int(clip_len)
    if clip_len < 2:
        raise ValueError(f"clip_len must be >= 2, got {clip_len}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET} (GridSample), got {opset}")
    size = size or (4 * stride, 6 * stride)
    if size[0] % stride or size[1] % stride or min(size) < stride:
        raise ValueError(f"size {size[0]}x{size[1]} must be positive multiples of the stride {stride}")

    wrapper = OnnxMotionNet(model).eval()
    example = torch.rand(1, clip_len, 3, *size, generator=torch.Generator().manual_seed(0))
    dynamic_axes = None
    if dynamic:
        spatial = {0: "batch", 3: "height", 4: "width"}
        dynamic_axes = {name: spatial for name in (INPUT_NAME, *OUTPUT_NAMES)}

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_path) as temp:
        with _traceable_network(opset), warnings.catch_warnings():
            # Tracer notes about Python-side shape checks (they only raise) and the exporter's deprecation
            # notice; correctness is established by the check below, not by the absence of warnings.
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*Constant folding.*")
            torch.onnx.export(
                wrapper,
                (example,),
                str(temp),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        proto = onnx.load(str(temp))
        for key, value in _metadata(model, clip_len, dynamic, size).items():
            proto.metadata_props.add(key=key, value=value)
        _declare_output_shapes(proto, clip_len - 1)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(temp))
        if check:
            # Dynamic: another batch and size than the traced ones; static: the one size it accepts.
            if dynamic:
                _self_check(temp, out_path, model, 2, clip_len, (size[0] + stride, size[1] + 2 * stride))
            else:
                _self_check(temp, out_path, model, 1, clip_len, size)
    return out_path


def _declare_output_shapes(proto, pairs: int) -> None:
    """Write the pair and channel counts into the outputs' declared shapes (shape inference leaves them
    symbolic); the self-check confirms the real shapes."""
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        dims[1].dim_value = pairs
        dims[2].dim_value = 2 if output.name == "flows" else 1


def _self_check(
    onnx_path: Path, out_path: Path, model: MotionNet, batch: int, clip_len: int, size: tuple[int, int]
) -> None:
    frames = torch.rand(batch, clip_len, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        scale = float(model(frames).flows.abs().max())
    try:
        diff = verify_onnx(onnx_path, model, frames)
    except Exception as err:  # onnxruntime raises its own types when a shape was frozen at the traced size
        raise RuntimeError(
            f"{out_path}: ONNX export fails at {batch}x{clip_len}x3x{size[0]}x{size[1]} ({err}); not written"
        ) from err
    if not diff <= CHECK_ATOL + CHECK_RTOL * scale:
        raise RuntimeError(
            f"{out_path}: ONNX export disagrees with PyTorch at {batch}x{clip_len}x3x{size[0]}x{size[1]} "
            f"(max |diff| {diff:.3g} px); not written"
        )


# ---- running and verifying -------------------------------------------------------------------------------


def onnx_session(onnx_path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session; ``threads`` sets the intra-op thread count (default: onnxruntime's)."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def run_onnx(session_or_path, frames: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """Run an exported model (file or :func:`onnx_session`) on ``frames`` B×T×3×H×W float in [0, 1].

    Returns ``{"flows": B×(T−1)×2×H×W, "confidence": B×(T−1)×1×H×W}`` as float32 arrays.
    """
    session = onnx_session(session_or_path) if isinstance(session_or_path, str | Path) else session_or_path
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.ascontiguousarray(frames, dtype=np.float32)
    names = [out.name for out in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT_NAME: frames}), strict=True))


def verify_onnx(
    onnx_path: str | Path, model: MotionNet, frames: np.ndarray | torch.Tensor, threads: int | None = None
) -> float:
    """Max |flow_onnx − flow_pytorch| in pixels on ``frames`` (B×T×3×H×W float in [0, 1], any H×W: padded to
    the stride with :class:`InputPadder` first, the same input for both)."""
    clip = torch.as_tensor(frames, dtype=torch.float32).cpu()
    if clip.dim() != 5 or clip.shape[2] != 3:
        raise ValueError(f"verify_onnx expects B×T×3×H×W frames, got {tuple(clip.shape)}")
    model = _as_model(model)
    (clip,) = InputPadder(*clip.shape[-2:], stride=model.stride).pad(clip)
    with torch.inference_mode():
        expected = model(clip).flows.numpy()
    got = run_onnx(onnx_session(onnx_path, threads), clip)["flows"]
    if got.shape != expected.shape:
        raise RuntimeError(f"{onnx_path}: ONNX flows {got.shape}, PyTorch flows {expected.shape}")
    return float(np.abs(got - expected).max())


def read_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The ``scattermotion.*`` metadata of an exported file, unprefixed (clip_len, stride, motion_config)."""
    props = onnx_session(onnx_path).get_modelmeta().custom_metadata_map
    return {k[len(METADATA_PREFIX) :]: v for k, v in props.items() if k.startswith(METADATA_PREFIX)}
