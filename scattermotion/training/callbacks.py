"""What happens around a training step: logging, motion images, validation, checkpoints, test hooks.

Each callback has one job and sees the loop's :class:`LoopState` after every step (``after_step``) and once
at the end (``at_end``). Rank 0 runs the ones that write files; every rank runs the ones that must agree
(the mean of the logged terms over ranks is a collective). Validation and checkpoint time is recorded in
``state.paused_s`` so throughput counts training only.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from scattermotion.io.atomic import write_json_atomic
from scattermotion.training.checkpoint import rng_state, save_checkpoint, weights_hash
from scattermotion.training.config import TrainConfig
from scattermotion.training.distributed import DistContext


@dataclass
class LoopState:
    """The loop's mutable state, shared with the callbacks."""

    config: TrainConfig
    ctx: DistContext
    run_dir: Path
    module: torch.nn.Module  # the bare model (not the DDP wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    step: int = 0  # steps completed
    run_start: float = 0.0  # perf_counter at the (virtual) start of the run, resumed time included
    paused_s: float = 0.0  # time in validation and checkpoints since the last log line
    accumulator: dict[str, float] = field(default_factory=dict)  # logged terms summed since the last line
    last_metrics: dict[str, float] = field(default_factory=dict)  # the latest validation metrics
    stop: bool = False  # a callback asks the loop to stop after this step


@dataclass
class StepOutput:
    """What one step leaves for the callbacks."""

    terms: dict[str, float]  # the loss terms and gradient norm, averaged over ranks
    lr: float
    batch: dict[str, torch.Tensor]
    frames: torch.Tensor
    output: Any  # MotionOutput


class Callback:
    def after_step(self, state: LoopState, out: StepOutput) -> None:  # noqa: B027 - optional hook
        pass

    def at_end(self, state: LoopState) -> None:  # noqa: B027 - optional hook
        pass


def mean_over_ranks(terms: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, float]:
    """Detached scalars → floats, averaged over the ranks of a distributed run (every rank must call it)."""
    names = sorted(terms)
    values = torch.stack([terms[n].detach().float() for n in names]).cpu()
    if ctx.distributed:
        dist.all_reduce(values)
        values /= ctx.world_size
    return dict(zip(names, values.tolist(), strict=True))


class MetricsLog(Callback):
    """A ``train`` line every ``log_every`` steps: the mean of each term since the last one, lr, clips/s."""

    def __init__(self, run_log, bar=None):
        self.run_log, self.bar = run_log, bar
        self.interval_start = time.perf_counter()
        self.smoothed: float | None = None

    def after_step(self, state: LoopState, out: StepOutput) -> None:
        for name, value in out.terms.items():
            state.accumulator[name] = state.accumulator.get(name, 0.0) + value
        state.accumulator["_count"] = state.accumulator.get("_count", 0.0) + 1
        total = out.terms["total"]
        self.smoothed = total if self.smoothed is None else 0.9 * self.smoothed + 0.1 * total
        config = state.config
        if state.step % config.log_every and state.step != config.steps:
            return
        now = time.perf_counter()
        count = state.accumulator.pop("_count")
        row = {("loss" if k == "total" else k): v / count for k, v in sorted(state.accumulator.items())}
        row["lr"] = out.lr
        busy = max(now - self.interval_start - state.paused_s, 1e-9)
        row["clips_per_s"] = count * config.batch_size * state.ctx.world_size / busy
        row["time_s"] = now - state.run_start
        self.run_log.record("train", state.step, row)
        state.accumulator, state.paused_s, self.interval_start = {}, 0.0, now
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{self.smoothed:.4f}", clips_s=f"{row['clips_per_s']:.2f}")


