"""Self-supervised training of the motion network on unlabeled video (``scattermotion train``).

A plain single-process loop that becomes DistributedDataParallel under ``torchrun`` (the torchvision
references recipe): ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment, gloo on the CPU, NCCL on
CUDA; every rank draws its own clips (the sampling key includes the rank); only rank 0 logs, validates and
writes files.

One step: ``output = model(clip, bidirectional=True)``; ``loss, terms = self_supervised_loss(clip, output)``
(plus an optional supervised term on synthetic clips, off by default); AdamW; gradient clipping; a warm-up
+ one-cycle / cosine learning-rate schedule.

A run folder holds::

    config.yaml                 the resolved TrainConfig (what --resume continues)
    metrics.jsonl               one JSON line per log / validation event
    tb/                         TensorBoard: every loss term, lr, throughput, motion images, validation EPE
    scene_cuts.json             the scanned frame counts and scene cuts of the training videos
    checkpoints/step_%08d.safetensors  model weights (save_weights: config in the metadata)
    checkpoints/step_%08d.state.pt     optimizer, scheduler, step, RNG states, log accumulators
    checkpoints/latest          name of the newest complete checkpoint
    final.safetensors, final.json      the trained weights and their model card

**Exact resume.** The data are a pure function of ``(seed, rank, sample index)`` (see
:mod:`scattermotion.data.clips`), so the checkpoint's step is the data position. The state file holds only
tensors and primitives and loads with ``torch.load(weights_only=True)``; files are written atomically and
the ``latest`` pointer last, so a killed run loses at most one checkpoint interval. On resume, metrics
lines and TensorBoard events after the checkpoint's step are dropped, and the run continues with the same
clips, learning rates and optimizer moments as if it had never stopped.

**Evaluation data never enter training**: validation EPE is measured on a fixed synthetic set (its own
seed) and on the real stereo pairs ("motorcycle" at half size, "aloe"), which are evaluation-only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml

from scattermotion.augment import AugmentConfig
from scattermotion.errors import InputError
from scattermotion.io.atomic import atomic_output, write_bytes_atomic

log = logging.getLogger(__name__)

SCHEDULES = ("onecycle", "cosine", "constant")
VALIDATION_SYNTHETIC_SEED = 20240711  # the fixed synthetic validation set; training seeds never reach it
VALIDATION_SETS = ("synthetic", "motorcycle", "aloe")
CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
# Config fields that may change on --resume: they do not change which clips, weights or losses a step sees
# (``steps`` does change the learning-rate schedule from then on; a warning says so).
RESUMABLE_CHANGES = frozenset(
    {
        "steps",
        "num_workers",
        "device",
        "threads",
        "log_every",
        "image_every",
        "val_every",
        "checkpoint_every",
        "keep_checkpoints",
        "val_sets",
        "val_synthetic_count",
        "val_synthetic_size",
        "val_real_clips",
        "debug_dump",
        "precision",
    }
)


# ---- configuration -----------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything a training run depends on; loadable from YAML (:func:`load_config`)."""

    # model and loss
    model: str = "small"  # MotionConfig preset
    init_weights: str | None = None  # start from these weights (fine-tuning; their architecture wins)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # MotionConfig fields
    loss: dict[str, Any] = field(default_factory=dict)  # LossConfig fields
    # Occlusion masking (if the loss config has it on) starts at this step: masking from the first step lets
    # the network make forward and backward motion disagree until nearly every pixel is "occluded" and
    # escapes the photometric loss (seen on this project: 95 % occluded after 60 steps at lr 2e-3).
    occlusion_from_step: int = 0
    # data
    sources: list[str] = field(default_factory=list)  # videos, folders, frame folders, list files
    clip_len: int = 4
    crop_size: tuple[int, int] = (256, 256)  # (H, W), multiples of the network stride (16)
    frame_steps: tuple[int, ...] = (1,)  # each clip's frame step is drawn from these
    short_side: int | None = None  # decode videos with this short side (None: native size)
    detect_cuts: bool = True
    augment: dict[str, Any] = field(default_factory=dict)  # AugmentConfig fields
    synthetic_ratio: float = 0.0  # fraction of training clips drawn from the synthetic generator
    synthetic_kind: str = "mixed"
    synthetic_max_disp: float = 32.0
    supervised_weight: float = 0.0  # > 0 adds EPE against the synthetic ground truth (off: self-supervised)
    # False: clips with ground truth get only the supervised term (the photometric one is for real video).
    self_supervised_on_synthetic: bool = True
    cache_mb: int = 2048  # decoded-video cache per data process
    num_workers: int = 2
    # optimisation
    batch_size: int = 8  # clips per rank and step
    steps: int = 20000
    lr: float = 4e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "onecycle"  # onecycle | cosine | constant (all with warm-up)
    warmup_steps: int = 500
    min_lr_ratio: float = 0.01  # final lr / peak lr
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    # bookkeeping
    seed: int = 0
    log_every: int = 10
    image_every: int = 500
    val_every: int = 1000
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    val_sets: tuple[str, ...] = VALIDATION_SETS
    val_synthetic_count: int = 8
    val_synthetic_size: tuple[int, int] = (256, 320)
    val_real_clips: int = 8  # fixed un-augmented training clips for the real_loss curve (0: none)
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    threads: int | None = None  # torch CPU threads per process (None: torch's default)
    precision: str = "auto"  # auto (bf16 where the CPU/GPU runs it natively) | fp32 | bf16
    debug_dump: bool = False  # tests: each rank writes its weights hash and batch hashes to debug/

    def __post_init__(self) -> None:
        self.crop_size = _pair(self.crop_size, "crop_size")
        self.val_synthetic_size = _pair(self.val_synthetic_size, "val_synthetic_size")
        self.frame_steps = tuple(int(s) for s in self.frame_steps)
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        self.val_sets = tuple(self.val_sets)
        self.sources = [str(s) for s in self.sources]
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if "clip_len" in self.model_overrides:
            raise ValueError("set clip_len at the top level, not in model_overrides")
        for name in ("batch_size", "steps", "log_every", "image_every", "val_every", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
        if not 0 <= self.synthetic_ratio <= 1:
            raise ValueError(f"synthetic_ratio must be in [0, 1], got {self.synthetic_ratio}")
        unknown = set(self.val_sets) - set(VALIDATION_SETS)
        if unknown:
            raise ValueError(f"unknown val_sets {sorted(unknown)}; choose from {VALIDATION_SETS}")
        if self.crop_size[0] % 16 or self.crop_size[1] % 16:
            raise ValueError(f"crop_size {self.crop_size} must be multiples of the network stride 16")
        AugmentConfig(**self.augment)  # fail early on a bad augmentation setting
        from scattermotion.precision import PRECISIONS

        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly values (lists, not tuples)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return json.loads(json.dumps(out))  # deep copy; nested tuples become lists

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def motion_config(self):
        from scattermotion.model import MotionConfig

        return MotionConfig.preset(self.model, clip_len=self.clip_len, **self.model_overrides)

    def loss_config(self, step: int | None = None):
        """The LossConfig of 0-based ``step`` (None: the final one, occlusion as configured)."""
        from scattermotion.losses import LossConfig

        params = dict(self.loss)
        if step is not None and step < self.occlusion_from_step:
            params["occlusion"] = False
        if "level_weights" in params:
            params["level_weights"] = tuple(params["level_weights"])
        return LossConfig(**params)

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(**self.augment)


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    values = tuple(int(v) for v in value)
    if len(values) != 2 or min(values) < 1:
        raise ValueError(f"{name} must be two positive integers (H, W), got {value}")
    return values  # type: ignore[return-value]


def load_config(path: str | os.PathLike) -> TrainConfig:
    """A :class:`TrainConfig` from a YAML file (missing keys keep their defaults)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise InputError(path, f"cannot read config: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML ({' '.join(str(err).split())})") from err
    if not isinstance(data, dict):
        raise InputError(path, "a training config must be a YAML mapping of keys to values")
    try:
        return TrainConfig.from_dict(data)
    except (ValueError, TypeError) as err:
        raise InputError(path, str(err)) from err


def resolve_config(
    run_dir: str | os.PathLike,
    sources: list[str] | None = None,
    config_path: str | os.PathLike | None = None,
    resume: bool = False,
    **overrides: Any,
) -> TrainConfig:
    """The config a ``scattermotion train`` call means: the run's own ``config.yaml`` on ``--resume`` (unless
    ``--config`` is given), else ``config_path`` or the defaults; then ``sources`` (made absolute) and every
    override that is not None."""
    saved = Path(run_dir) / CONFIG_FILE
    if config_path is not None:
        config = load_config(config_path)
    elif resume and saved.is_file():
        config = load_config(saved)
    else:
        config = TrainConfig()
    changes = {key: value for key, value in overrides.items() if value is not None}
    if sources:
        changes["sources"] = [str(Path(s).expanduser().resolve()) for s in sources]
    try:
        return config.replace(**changes)
    except (ValueError, TypeError) as err:
        raise InputError(config_path, str(err)) from err


def save_config(config: TrainConfig, path: Path) -> None:
    write_bytes_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False).encode())


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


# ---- distributed set-up ------------------------------------------------------------------------------------


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # we initialised the process group (and tear it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment (if any) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise InputError(None, f"--device {device}: CUDA is not available on this machine")
        index = int(device.split(":")[1]) if ":" in device else local_rank
        chosen = torch.device("cuda", index)
        torch.cuda.set_device(chosen)
    else:
        chosen = torch.device("cpu")
    ctx = DistContext(rank, world_size, local_rank, chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        ctx.owns_group = True
    return ctx


# ---- checkpoints -------------------------------------------------------------------------------------------


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


def load_checkpoint(run_dir: Path, step: int, model: torch.nn.Module) -> dict[str, Any]:
    """Load checkpoint ``step``'s weights into ``model``; return its training state (weights_only load)."""
    from safetensors.torch import load_file

    from scattermotion.model.weights import read_config

    weights_path, state_path = _checkpoint_paths(run_dir, checkpoint_name(step))
    stored = read_config(weights_path)
    if stored.to_dict() != model.config.to_dict():
        raise InputError(weights_path, "was trained with a different model config than this run's")
    model.load_state_dict(load_file(str(weights_path), device="cpu"))
    try:
        return torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors of many kinds: a damaged or foreign file
        raise InputError(state_path, f"cannot load training state ({err})") from err


