"""The typed configuration of a training run (``scattermotion train --config FILE.yaml``), validated once
when it is loaded: nested loss, model and augmentation settings included, so a typo fails with one line
before anything is written to the run folder. Config flows down from here; nothing else re-reads YAML.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scattermotion.augment import AugmentConfig
from scattermotion.errors import InputError
from scattermotion.io.atomic import write_bytes_atomic
from scattermotion.model.config import MIRROR_AXES
from scattermotion.precision import PRECISIONS

SCHEDULES = ("onecycle", "cosine", "constant")
VALIDATION_SYNTHETIC_SEED = 20240711  # the fixed synthetic validation set; training seeds never reach it
# "footage": pairs of the real-footage robustness benchmark's kind (training-side videos under camera motion,
# small objects, sensor noise and gain; data/robustness.py) from the validation seed, never the benchmark's.
VALIDATION_SETS = ("synthetic", "footage", "motorcycle", "aloe")
DEFAULT_VALIDATION_SETS = ("synthetic", "motorcycle", "aloe")
VALIDATION_FOOTAGE_SIZE = (240, 320)
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
# The training record of the --init weights, copied when the run starts: their card may be overwritten
# before the run ends (fine-tuning the packaged default, then packaging the result), which lost stages.
INIT_RECORD_FILE = "initialised_from.json"
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
        "val_footage_pairs",
        "debug_dump",
        "precision",
    }
)


@dataclass
class TrainConfig:
    """Everything a training run depends on; loadable from YAML (:func:`load_config`)."""

    # model and loss
    model: str = "small"  # MotionConfig preset
    init_weights: str | None = None  # start from these weights (fine-tuning: their architecture, with
    # model_overrides applied when there are any: tensors that still fit load, new parts start fresh)
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
    # Self-distillation on real clips (training.distill): > 0 adds this weight × the robust EPE between the
    # network's single pass on the clip with footage nuisances added and its own test-time ensemble
    # (plain + landed backward + ``distill_mirror`` mirror) on the clean clip, where the ensemble's estimates
    # lie within ``distill_max_spread`` px (+ 5 % of the motion) of their mean. Real video stays unlabeled.
    distill_weight: float = 0.0
    distill_mirror: str = "vertical"
    distill_max_spread: float = 0.5
    # True: the ensemble's motion is refined on the clean clip (baselines.refine_flow) before it is taught.
    distill_refine: bool = False
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
    val_sets: tuple[str, ...] = DEFAULT_VALIDATION_SETS
    val_synthetic_count: int = 8
    val_synthetic_size: tuple[int, int] = (256, 320)
    val_real_clips: int = 8  # fixed un-augmented training clips for the real_loss curve (0: none)
    val_footage_pairs: int = 16  # pairs of the "footage" validation set
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    threads: int | None = None  # torch and OpenCV CPU threads per process (None: their defaults)
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
        if self.distill_weight < 0 or self.distill_max_spread <= 0:
            raise ValueError("distill_weight must be >= 0 and distill_max_spread > 0")
        if self.distill_mirror not in MIRROR_AXES:
            raise ValueError(
                f"distill_mirror must be one of {sorted(MIRROR_AXES)}, got {self.distill_mirror!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        # The nested configs are built once here, so a typo (``loss: {smoth_weight: 1}``) fails at load time.
        _nested("augment", self.augment_config)
        _nested("loss", self.loss_config)
        _nested("model_overrides", self.motion_config)

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


def _nested(name: str, build) -> None:
    """Build a nested config; an unknown key or a bad value becomes one ValueError naming the section."""
    try:
        build()
    except TypeError as err:  # dataclass(**data) with an unknown key: "... unexpected keyword argument 'x'"
        unknown = str(err).rsplit(" ", 1)[-1]
        raise ValueError(f"{name}: unknown setting {unknown}") from None
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None


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
