"""Training speed of a recipe, split into phases, with every optimisation switchable
(``benchmarks/train_speed.py`` prints the table; the README's results section renders it from the JSON).

The optimisations:

- ``fast_render``: the synthetic renderer's cv2.remap sampling, edge-band anti-aliasing, sprites drawn in
  their bounding boxes and float32-first inversion of the non-rigid fields (same truth);
- ``forward_only``: decode backward motion only when the occlusion test needs it (the recipe has it off);
- ``gt_only_synthetic``: synthetic clips are scored by their ground truth only, not photometrically too;
- ``bf16``: bf16 autocast for the network (only where the CPU has native bf16);
- ``one_blas_thread``: numpy's BLAS at one thread in the process and its data worker (the renderer's
  products are tiny; a spinning BLAS pool beside torch's threads costs both);
- ``lean_kernels``: CGU takes its neighbour weights by ``unbind`` and SSIM its five local means by one
  separable box filter; off, the kernels main had before (per-neighbour indexing, whose backward zero-fills
  the whole weight volume nine times; five ``avg_pool2d`` calls), patched in for the measurement.

Each variant times steps synchronously (the same batches for every variant): data (decode + synthetic
rendering + augmentation + collation), forward, loss, backward, optimizer; steps/s is one over their sum.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scattermotion.data.fetched import real_video
from scattermotion.precision import resolve_precision
from scattermotion.threads import cap_blas_threads
from scattermotion.training.config import TrainConfig
from scattermotion.training.data import build_dataset, make_loader
from scattermotion.training.distributed import DistContext
from scattermotion.training.objectives import training_objective

OPTIMISATIONS = (
    "fast_render", "forward_only", "gt_only_synthetic", "bf16", "one_blas_thread", "lean_kernels",
)  # fmt: skip
PHASES = ("data", "forward", "loss", "backward", "optimizer")
VIDEOS = ("tree", "carphone", "bikes")  # training-side footage, small enough to decode at once


def recipe(threads: int) -> TrainConfig:
    return TrainConfig(
        sources=[str(real_video(name)) for name in VIDEOS],
        crop_size=(224, 320),
        batch_size=4,
        clip_len=4,
        frame_steps=(1, 2, 4, 8),
        synthetic_ratio=0.5,
        synthetic_max_disp=64.0,
        supervised_weight=0.05,
        occlusion_from_step=10**9,
        augment=dict(scale_range=(0.7, 1.4), noise_std=0.01),
        threads=threads,
        num_workers=0,
        val_sets=(),
        val_real_clips=0,
    )


def _indexed_convex_upsample(field, logits, stride: int, scale_values: bool = True):
    """CGU as main had it before ``lean_kernels``: the same values, each neighbour's weights by indexing."""
    batch, channels, height, width = field.shape
    weights = F.softmax(logits.float().view(batch, 9, stride * stride, height, width), dim=1)
    padded = F.pad(field, (1, 1, 1, 1), mode="replicate")
    up = field.new_zeros(batch, channels, stride * stride, height, width)
    for q in range(9):
        row, col = divmod(q, 3)
        up.addcmul_(weights[:, None, q], padded[:, :, None, row : row + height, col : col + width])
    up = up.view(batch, channels, stride, stride, height, width).permute(0, 1, 4, 2, 5, 3)
    up = up.reshape(batch, channels, height * stride, width * stride)
    return up * stride if scale_values else up


def _pooled_box3(x):
    """SSIM's 3×3 mean as main had it before ``lean_kernels``."""
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


@contextlib.contextmanager
def kernels(lean: bool):
    """With ``lean`` the project's kernels; without, the earlier ones patched in (same values)."""
    from scattermotion import losses
    from scattermotion.model import network

    if lean:
        yield
        return
    saved = network.convex_upsample, losses.box3
    network.convex_upsample, losses.box3 = _indexed_convex_upsample, _pooled_box3
    try:
        yield
    finally:
        network.convex_upsample, losses.box3 = saved


