"""The training loop (``scattermotion train``): set-up, one step function, callbacks, the model card.

A plain single-process loop that becomes DistributedDataParallel under ``torchrun``; every rank draws its
own clips (the sampling key includes the rank); only rank 0 logs, validates and writes files.

One step (:func:`train_step`): the network on the clip (bf16 autocast where the hardware has it), the
objective of :mod:`scattermotion.training.objectives`, AdamW, gradient clipping, the learning-rate schedule
(:func:`lr_factor`). Everything else happens in callbacks (:mod:`scattermotion.training.callbacks`).

A run folder holds::

    config.yaml                 the resolved TrainConfig (what --resume continues)
    metrics.jsonl               one JSON line per log / validation event
    tb/                         TensorBoard: every loss term, lr, throughput, motion images, validation EPE
    scene_cuts.json             the scanned frame counts and scene cuts of the training videos
    checkpoints/step_%08d.safetensors, .state.pt, latest   (see scattermotion.training.checkpoint)
    final.safetensors, final.json      the trained weights and their model card

**Evaluation data never enter training** and never pick a checkpoint: see
:mod:`scattermotion.training.validation`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from scattermotion.errors import InputError
from scattermotion.io.atomic import write_json_atomic
from scattermotion.model.weights import training_record
from scattermotion.precision import autocast, cpu_bf16_flags, resolve_precision
from scattermotion.threads import cap_blas_threads, set_threads
from scattermotion.training.callbacks import (
    Callback,
    Checkpoints,
    DebugDump,
    LoopState,
    MetricsLog,
    MotionImages,
    StepOutput,
    StopAt,
    Validation,
    mean_over_ranks,
)
from scattermotion.training.checkpoint import (
    checkpoint_weights,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_stale_temporaries,
    set_rng_state,
)
from scattermotion.training.config import (
    CONFIG_FILE,
    INIT_RECORD_FILE,
    RESUMABLE_CHANGES,
    TrainConfig,
    load_config,
    save_config,
)
from scattermotion.training.data import build_dataset, make_loader
from scattermotion.training.distill import teacher_targets
from scattermotion.training.distributed import DistContext, init_distributed
from scattermotion.training.objectives import training_objective

log = logging.getLogger(__name__)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning rate of 0-based ``step`` relative to ``config.lr``.

    ``onecycle``: linear warm-up from lr/25 to lr, then linear decay to ``min_lr_ratio`` (RAFT's recipe);
    ``cosine``: linear warm-up from 0, then cosine decay to ``min_lr_ratio``; ``constant``: warm-up, then lr.
    The warm-up lasts ``warmup_steps`` but at most a fifth of the run (short runs keep a decay phase).
    """
    warmup = min(config.warmup_steps, config.steps // 5)
    if step < warmup:
        start = 1 / 25 if config.schedule == "onecycle" else 0.0
        return start + (1 - start) * (step + 1) / warmup
    if config.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, config.steps - warmup))
    low = config.min_lr_ratio
    if config.schedule == "cosine":
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - (1 - low) * progress


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # steps completed
    final_weights: Path | None  # None when the run stopped early (stop_at)
    metrics: dict[str, float]  # the last validation metrics
    train_time_s: float


def train_step(
    model,
    optimizer,
    scheduler,
    batch,
    config: TrainConfig,
    step: int,
    precision: str,
    ctx,
    bidirectional=None,
) -> StepOutput:
    """One optimizer step on ``batch``. ``bidirectional`` None: decode backward motion only when the
    occlusion test needs it (without it, half the decoding is wasted; reversed clips come from the
    augmentation instead); the training-speed benchmark forces it on for its "all off" row."""
    frames = batch["frames"].to(ctx.device, non_blocking=True)
    loss_cfg = config.loss_config(step)
    if bidirectional is None:
        bidirectional = loss_cfg.occlusion
    teacher, shown = None, frames
    if config.distill_weight > 0:  # the ensemble reads the clean real clips; the network sees the student's
        real = ~batch["has_gt"].to(ctx.device)
        shown = batch["student_frames"].to(ctx.device, non_blocking=True)
        if bool(real.any()):
            net = model.module if hasattr(model, "module") else model  # the teacher runs outside DDP
            with autocast(precision, ctx.device):
                teacher = teacher_targets(
                    net, frames[real], config.distill_mirror, config.distill_max_spread, config.distill_refine
                )
    with autocast(precision, ctx.device):
        output = model(shown, bidirectional=bidirectional)
    loss, terms = training_objective(
        frames,
        output,
        batch["has_gt"],
        batch["flows"],
        loss_cfg,
        config.supervised_weight,
        config.self_supervised_on_synthetic,
        teacher=teacher,
        distill_weight=config.distill_weight,
    )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = config.grad_clip if config.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    lr = optimizer.param_groups[0]["lr"]
    # A non-finite gradient (every rank sees the same norm: DDP averages before the clip) skips the update,
    # as AMP's GradScaler does: one NaN step would leave NaN weights for the rest of the run. The logged
    # grad_norm says it happened; the schedule still advances, so the step count and resume stay exact.
    if torch.isfinite(grad_norm):
        optimizer.step()
        scheduler.step()
    else:
        with warnings.catch_warnings():  # "scheduler before optimizer": intended here, the step was skipped
            warnings.filterwarnings(
                "ignore", message="Detected call of `lr_scheduler.step", category=UserWarning
            )
            scheduler.step()
    terms = {**terms, "grad_norm": grad_norm}
    return StepOutput(mean_over_ranks(terms, ctx), lr, batch, frames, output)


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
) -> TrainResult:
    """Train (or, with ``resume``, continue) the run in ``run_dir``; see the module docstring.

    ``stop_at``: stop right after that step without finishing, as a killed run would (for tests).
    """
    ctx = init_distributed(config.device)
    try:
        with cap_blas_threads(1):  # numpy's BLAS (the data side) at one thread: see threads.cap_blas_threads
            return _train(config, Path(run_dir), ctx, resume, progress, stop_at)
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