def motion_image(flows: list[np.ndarray], frame: np.ndarray | None = None) -> np.ndarray:
    """``[frame |] flow colours...`` side by side, every flow coloured on the scale of the last one."""
    from scattermotion.io.visualize import flow_to_color

    finite = flows[-1][np.isfinite(flows[-1]).all(-1)]
    scale = float(np.percentile(np.linalg.norm(finite, axis=-1), 99)) if finite.size else 1.0
    tiles = [flow_to_color(np.ascontiguousarray(f), max_flow=max(scale, 1e-3)) for f in flows]
    return np.concatenate(([frame] if frame is not None else []) + tiles, axis=1)


class MotionImages(Callback):
    """The first clip's frame and predicted motion to TensorBoard every ``image_every`` steps."""

    def __init__(self, run_log):
        self.run_log = run_log

    def after_step(self, state: LoopState, out: StepOutput) -> None:
        if state.step % state.config.image_every and state.step != state.config.steps:
            return
        first = out.frames[0, 0].permute(1, 2, 0).mul(255).round().byte().cpu().numpy()
        motion = out.output.flows[0, 0].detach().permute(1, 2, 0).float().cpu().numpy()
        self.run_log.image("train/motion", motion_image([motion], frame=first), state.step)


class Validation(Callback):
    """The validator every ``val_every`` steps and at the end; its metrics become ``state.last_metrics``."""

    def __init__(self, validator, run_log, bar=None):
        self.validator, self.run_log, self.bar = validator, run_log, bar

    def after_step(self, state: LoopState, out: StepOutput) -> None:
        if state.step % state.config.val_every and state.step != state.config.steps:
            return
        start = time.perf_counter()
        state.last_metrics, examples = self.validator(state.module, state.ctx.device)
        self.run_log.record("val", state.step, state.last_metrics)
        for name, (pred, gt) in examples.items():  # prediction | ground truth, same colour scale
            self.run_log.image(f"val/{name}", motion_image([pred, gt]), state.step)
        if self.bar is not None:
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in state.last_metrics.items())
            self.bar.write(f"step {state.step}: {metrics}")
        state.paused_s += time.perf_counter() - start


def training_state(state: LoopState) -> dict[str, Any]:
    """Everything but the weights that exact resume needs (tensors and primitives only)."""
    return {
        "step": state.step,
        "samples_seen": state.step * state.config.batch_size,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "rng": rng_state(),
        "accumulator": dict(state.accumulator),
        "last_metrics": dict(state.last_metrics),
        "elapsed_s": time.perf_counter() - state.run_start,
        "world_size": state.ctx.world_size,
    }


class Checkpoints(Callback):
    """A resumable checkpoint every ``checkpoint_every`` steps and at the end (the newest few kept)."""

    def after_step(self, state: LoopState, out: StepOutput) -> None:
        config = state.config
        if state.step % config.checkpoint_every and state.step != config.steps:
            return
        start = time.perf_counter()
        save_checkpoint(
            state.run_dir, state.step, state.module, training_state(state), config.keep_checkpoints
        )
        state.paused_s += time.perf_counter() - start


class StopAt(Callback):
    """Stop right after ``step`` without finishing, as a killed run would (tests of exact resume)."""

    def __init__(self, step: int):
        self.stop_step = step

    def after_step(self, state: LoopState, out: StepOutput) -> None:
        if state.step >= self.stop_step and state.step < state.config.steps:
            state.stop = True


def _hash_tensor(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class DebugDump(Callback):
    """Tests: each rank writes its final weights hash and every batch's hash to ``debug/rank{N}.json``."""

    def __init__(self):
        self.batch_hashes: list[str] = []
        self.indices: list[list[int]] = []

    def after_step(self, state: LoopState, out: StepOutput) -> None:
        self.batch_hashes.append(_hash_tensor(out.batch["frames"]))
        self.indices.append(out.batch["index"].tolist())

    def at_end(self, state: LoopState) -> None:
        folder = state.run_dir / "debug"
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": state.ctx.rank,
            "weights_sha256": weights_hash(state.module),
            "batch_hashes": self.batch_hashes,
            "indices": self.indices,
        }
        write_json_atomic(folder / f"rank{state.ctx.rank}.json", record, indent=None)