def _setup(on: set[str], config: TrainConfig, run_dir: Path):
    """The variant's config, dataset, model and optimizer, and whether it decodes backward motion."""
    from scattermotion.model import MotionNet

    config = config.replace(
        self_supervised_on_synthetic="gt_only_synthetic" not in on,
        precision="bf16" if "bf16" in on else "fp32",
    )
    dataset, _ = build_dataset(config, run_dir, DistContext())
    dataset.synthetic.clips.fast = "fast_render" in on
    torch.manual_seed(0)
    model = MotionNet(config.motion_config()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_cfg = config.loss_config(0)  # as the loop does at step 0 (occlusion masking may start later)
    bidirectional = not ("forward_only" in on and not loss_cfg.occlusion)
    return config, dataset, model, optimizer, bidirectional


def time_pipelined(on: set[str], config: TrainConfig, run_dir: Path, steps: int, warmup: int) -> float:
    """Steps/s of the real loop's step function with its DataLoader worker rendering ahead (what a run
    sees: on 2 cores the worker overlaps the network but competes with it)."""
    from scattermotion.training.loop import train_step

    config = config.replace(num_workers=1, steps=warmup + steps)
    config, dataset, model, optimizer, bidirectional = _setup(on, config, run_dir)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    ctx = DistContext()
    precision = resolve_precision(config.precision, ctx.device)
    start = None
    one_blas = "one_blas_thread" in on
    with cap_blas_threads(1 if one_blas else None), kernels("lean_kernels" in on):
        for index, batch in enumerate(make_loader(dataset, config, ctx, 0, one_blas_thread=one_blas)):
            if index == warmup:
                start = time.perf_counter()
            train_step(model, optimizer, scheduler, batch, config, index, precision, ctx, bidirectional)
    return steps / (time.perf_counter() - start)


def time_variant(on: set[str], config: TrainConfig, run_dir: Path, steps: int, warmup: int) -> dict:
    config, dataset, model, optimizer, bidirectional = _setup(on, config, run_dir)
    precision = resolve_precision(config.precision, torch.device("cpu"))
    times = {phase: [] for phase in PHASES}
    with cap_blas_threads(1 if "one_blas_thread" in on else None), kernels("lean_kernels" in on):
        for step in range(warmup + steps):
            phases = _time_step(step, config, dataset, model, optimizer, bidirectional, precision)
            if step >= warmup:
                for phase, seconds in phases.items():
                    times[phase].append(seconds)
    per_phase = {phase: float(np.mean(v)) for phase, v in times.items()}
    step_s = sum(per_phase.values())
    return {
        "on": sorted(on),
        "precision": precision,
        "bidirectional": bidirectional,
        "ms": {k: round(v * 1000, 1) for k, v in per_phase.items()},
        "step_s": round(step_s, 4),
        "steps_per_s": round(1 / step_s, 4),
        "clips_per_s": round(config.batch_size / step_s, 3),
    }


def _time_step(step, config, dataset, model, optimizer, bidirectional, precision) -> dict[str, float]:
    """One synchronous training step, timed phase by phase (seconds)."""
    from scattermotion.precision import autocast

    device = torch.device("cpu")
    loss_cfg = config.loss_config(0)
    start = time.perf_counter()
    indices = range(step * config.batch_size, (step + 1) * config.batch_size)
    batch = torch.utils.data.default_collate([dataset[i] for i in indices])
    marks = [time.perf_counter()]
    with autocast(precision, device):
        output = model(batch["frames"], bidirectional=bidirectional)
    marks.append(time.perf_counter())
    loss, _ = training_objective(
        batch["frames"], output, batch["has_gt"], batch["flows"], loss_cfg,
        config.supervised_weight, config.self_supervised_on_synthetic,
    )  # fmt: skip
    marks.append(time.perf_counter())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    marks.append(time.perf_counter())
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    marks.append(time.perf_counter())
    return {phase: t1 - t0 for phase, t0, t1 in zip(PHASES, [start, *marks[:-1]], marks, strict=True)}


def to_markdown(report: dict) -> str:
    rows = report["variants"]
    base = rows[0]["steps_per_s"]
    pipelined = report.get("pipelined")
    lines = [
        "| variant | " + " | ".join(f"{p} ms" for p in PHASES) + " | steps/s | clips/s | × all off |",
        "|---|" + "---:|" * (len(PHASES) + 3),
    ]
    for row in rows:
        cells = [f"{row['ms'][p]:.0f}" for p in PHASES]
        lines.append(
            f"| {row['name']} | " + " | ".join(cells)
            + f" | {row['steps_per_s']:.3f} | {row['clips_per_s']:.2f} | {row['steps_per_s'] / base:.2f} |"
        )  # fmt: skip
    if pipelined:
        lines += [
            "",
            "| the real loop (DataLoader worker rendering ahead) | steps/s | × all off |",
            "|---|---:|---:|",
        ]
        for name, value in pipelined.items():
            lines.append(f"| {name} | {value:.3f} | {value / pipelined['all off']:.2f} |")
    return "\n".join(lines)
