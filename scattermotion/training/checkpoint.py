"""Checkpoints and exact resume.

A checkpoint is ``checkpoints/step_%08d.safetensors`` (weights, config in the metadata) plus
``step_%08d.state.pt`` (optimizer, scheduler, step, RNG states, log accumulators: tensors and primitives only,
loaded with ``torch.load(weights_only=True)``), each written atomically, then the ``latest`` pointer. The data
are a pure function of ``(seed, rank, sample index)``, so the step is the data position: a resumed run sees
the same clips, learning rates and optimizer moments as if it had never stopped. A kill during a write
leaves a ``.step_….tmp…`` file; resuming removes those (only names this module's writers make).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scattermotion.errors import InputError
from scattermotion.io.atomic import atomic_output, write_bytes_atomic

CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
# The temporary names io.atomic.temp_path_beside gives a checkpoint's files and the pointer.
_STALE_TEMPORARY = re.compile(r"^\.(step_\d{8}(\.state)?|latest)\.[0-9a-f]{8}\.tmp(\.safetensors|\.pt)?$")


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def _checkpoint_paths(run_dir: Path, name: str) -> tuple[Path, Path]:
    folder = run_dir / CHECKPOINT_DIR
    return folder / f"{name}.safetensors", folder / f"{name}.state.pt"


def _step_of(name: str) -> int | None:
    if name.startswith("step_") and name[5:].isdigit():
        return int(name[5:])
    return None


def list_checkpoints(run_dir: str | os.PathLike) -> list[int]:
    """Steps of the complete checkpoints (weights and state both present) in a run folder, ascending."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    steps = []
    for path in folder.glob("step_*.safetensors"):
        step = _step_of(path.name.removesuffix(".safetensors"))
        if step is not None and _checkpoint_paths(Path(run_dir), checkpoint_name(step))[1].is_file():
            steps.append(step)
    return sorted(steps)


def latest_checkpoint(run_dir: str | os.PathLike) -> int | None:
    """The step the ``latest`` pointer names (or, if it is missing or stale, the newest complete one)."""
    run_dir = Path(run_dir)
    complete = list_checkpoints(run_dir)
    pointer = run_dir / CHECKPOINT_DIR / LATEST
    if pointer.is_file():
        step = _step_of(pointer.read_text().strip())
        if step in complete:
            return step
    return complete[-1] if complete else None


def save_checkpoint(
    run_dir: Path, step: int, model: torch.nn.Module, state: dict[str, Any], keep: int
) -> None:
    """Weights, then state, then the ``latest`` pointer (each atomic); keep only the newest ``keep``."""
    from scattermotion.model import save_weights

    name = checkpoint_name(step)
    weights_path, state_path = _checkpoint_paths(run_dir, name)
    save_weights(model, weights_path)
    with atomic_output(state_path) as temp:
        torch.save(state, temp)
    write_bytes_atomic(run_dir / CHECKPOINT_DIR / LATEST, (name + "\n").encode())
    for old in list_checkpoints(run_dir)[:-keep]:
        for path in _checkpoint_paths(run_dir, checkpoint_name(old)):
            path.unlink(missing_ok=True)


def checkpoint_weights(run_dir: Path, step: int) -> Path:
    """The weights file of checkpoint ``step``."""
    return _checkpoint_paths(run_dir, checkpoint_name(step))[0]


def load_checkpoint(run_dir: Path, step: int, model: torch.nn.Module) -> dict[str, Any]:
    """Load checkpoint ``step``'s weights into ``model``; return its training state (weights_only load)."""
    from scattermotion.model import MotionNet
    from scattermotion.model.weights import load_checked, read_config

    weights_path, state_path = _checkpoint_paths(run_dir, checkpoint_name(step))
    stored = read_config(weights_path)
    if stored.to_dict() != model.config.to_dict():
        raise InputError(weights_path, "was trained with a different model config than this run's")
    # Checked like any weights file (names, shapes, dtypes, finite values) before it replaces the model's.
    checked = load_checked(weights_path, lambda: MotionNet(stored))
    model.load_state_dict(checked.state_dict())
    try:
        return torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors of many kinds: a damaged or foreign file
        raise InputError(state_path, f"cannot load training state ({err})") from err


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as tensors and primitives only (loadable with weights_only)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files a killed checkpoint write left behind; return them."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if _STALE_TEMPORARY.match(p.name) and p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
