"""Save and load MotionNet weights as safetensors, with the architecture config in the file's metadata.

The file alone rebuilds the model (``load_weights(path)``); an optional model card (training data, steps,
metrics) is written beside it as ``<name>.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from scattermotion.errors import InputError
from scattermotion.io.atomic import atomic_output, write_json_atomic
from scattermotion.model.config import MotionConfig
from scattermotion.model.network import MotionNet

CONFIG_KEY = "motion_config"
FORMAT_KEY = "format"
FORMAT = "scattermotion-motionnet-1"


def _atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` into a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temp:
        mode = temp.stat().st_mode & 0o777  # what a plainly written file gets (0o666 minus the umask)
        write(str(temp))
        # safetensors replaces the file with a private (0600) one of its own: give it the usual mode back.
        os.chmod(temp, mode)


def card_path(path: str | Path) -> Path:
    """Where the model card of a weights file lives: same name, ``.json``."""
    return Path(path).with_suffix(".json")


def training_record(path: str | Path) -> dict[str, Any]:
    """The ``training`` record of a weights file's card (``{"weights": name, "card": "none"}`` without one):
    what a fine-tuning run keeps as the history of the weights it started from."""
    card = card_path(path)
    if not card.is_file():
        return {"weights": Path(path).name, "card": "none"}
    return json.loads(card.read_text()).get("training") or {"weights": Path(path).name, "card": "empty"}


def save_weights(model: MotionNet, path: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s parameters to ``path`` (safetensors, config in metadata), ``card`` beside it."""
    path = Path(path)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    metadata = {FORMAT_KEY: FORMAT, CONFIG_KEY: model.config.to_json()}
    _atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    if card is not None:
        card = {"config": model.config.to_dict(), **card}
        write_json_atomic(card_path(path), card, indent=2, sort_keys=True, default=str)
    return path


def read_config(path: str | Path) -> MotionConfig:
    """The MotionConfig stored in a weights file (raises :class:`InputError` if there is none)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weights file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for a bad header
        raise InputError(path, f"not a readable safetensors file ({err})") from err
    if CONFIG_KEY not in metadata:
        raise InputError(
            path, "no motion_config in the safetensors metadata (not a scattermotion weights file)"
        )
    try:
        return MotionConfig.from_json(metadata[CONFIG_KEY])
    except (ValueError, TypeError) as err:
        raise InputError(path, f"bad motion_config in metadata ({err})") from err


def load_checked(path: Path, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """``build()`` loaded with the tensors of the safetensors file ``path``, trusting nothing in the file.

    The module is first built on the meta device (no memory), so a config in the metadata that asks for
    gigabytes costs nothing; the file's tensor names, shapes and dtypes are compared with it from the
    header alone; only then are the tensors read (bounded by the file's size), checked to be finite, and
    the module built for real. Every problem is one :class:`InputError` naming the file.
    """
    try:
        with torch.device("meta"):
            skeleton = build()
    except InputError as err:
        raise InputError(path, f"bad config in metadata ({err.problem})") from None
    except (ValueError, TypeError, RuntimeError, KeyError, OverflowError) as err:
        raise InputError(path, f"bad config in metadata ({err})") from None
    expected = {name: (tuple(t.shape), t.dtype) for name, t in skeleton.state_dict().items()}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            stored = {name: handle.get_slice(name) for name in handle.keys()}
            shapes = {name: tuple(piece.get_shape()) for name, piece in stored.items()}
            dtypes = {name: piece.get_dtype() for name, piece in stored.items()}
            problems = _mismatches(expected, shapes, dtypes)
            if problems:
                raise InputError(path, "tensors do not match the stored config (" + "; ".join(problems) + ")")
            tensors = {name: handle.get_tensor(name) for name in stored}
    except InputError:
        raise
    except Exception as err:  # safetensors raises its own error types for a bad header or body
        raise InputError(path, f"cannot read tensors ({err})") from err
    bad = sorted(n for n, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all())
    if bad:
        raise InputError(path, f"tensors hold NaN or infinite values: {_names(bad)}")
    module = build()
    module.load_state_dict(tensors)
    return module


def _names(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


_SAFETENSORS_FLOATS = {"F16", "BF16", "F32", "F64"}


def _mismatches(
    expected: dict[str, tuple[tuple[int, ...], torch.dtype]],
    shapes: dict[str, tuple[int, ...]],
    dtypes: dict[str, str],
) -> list[str]:
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    common = sorted(set(expected) & set(shapes))
    wrong_shape = [n for n in common if expected[n][0] != shapes[n]]
    # A float parameter must be stored as a float (an int or bool tensor would load as garbage motion).
    wrong_dtype = [
        n for n in common if expected[n][1].is_floating_point and dtypes[n] not in _SAFETENSORS_FLOATS
    ]
    problems = []
    for label, names in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", wrong_shape),
        ("not floating point", wrong_dtype),
    ):
        if names:
            problems.append(f"{label}: {_names(names)}")
    return problems


def grow_weights(path: str | Path, overrides: dict[str, Any]) -> tuple[MotionNet, list[str]]:
    """The network stored in ``path`` with ``overrides`` applied to its config (e.g. a finer
    ``output_stride``): every tensor whose name and shape still fit is loaded, the rest keep their fresh
    initialisation. Returns the network and the names of the fresh tensors.

    A new decoder level starts at a zero residual (near-uniform cues), so the grown network begins close to
    the stored one and training only has to teach the new parts.
    """
    source = load_weights(path)  # every check of a stored file, as for any weights
    try:
        config = MotionConfig.from_dict({**source.config.to_dict(), **overrides})
    except (ValueError, TypeError) as err:
        raise InputError(path, f"cannot apply model_overrides {overrides} to its config ({err})") from None
    model = MotionNet(config)
    own, stored = model.state_dict(), source.state_dict()
    fits = {name: t for name, t in stored.items() if name in own and own[name].shape == t.shape}
    model.load_state_dict(fits, strict=False)
    return model, sorted(set(own) - set(fits))


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> MotionNet:
    """Rebuild the MotionNet stored in ``path`` and load its parameters; returns it in eval mode.

    Nothing in the file is trusted: see :func:`load_checked`.
    """
    path = Path(path)
    config = read_config(path)
    model = load_checked(path, lambda: MotionNet(config))
    return model.to(device).eval()