def _check_resume_config(saved: TrainConfig, config: TrainConfig, path: Path) -> None:
    old, new = saved.to_dict(), config.to_dict()
    changed = sorted(k for k in old if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        details = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
        raise InputError(path, f"--resume needs the run's own settings; these differ: {details}")
    if old["steps"] != new["steps"]:
        log.warning(
            "steps changed from %s to %s: the lr schedule changes from here", old["steps"], new["steps"]
        )


def _build_model(config: TrainConfig, run_dir: Path, resume_step: int | None):
    from scattermotion.model import MotionNet, load_weights
    from scattermotion.model.weights import grow_weights, read_config

    if resume_step is not None:  # the checkpoint fixes the architecture: --init's file need not exist now
        return MotionNet(read_config(checkpoint_weights(run_dir, resume_step))).train()
    if config.init_weights and config.model_overrides:  # grow: the file's architecture, changed as asked
        model, fresh = grow_weights(config.init_weights, config.model_overrides)
        log.info(
            "grown from %s with %s; fresh tensors: %s", config.init_weights, config.model_overrides, fresh
        )
        return model.train()
    if config.init_weights:  # fine-tune: the weights file fixes the architecture
        return load_weights(config.init_weights).train()
    return MotionNet(config.motion_config())


def _restore(state: LoopState, model, resume_step: int) -> None:
    saved = load_checkpoint(state.run_dir, resume_step, model)
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.step = int(saved["step"])
    state.run_start = time.perf_counter() - float(saved["elapsed_s"])
    state.accumulator, state.last_metrics = dict(saved["accumulator"]), dict(saved["last_metrics"])
    set_rng_state(saved["rng"])
    if int(saved["world_size"]) != state.ctx.world_size:
        log.warning("resuming a %s-process run with %s processes", saved["world_size"], state.ctx.world_size)


def _move_optimizer_state(optimizer, device: torch.device) -> None:
    for group_state in optimizer.state.values():  # Adam moments follow the parameters' device
        for key, value in group_state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                group_state[key] = value.to(device)


def _prepare_folder(config: TrainConfig, run_dir: Path, ctx: DistContext, resume: bool) -> bool:
    """Check the folder fits the request; return whether this call created it (to remove it on failure)."""
    if resume:
        saved_path = run_dir / CONFIG_FILE
        if not saved_path.is_file():
            raise InputError(run_dir, "--resume: not a training run folder (no config.yaml)")
        _check_resume_config(load_config(saved_path), config, saved_path)
    elif list_checkpoints(run_dir):
        raise InputError(
            run_dir, "already holds checkpoints: add --resume to continue it, or pick a new --out"
        )
    ctx.barrier()  # every rank has read the folder before rank 0 changes it
    created = not run_dir.exists()
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            for path in remove_stale_temporaries(run_dir):
                log.info("removed %s (left by an interrupted checkpoint write)", path.name)
    return created


def _remove_failed_start(run_dir: Path, created: bool) -> None:
    """A run that failed before its first checkpoint leaves nothing behind (only what it wrote itself)."""
    if list_checkpoints(run_dir):
        return
    for name in ("scene_cuts.json", CONFIG_FILE, INIT_RECORD_FILE):
        if created:
            (run_dir / name).unlink(missing_ok=True)
    if created and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


def _train(
    config: TrainConfig, run_dir: Path, ctx: DistContext, resume: bool, progress: bool, stop_at: int | None
) -> TrainResult:
    from tqdm import tqdm

    if config.threads:
        set_threads(config.threads)
    precision = resolve_precision(config.precision, ctx.device)
    log.info("precision: %s (CPU bf16 features: %s)", precision, ", ".join(cpu_bf16_flags()) or "none")
    resume_step = latest_checkpoint(run_dir) if resume else None
    created = _prepare_folder(config, run_dir, ctx, resume)
    try:
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        model = _build_model(config, run_dir, resume_step)
        dataset, entries = build_dataset(config, run_dir, ctx)
    except BaseException:
        if ctx.is_main:
            _remove_failed_start(run_dir, created)
        raise
    if ctx.is_main:
        save_config(config, run_dir / CONFIG_FILE)
        if config.init_weights and not (run_dir / INIT_RECORD_FILE).exists():
            write_json_atomic(run_dir / INIT_RECORD_FILE, training_record(config.init_weights), indent=2)

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    state = LoopState(config, ctx, run_dir, model, optimizer, scheduler, run_start=time.perf_counter())
    if resume_step is not None:
        _restore(state, model, resume_step)
    model.to(ctx.device)
    _move_optimizer_state(optimizer, ctx.device)
    net = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    loader = make_loader(dataset, config, ctx, state.step)
    bar = tqdm(
        total=config.steps,
        initial=state.step,
        disable=not (progress and ctx.is_main),
        desc="train",
        unit="step",
    )
    purge_after = state.step if resume else None
    callbacks, run_log = _callbacks(
        config, ctx, run_dir, entries, purge_after, bar if progress else None, stop_at
    )
    net.train()
    for batch in loader:
        out = train_step(net, optimizer, scheduler, batch, config, state.step, precision, ctx)
        state.step += 1
        for callback in callbacks:
            callback.after_step(state, out)
        bar.update(1)
        if state.stop:
            break
    bar.close()
    train_time = time.perf_counter() - state.run_start
    for callback in callbacks:
        callback.at_end(state)

    final = None
    if ctx.is_main and not state.stop:
        final = run_dir / "final.safetensors"
        _save_final(state, entries, precision, train_time, final)
    if run_log is not None:
        run_log.close()
    ctx.barrier()
    return TrainResult(run_dir, state.step, final, state.last_metrics, train_time)


def _callbacks(config, ctx, run_dir, entries, purge_after, bar, stop_at):
    """The callbacks of this rank, in the order they run after a step, and rank 0's run log."""
    from scattermotion.training.runlog import RunLog
    from scattermotion.training.validation import Validator

    callbacks: list[Callback] = []
    run_log = None
    if ctx.is_main:
        run_log = RunLog(run_dir, purge_after=purge_after)
        callbacks += [MetricsLog(run_log, bar), MotionImages(run_log)]
        validator = Validator(config, entries)
        if not validator.empty:
            callbacks.append(Validation(validator, run_log, bar))
        callbacks.append(Checkpoints())
    if config.debug_dump:
        callbacks.append(DebugDump())
    if stop_at is not None:
        callbacks.append(StopAt(stop_at))
    return callbacks, run_log


def model_card(state: LoopState, entries: list, precision: str, train_time: float) -> dict:
    """The card saved beside the final weights: what was trained on, how, and the last validation."""
    config, ctx = state.config, state.ctx
    return {
        "training": {
            "data_sources": config.sources,
            "video_count": len(entries),
            "videos": [str(e.item.source) for e in entries[:100]],  # the first 100: the card stays small
            "synthetic_ratio": config.synthetic_ratio,
            "synthetic_kind": config.synthetic_kind,
            "supervised_weight": config.supervised_weight,
            "precision": precision,
            "cpu_bf16_features": list(cpu_bf16_flags()),
            "steps": state.step,
            "batch_size": config.batch_size,
            "world_size": ctx.world_size,
            "clip_len": config.clip_len,
            "crop_size": list(config.crop_size),
            "train_time_s": round(train_time, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": config.to_dict(),
            "initialised_from": init_record(state.run_dir),
        },
        "metrics": state.last_metrics,
        "evaluation_data": "validation EPE on evaluation-only sets (never trained on): "
        + ", ".join(config.val_sets),
    }


def init_record(run_dir: Path) -> dict | None:
    """The training record of the weights the run in ``run_dir`` started from (None: from scratch or a run
    older than :data:`INIT_RECORD_FILE`)."""
    path = Path(run_dir) / INIT_RECORD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _save_final(state: LoopState, entries: list, precision: str, train_time: float, path: Path) -> None:
    from scattermotion.model import save_weights

    save_weights(state.module, path, card=model_card(state, entries, precision, train_time))