def _rng_state() -> dict[str, Any]:
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


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- metrics and validation --------------------------------------------------------------------------------


def end_point_error(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean EPE over the pixels where ``gt`` is known (the evaluate verb's ``flow_metrics`` definition)."""
    from scattermotion.metrics import flow_metrics

    return float(flow_metrics(pred, gt)["epe"])


class Validator:
    """EPE on evaluation-only data (the fixed synthetic clips, the real stereo pairs), and the
    self-supervised loss without occlusion masking on a fixed set of un-augmented training clips
    (``real_loss``: a loss curve free of the batch-to-batch noise of random clips). Loaded once."""

    def __init__(self, config: TrainConfig, entries: list | None = None):
        from scattermotion.data.clips import ClipSampling, VideoClipDataset
        from scattermotion.data.flowsets import load_flow_set
        from scattermotion.data.synthetic import SyntheticClips

        # No occlusion masking here: a loss that can mask pixels away could improve by masking, not matching.
        self.loss_cfg = dataclasses.replace(config.loss_config(), occlusion=False)
        self.real_clips: torch.Tensor | None = None
        if entries and config.val_real_clips:
            sampling = ClipSampling(config.clip_len, config.crop_size, (1,), AugmentConfig.none())
            fixed = VideoClipDataset(
                entries, sampling, VALIDATION_SYNTHETIC_SEED, 0, config.cache_mb * 2**20, config.short_side
            )
            self.real_clips = torch.stack([fixed[i]["frames"] for i in range(config.val_real_clips)])
        self.synthetic = []
        if "synthetic" in config.val_sets:
            clips = SyntheticClips(
                seed=VALIDATION_SYNTHETIC_SEED,
                count=config.val_synthetic_count,
                size=config.val_synthetic_size,
                clip_len=config.clip_len,
                kind="mixed",
                max_disp=config.synthetic_max_disp,
            )
            self.synthetic = [clips[i] for i in range(len(clips))]
        self.stereo = {name: load_flow_set(name) for name in config.val_sets if name != "synthetic"}

    @property
    def empty(self) -> bool:
        return self.real_clips is None and not self.synthetic and not self.stereo

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, device: torch.device) -> tuple[dict[str, float], dict]:
        """``({set}_epe: value}, {set: (prediction, ground truth)})``; leaves the model in train mode."""
        from scattermotion.estimator import MotionEstimator
        from scattermotion.losses import self_supervised_loss

        model.eval()
        estimator = MotionEstimator(model, device=device)
        metrics: dict[str, float] = {}
        examples: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        try:
            if self.real_clips is not None:
                totals: dict[str, list[float]] = {"real_loss": [], "real_photo_s1": []}
                for batch in self.real_clips.split(4):
                    batch = batch.to(device)
                    _, terms = self_supervised_loss(batch, model(batch, bidirectional=True), self.loss_cfg)
                    totals["real_loss"].append(terms["total"].item() * len(batch))
                    totals["real_photo_s1"].append(terms["photo_s1"].item() * len(batch))
                metrics.update({k: sum(v) / len(self.real_clips) for k, v in totals.items()})
            if self.synthetic:
                errors = []
                for clip in self.synthetic:
                    pred = estimator.estimate_clip(list(clip.frames))
                    errors += [end_point_error(p, g) for p, g in zip(pred, clip.flows, strict=True)]
                    examples.setdefault("synthetic", (pred[0], clip.flows[0]))
                metrics["synthetic_epe"] = float(np.mean(errors))
            for name, samples in self.stereo.items():
                errors = []
                for sample in samples:
                    pred = estimator.estimate(sample.frame1, sample.frame2)
                    errors.append(end_point_error(pred, sample.flow))
                    examples.setdefault(name, (pred, sample.flow))
                metrics[f"{name}_epe"] = float(np.mean(errors))
        finally:
            model.train()
        return metrics, examples


def _motion_image(flows: list[np.ndarray], frame: np.ndarray | None = None) -> np.ndarray:
    """``[frame |] flow colours...`` side by side, every flow coloured on the scale of the last one."""
    from scattermotion.io.visualize import flow_to_color

    finite = flows[-1][np.isfinite(flows[-1]).all(-1)]
    scale = float(np.percentile(np.linalg.norm(finite, axis=-1), 99)) if finite.size else 1.0
    tiles = [flow_to_color(np.ascontiguousarray(f), max_flow=max(scale, 1e-3)) for f in flows]
    return np.concatenate(([frame] if frame is not None else []) + tiles, axis=1)


class RunLog:
    """metrics.jsonl and TensorBoard, written by rank 0 only."""

    def __init__(self, run_dir: Path, purge_after: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / METRICS_FILE
        if purge_after is not None and self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= purge_after
            ]
            write_bytes_atomic(self.path, "".join(line + "\n" for line in kept).encode())
        purge = purge_after + 1 if purge_after is not None else None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=purge)

    def record(self, kind: str, step: int, values: dict[str, float]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        for name, value in values.items():
            self.writer.add_scalar(f"{kind}/{name}", value, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


# ---- data --------------------------------------------------------------------------------------------------


def build_dataset(config: TrainConfig, run_dir: Path, ctx: DistContext):
    """The mixed real/synthetic clip dataset of this rank; rank 0 scans the videos first (cut cache)."""
    from scattermotion.data.clips import (
        ClipSampling,
        MixedClipDataset,
        SyntheticClipDataset,
        VideoClipDataset,
        scan_videos,
    )

    sampling = ClipSampling(config.clip_len, config.crop_size, config.frame_steps, config.augment_config())
    real = None
    entries = []
    if config.synthetic_ratio < 1:
        if not config.sources:
            raise InputError(None, "no training videos given (or set --synthetic-ratio 1)")
        scan = dict(
            short_side=config.short_side,
            cut_cache=run_dir / "scene_cuts.json",
            detect_cuts=config.detect_cuts,
            min_frames=config.clip_len,
        )
        if ctx.is_main:
            entries = scan_videos(config.sources, **scan)
        ctx.barrier()  # the others read rank 0's cache instead of decoding every video again
        if not ctx.is_main:
            entries = scan_videos(config.sources, **scan)
        real = VideoClipDataset(
            entries, sampling, config.seed, ctx.rank, config.cache_mb * 2**20, config.short_side
        )
    synthetic = None
    if config.synthetic_ratio > 0:
        synthetic = SyntheticClipDataset(
            sampling,
            config.seed,
            ctx.rank,
            config.synthetic_kind,
            config.synthetic_max_disp,
            keep_ground_truth=config.supervised_weight > 0,
        )
    dataset = MixedClipDataset(real, synthetic, config.synthetic_ratio, config.seed, ctx.rank)
    return dataset, entries


class _IndexRange(torch.utils.data.Sampler[int]):
    """Sample indices ``start .. stop - 1`` in order: the data position is just the sample count."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


# ---- the loop ----------------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # steps completed
    final_weights: Path | None  # None when the run stopped early (stop_at)
    metrics: dict[str, float]  # the last validation metrics
    train_time_s: float


def _check_resume_config(saved: TrainConfig, config: TrainConfig, path: Path) -> None:
    old, new = saved.to_dict(), config.to_dict()
    changed = sorted(k for k in old if old[k] != new[k] and k not in RESUMABLE_CHANGES)
    if changed:
        details = "; ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed)
        raise InputError(path, f"--resume needs the run's own settings; these differ: {details}")
    if old["steps"] != new["steps"]:
        log.warning(
            "steps changed from %s to %s: the lr schedule changes from here", old["steps"], new["steps"]
        )


def _hash_tensor(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def weights_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


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
        return _train(config, Path(run_dir), ctx, resume, progress, stop_at)
    finally:
        if ctx.owns_group:
            dist.destroy_process_group()


def _train(
    config: TrainConfig, run_dir: Path, ctx: DistContext, resume: bool, progress: bool, stop_at: int | None
) -> TrainResult:
    from tqdm import tqdm

    from scattermotion.model import MotionNet, load_weights, save_weights
    from scattermotion.precision import autocast, cpu_bf16_flags, resolve_precision
    from scattermotion.training.objectives import training_objective

    if config.threads:
        torch.set_num_threads(config.threads)
    precision = resolve_precision(config.precision, ctx.device)
    log.info("precision: %s (CPU bf16 features: %s)", precision, ", ".join(cpu_bf16_flags()) or "none")
    resume_step = latest_checkpoint(run_dir) if resume else None
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
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / CONFIG_FILE)

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    if config.init_weights:  # fine-tune: the weights file fixes the architecture
        model = load_weights(config.init_weights).train()
    else:
        model = MotionNet(config.motion_config())
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    step, elapsed, accumulator = 0, 0.0, {}
    last_metrics: dict[str, float] = {}
    if resume_step is not None:
        state = load_checkpoint(run_dir, resume_step, model)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, elapsed = int(state["step"]), float(state["elapsed_s"])
        accumulator, last_metrics = dict(state["accumulator"]), dict(state["last_metrics"])
        _set_rng_state(state["rng"])
        if int(state["world_size"]) != ctx.world_size:
            log.warning("resuming a %s-process run with %s processes", state["world_size"], ctx.world_size)
    model.to(ctx.device)
    for group_state in optimizer.state.values():  # Adam moments follow the parameters' device
        for key, value in group_state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                group_state[key] = value.to(ctx.device)
    module = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    dataset, entries = build_dataset(config, run_dir, ctx)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=_IndexRange(step * config.batch_size, config.steps * config.batch_size),
        num_workers=config.num_workers,
        pin_memory=ctx.device.type == "cuda",
        drop_last=True,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global torch RNG untouched
    )
    run_log = RunLog(run_dir, purge_after=step if resume else None) if ctx.is_main else None
    validator = Validator(config, entries) if ctx.is_main else None
    if validator is not None and validator.empty:
        validator = None
    debug: dict[str, list] = {"batch_hashes": [], "indices": []}

    bar = tqdm(
        total=config.steps, initial=step, disable=not (progress and ctx.is_main), desc="train", unit="step"
    )
    interval_start = time.perf_counter()
    run_start = time.perf_counter() - elapsed
    smoothed_loss = None
    stopped_early = False
    model.train()
    for batch in loader:
        frames = batch["frames"].to(ctx.device, non_blocking=True)
        loss_cfg = config.loss_config(step)
        # Backward motion is only needed by the occlusion test: without it, half the decoding is wasted
        # (reversed clips come from the augmentation instead).
        with autocast(precision, ctx.device):
            output = model(frames, bidirectional=loss_cfg.occlusion)
        loss, terms = training_objective(
            frames,
            output,
            batch["has_gt"],
            batch["flows"],
            loss_cfg,
            config.supervised_weight,
            config.self_supervised_on_synthetic,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = config.grad_clip if config.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        step += 1

        names = sorted(terms)
        values = torch.stack([terms[n].float() for n in names] + [grad_norm.detach().float()]).cpu()
        if ctx.distributed:  # log the mean over ranks (every rank computes it: the collective needs all)
            dist.all_reduce(values)
            values /= ctx.world_size
        for name, value in zip([*names, "grad_norm"], values.tolist(), strict=True):
            accumulator[name] = accumulator.get(name, 0.0) + value
        accumulator["_count"] = accumulator.get("_count", 0.0) + 1
        if config.debug_dump:
            debug["batch_hashes"].append(_hash_tensor(batch["frames"]))
            debug["indices"].append(batch["index"].tolist())
        total = terms["total"].item()
        smoothed_loss = total if smoothed_loss is None else 0.9 * smoothed_loss + 0.1 * total

        if ctx.is_main:
            assert run_log is not None
            if step % config.log_every == 0 or step == config.steps:
                now = time.perf_counter()
                count = accumulator.pop("_count")
                row = {("loss" if k == "total" else k): v / count for k, v in sorted(accumulator.items())}
                row["lr"] = lr
                row["clips_per_s"] = (
                    count * config.batch_size * ctx.world_size / max(now - interval_start, 1e-9)
                )
                row["time_s"] = now - run_start
                run_log.record("train", step, row)
                accumulator, interval_start = {}, now
                bar.set_postfix(loss=f"{smoothed_loss:.4f}", clips_s=f"{row['clips_per_s']:.2f}")
            if step % config.image_every == 0 or step == config.steps:
                first = frames[0, 0].permute(1, 2, 0).mul(255).round().byte().cpu().numpy()
                motion = output.flows[0, 0].detach().permute(1, 2, 0).float().cpu().numpy()
                run_log.image("train/motion", _motion_image([motion], frame=first), step)
            paused = time.perf_counter()  # validation and checkpoints do not count against throughput
            if validator is not None and (step % config.val_every == 0 or step == config.steps):
                last_metrics, examples = validator(module, ctx.device)
                run_log.record("val", step, last_metrics)
                for name, (pred, gt) in examples.items():  # prediction | ground truth, same colour scale
                    run_log.image(f"val/{name}", _motion_image([pred, gt]), step)
                if progress:
                    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in last_metrics.items()))
            if step % config.checkpoint_every == 0 or step == config.steps:
                state = {
                    "step": step,
                    "samples_seen": step * config.batch_size,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": _rng_state(),
                    "accumulator": dict(accumulator),
                    "last_metrics": dict(last_metrics),
                    "elapsed_s": time.perf_counter() - run_start,
                    "world_size": ctx.world_size,
                }
                save_checkpoint(run_dir, step, module, state, config.keep_checkpoints)
            interval_start += time.perf_counter() - paused
        bar.update(1)
        if stop_at is not None and step >= stop_at and step < config.steps:
            stopped_early = True
            break
    bar.close()
    train_time = time.perf_counter() - run_start

    if config.debug_dump:
        folder = run_dir / "debug"
        folder.mkdir(parents=True, exist_ok=True)
        record = {"rank": ctx.rank, "weights_sha256": weights_hash(module), **debug}
        write_bytes_atomic(folder / f"rank{ctx.rank}.json", json.dumps(record).encode())
    final = None
    if ctx.is_main and not stopped_early:
        final = run_dir / "final.safetensors"
        card = {
            "training": {
                "data_sources": config.sources,
                "video_count": len(entries),
                "videos": [str(e.item.source) for e in entries[:100]],  # the first 100: the card stays small
                "synthetic_ratio": config.synthetic_ratio,
                "supervised_weight": config.supervised_weight,
                "precision": precision,
                "cpu_bf16_features": list(cpu_bf16_flags()),
                "steps": step,
                "batch_size": config.batch_size,
                "world_size": ctx.world_size,
                "clip_len": config.clip_len,
                "crop_size": list(config.crop_size),
                "train_time_s": round(train_time, 1),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "config": config.to_dict(),
            },
            "metrics": last_metrics,
            "evaluation_data": "validation EPE on evaluation-only sets (never trained on): "
            + ", ".join(config.val_sets),
        }
        save_weights(module, final, card=card)
    if run_log is not None:
        run_log.close()
    ctx.barrier()
    return TrainResult(run_dir, step, final, last_metrics, train_time)
