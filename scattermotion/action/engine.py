"""Train and evaluate TSN classifiers on any source, fuse streams, save and load trained classifiers.

>>> train = load_videos("UCF101", subset="train"); test = load_videos("UCF101", subset="test")
>>> spec = parse_source("ours", short_side=128)
>>> model, history = train_action(train, spec, TrainOptions(crop=112), cache_dir="cache")
>>> scores = predict(model, test, cache_dir="cache"); accuracy(scores, test.labels())

A saved classifier (``.safetensors``) holds its weights and, in the metadata, everything needed to use it
again: the classifier config, the class names, the source settings and the sampling (segments, snippet
length, crop). End-to-end classifiers also hold the fine-tuned motion network.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader

from scattermotion.action.datasets import VideoSet, load_videos
from scattermotion.action.loader import SnippetDataset, collate_snippets
from scattermotion.action.model import TSN, ClassifierConfig, EndToEndClassifier
from scattermotion.action.sources import (
    ExtractionStats,
    MapSource,
    SourceSpec,
    default_cache_dir,
    make_source,
    parse_source,
)
from scattermotion.errors import InputError
from scattermotion.io.atomic import atomic_output, write_json_atomic

FORMAT = "scattermotion-action-1"
DEFAULT_FUSION_WEIGHT = 1.5  # motion : RGB = 1.5 : 1, as TSN fuses its flow and RGB streams

Progress = Callable[[str], None] | None


@dataclass
class TrainOptions:
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    segments: int = 3  # TSN segments per video in training
    test_segments: int = 5  # and in testing
    length: int | None = None  # maps per snippet (None: 5 for motion, 1 for RGB)
    crop: int | None = None  # square crop (random in training, centre in testing); None: whole frame
    backbone: str = "compact"
    width: int = 32
    dropout: float = 0.5
    seed: int = 0
    device: str = "cpu"
    workers: int = 0  # DataLoader worker processes
    end_to_end: bool = False  # fine-tune the motion network (source ours) together with the classifier
    motion_lr_scale: float = 0.1  # end-to-end: the motion network's learning rate relative to lr


@dataclass
class ActionModel:
    """A trained classifier and how its inputs are made."""

    network: nn.Module  # TSN, or EndToEndClassifier
    classes: list[str]
    source: SourceSpec
    length: int
    segments: int
    test_segments: int
    crop: int | None
    end_to_end: bool = False

    def metadata(self) -> dict[str, str]:
        tsn = self.network.tsn if isinstance(self.network, EndToEndClassifier) else self.network
        meta = {
            "format": FORMAT,
            "classifier": tsn.config.to_json(),
            "classes": json.dumps(self.classes),
            "source": json.dumps(self.source.to_dict()),
            "sampling": json.dumps(
                {
                    "length": self.length,
                    "segments": self.segments,
                    "test_segments": self.test_segments,
                    "crop": self.crop,
                    "end_to_end": self.end_to_end,
                }
            ),  # fmt: skip
        }
        if isinstance(self.network, EndToEndClassifier):
            meta["motion_config"] = self.network.motion_net.config.to_json()
        return meta


@dataclass
class TrainHistory:
    epochs: list[dict] = field(default_factory=list)  # per epoch: loss, train accuracy, seconds
    extraction: ExtractionStats | None = None
    seconds: float = 0.0


def _say(progress: Progress, text: str) -> None:
    if progress is not None:
        progress(text)


def _loader_source(spec: SourceSpec, end_to_end: bool, cache_dir: str | os.PathLike | None) -> MapSource:
    """End-to-end models read RGB frames (the motion network inside makes the motion); others their source."""
    if end_to_end:
        return make_source(SourceSpec("rgb", short_side=spec.short_side))
    return make_source(spec, cache_dir)


def _snippet_length(model: ActionModel) -> int:
    return model.length + 1 if model.end_to_end else model.length


def _motion_net(spec: SourceSpec, device: torch.device) -> nn.Module:
    from scattermotion.estimator import MotionEstimator

    return MotionEstimator.from_pretrained(spec.weights, device=device).model


def train_action(
    train_set: VideoSet,
    spec: SourceSpec,
    options: TrainOptions | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: Progress = None,
) -> tuple[ActionModel, TrainHistory]:
    """Train a TSN on ``train_set`` with maps from ``spec`` (motion cached under ``cache_dir``)."""
    from scattermotion.estimator import resolve_device

    options = options or TrainOptions()
    if options.epochs < 1 or options.batch_size < 1 or options.lr <= 0:
        raise InputError(None, "epochs and batch size must be >= 1 and the learning rate positive")
    if options.end_to_end and spec.kind != "ours":
        raise InputError(
            None, f"end-to-end training fine-tunes our motion network: use source ours, not {spec.kind}"
        )
    if options.end_to_end and spec.min_side is not None:
        raise InputError(None, "--min-side applies to extracted motion, not to end-to-end training")
    device = resolve_device(options.device)
    started = time.perf_counter()
    history = TrainHistory()
    source = _loader_source(spec, options.end_to_end, cache_dir)
    if spec.is_motion and not options.end_to_end:
        _say(progress, f"{spec.kind}: preparing motion of {len(train_set)} videos")
        history.extraction = source.prepare(train_set.records)
    length = options.length if options.length is not None else spec.default_length
    model = ActionModel(
        network=nn.Identity(),
        classes=list(train_set.classes),
        source=spec,
        length=length,
        segments=options.segments,
        test_segments=options.test_segments,
        crop=options.crop,
        end_to_end=options.end_to_end,
    )
    dataset = SnippetDataset(
        train_set.records, source, options.segments, _snippet_length(model), True, options.crop, options.seed
    )
    torch.manual_seed(options.seed)
    config = ClassifierConfig(
        in_channels=length * spec.channels,
        num_classes=len(train_set.classes),
        backbone=options.backbone,
        width=options.width,
        dropout=options.dropout,
    )
    tsn = TSN(config)
    if options.end_to_end:
        network: nn.Module = EndToEndClassifier(_motion_net(spec, device), tsn, spec.bound)
        groups = [
            {"params": network.tsn.parameters(), "lr": options.lr},
            {"params": network.motion_net.parameters(), "lr": options.lr * options.motion_lr_scale},
        ]
    else:
        network = tsn
        groups = [{"params": tsn.parameters(), "lr": options.lr}]
    network.to(device)
    model.network = network
    optimizer = torch.optim.AdamW(groups, weight_decay=options.weight_decay)
    generator = torch.Generator().manual_seed(options.seed)
    loader = DataLoader(
        dataset,
        batch_size=options.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=options.workers,
        collate_fn=collate_snippets,
        drop_last=len(dataset) > options.batch_size,  # no batch of 1 for batch norm
    )
    total_steps = options.epochs * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    for epoch in range(options.epochs):
        dataset.set_epoch(epoch)
        network.train()
        epoch_start = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        for inputs, labels in loader:
            inputs, labels = inputs.to(device), labels.to(device)
            logits = network(inputs)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
        record = {
            "epoch": epoch + 1,
            "loss": loss_sum / seen,
            "train_accuracy": correct / seen,
            "seconds": time.perf_counter() - epoch_start,
        }
        history.epochs.append(record)
        _say(progress, f"epoch {epoch + 1}/{options.epochs}: loss {record['loss']:.3f}, "
                       f"train accuracy {record['train_accuracy']:.3f}")  # fmt: skip
    network.eval()
    history.seconds = time.perf_counter() - started
    return model, history


@torch.inference_mode()
def predict(
    model: ActionModel,
    videos: VideoSet,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 16,
    device: str | None = None,
    workers: int = 0,
    source: SourceSpec | None = None,
    progress: Progress = None,
) -> np.ndarray:
    """Class probabilities (``N×classes``, softmax of the segment consensus) for every video of ``videos``,
    from ``model.test_segments`` centred snippets. ``source`` overrides where the maps come from (e.g. a
    ``precomputed:DIR`` copy of the same motion)."""
    from scattermotion.estimator import resolve_device

    if [c.lower() for c in videos.classes] != [c.lower() for c in model.classes]:
        raise InputError(
            videos.root,
            f"its {len(videos.classes)} classes differ from the {len(model.classes)} the classifier was "
            "trained on (same class list, same order needed)",
        )
    spec = source or model.source
    if device is not None and spec.kind == "ours":  # a classifier trained on a GPU, used on a CPU
        spec = replace(spec, device=device)
    map_source = _loader_source(spec, model.end_to_end, cache_dir)
    if spec.is_motion and not model.end_to_end:
        _say(progress, f"{spec.kind}: preparing motion of {len(videos)} videos")
        map_source.prepare(videos.records)
    dataset = SnippetDataset(
        videos.records, map_source, model.test_segments, _snippet_length(model), False, model.crop
    )
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_snippets)
    dev = resolve_device(device) if device is not None else next(model.network.parameters()).device
    network = model.network.to(dev).eval()
    scores = [F.softmax(network(inputs.to(dev)), dim=1).cpu().numpy() for inputs, _ in loader]
    return np.concatenate(scores).astype(np.float64)


def accuracy(scores: np.ndarray, labels: Sequence[int]) -> float:
    """Top-1 accuracy of ``N×classes`` scores."""
    labels = np.asarray(labels)
    if len(scores) != len(labels) or len(labels) == 0:
        raise ValueError(f"{len(scores)} score rows for {len(labels)} labels")
    return float(np.mean(np.argmax(scores, axis=1) == labels))


def mean_class_accuracy(scores: np.ndarray, labels: Sequence[int]) -> float:
    """Top-1 accuracy averaged over the classes present (UCF101/HMDB51 report this too)."""
    labels = np.asarray(labels)
    hits = np.argmax(scores, axis=1) == labels
    return float(np.mean([hits[labels == c].mean() for c in np.unique(labels)]))


def fuse(scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Late fusion: the weighted sum of the streams' class probabilities, renormalised per video
    (TSN fuses RGB and flow 1 : 1.5, :data:`DEFAULT_FUSION_WEIGHT`)."""
    if len(scores) != len(weights) or not scores:
        raise ValueError(f"{len(scores)} score arrays for {len(weights)} weights")
    if any(s.shape != scores[0].shape for s in scores):
        raise ValueError(f"score shapes differ: {[s.shape for s in scores]}")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise InputError(None, f"fusion weights must be >= 0 and not all 0, got {list(weights)}")
    fused = sum(w * s for w, s in zip(weights, scores, strict=True))
    return fused / fused.sum(axis=1, keepdims=True)


# ---- saving --------------------------------------------------------------------------------------------


def save_action_model(model: ActionModel, path: str | os.PathLike, card: dict | None = None) -> Path:
    """Weights and metadata to ``path`` (safetensors, atomic); ``card`` (JSON) beside it as ``.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.network.state_dict().items()}
    with atomic_output(path) as temp:
        save_file(tensors, str(temp), metadata=model.metadata())
    if card is not None:
        write_json_atomic(path.with_suffix(".json"), card, indent=2, sort_keys=True, default=str)
    return path


def load_action_model(path: str | os.PathLike, device: str = "cpu") -> ActionModel:
    """A classifier saved by :func:`save_action_model`, in eval mode on ``device``."""
    from scattermotion.estimator import resolve_device
    from scattermotion.model import MotionConfig, MotionNet
    from scattermotion.model.weights import load_checked

    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise InputError(path, "classifier file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            meta = handle.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for a bad header
        raise InputError(path, f"not a readable safetensors file ({err})") from err
    if meta.get("format") != FORMAT:
        raise InputError(path, f"not a scattermotion action classifier (format {meta.get('format')!r})")
    try:
        sampling = json.loads(meta["sampling"])
        classifier = ClassifierConfig.from_json(meta["classifier"])
        source = SourceSpec.from_dict(json.loads(meta["source"]))
        classes = json.loads(meta["classes"])
        end_to_end = bool(sampling["end_to_end"])
        motion_config = MotionConfig.from_json(meta["motion_config"]) if end_to_end else None
        length, segments = int(sampling["length"]), int(sampling["segments"])
        test_segments, crop = int(sampling["test_segments"]), sampling["crop"]
        if not isinstance(classes, list) or len(classes) != classifier.num_classes:
            raise ValueError(f"{classifier.num_classes} classes in the config, classes lists {classes!r}")
    except KeyError as err:
        raise InputError(path, f"incomplete classifier metadata: no {err}") from None
    except (ValueError, TypeError, AttributeError) as err:  # json.JSONDecodeError is a ValueError
        raise InputError(path, f"bad classifier metadata ({err})") from None
    except InputError as err:
        raise InputError(path, f"bad classifier metadata ({err.problem})") from None

    def build() -> nn.Module:
        tsn = TSN(classifier)
        if motion_config is None:
            return tsn
        return EndToEndClassifier(MotionNet(motion_config), tsn, source.bound)

    network = load_checked(path, build)  # shapes checked on the meta device before anything is allocated
    network.to(resolve_device(device)).eval()
    return ActionModel(
        network=network,
        classes=classes,
        source=source,
        length=length,
        segments=segments,
        test_segments=test_segments,
        crop=crop,
        end_to_end=end_to_end,
    )


def history_dict(history: TrainHistory) -> dict:
    out = {"epochs": history.epochs, "seconds": history.seconds}
    if history.extraction is not None:
        out["extraction"] = {**asdict(history.extraction), "ms_per_clip": history.extraction.ms_per_clip}
    return out


# ---- runs: what ``scattermotion action train`` / ``eval`` do, results as dataclasses ----------------------


@dataclass
class DataSpec:
    """Where a dataset is and how to read it; :meth:`load` picks one subset (or list) of it."""

    root: Path
    layout: str = "auto"
    split: int = 1
    splits_dir: Path | None = None
    csv_file: Path | None = None
    skip_missing: bool = False  # listed videos that are missing: skipped (and said) instead of an error
    cache_dir: Path | None = None  # motion cache (None: default_cache_dir(root))

    def load(
        self,
        subset: str | None,
        list_file: Path | None = None,
        classes: list[str] | None = None,
        progress: Progress = None,
    ) -> VideoSet:
        videos = load_videos(
            self.root,
            layout=self.layout,
            subset=subset,
            split=self.split,
            splits_dir=self.splits_dir,
            csv_file=self.csv_file,
            list_file=list_file,
            classes=classes,
            on_missing="skip" if self.skip_missing else "error",
        )
        if videos.skipped:
            _say(progress, f"{self.root}: {len(videos.skipped)} listed videos are missing and were skipped")
        return videos

    def cache(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else default_cache_dir(self.root)


@dataclass
class Score:
    """Top-1 accuracy of one stream (or of the fusion) on ``videos`` videos."""

    accuracy: float
    mean_class_accuracy: float

    @classmethod
    def of(cls, scores: np.ndarray, videos: VideoSet) -> Score:
        labels = videos.labels()
        return cls(accuracy(scores, labels), mean_class_accuracy(scores, labels))


@dataclass
class TrainRun:
    """A trained classifier saved at ``path``; ``test`` is None when no test subset was scored."""

    path: Path
    kind: str  # the source the classifier reads
    classes: int
    train_videos: int
    test_videos: int = 0
    test: Score | None = None


def train_and_test(
    data: DataSpec,
    spec: SourceSpec,
    options: TrainOptions,
    out: str | os.PathLike,
    train_subset: str = "train",
    test_subset: str = "test",
    train_list: Path | None = None,
    test_list: Path | None = None,
    evaluate: bool = True,
    progress: Progress = None,
) -> TrainRun:
    """Train on ``train_subset``, score ``test_subset`` when the layout has one (or ``test_list`` names
    it), save the classifier to ``out/model.safetensors`` with its card (``model.json``)."""
    train_set = data.load(train_subset, train_list, progress=progress)
    model, history = train_action(train_set, spec, options, cache_dir=data.cache(), progress=progress)
    card: dict = {"data": str(data.root), "layout": train_set.layout, "train_videos": len(train_set),
                  "options": vars(options), "history": history_dict(history)}  # fmt: skip
    run = TrainRun(Path(out) / "model.safetensors", spec.kind, len(model.classes), len(train_set))
    has_test = train_set.layout in ("ucf101", "hmdb51", "kinetics") or test_list is not None
    if evaluate and has_test:
        test_set = data.load(test_subset, test_list, model.classes, progress=progress)
        scores = predict(model, test_set, cache_dir=data.cache(), workers=options.workers, progress=progress)
        run.test, run.test_videos = Score.of(scores, test_set), len(test_set)
        card["test"] = {"videos": run.test_videos, **asdict(run.test)}
    run.path = save_action_model(model, run.path, card)
    return run


@dataclass
class StreamScore(Score):
    model: str = ""  # the classifier's path
    source: str = ""  # where its maps came from


@dataclass
class FusionScore(Score):
    weights: list[float] = field(default_factory=list)


@dataclass
class EvaluationRun:
    data: str
    subset: str
    videos: int
    streams: list[StreamScore] = field(default_factory=list)
    fusion: FusionScore | None = None  # two or more streams

    def to_dict(self) -> dict:
        """The ``--json`` report."""
        out = asdict(self)
        if self.fusion is None:
            del out["fusion"]
        return out


def _override_source(spec: SourceSpec, source: str, device: str) -> SourceSpec:
    """``source`` (e.g. ``precomputed:DIR``) in place of ``spec``, keeping its bound and frame size (and,
    for ours, its weights and minimum side)."""
    override = parse_source(source, bound=spec.bound, short_side=spec.short_side, device=device)
    ours = override.uses_network
    return replace(override, weights=spec.weights if ours else None, min_side=spec.min_side if ours else None)


def evaluate_models(
    data: DataSpec,
    models: Sequence[str | os.PathLike],
    subset: str = "test",
    list_file: Path | None = None,
    source: str | None = None,
    fusion_weight: float = DEFAULT_FUSION_WEIGHT,
    device: str = "cpu",
    workers: int = 0,
    progress: Progress = None,
) -> EvaluationRun:
    """Score each classifier of ``models`` on ``subset`` and, with two or more, their late fusion (motion
    streams weigh ``fusion_weight``, RGB streams 1). ``source`` overrides where the first model's maps
    come from."""
    loaded = [load_action_model(path, device=device) for path in models]
    videos = data.load(subset, list_file, loaded[0].classes, progress=progress)
    run = EvaluationRun(str(data.root), subset, len(videos))
    all_scores, weights = [], []
    for index, (path, model) in enumerate(zip(models, loaded, strict=True)):
        spec = model.source
        if index == 0 and source is not None:
            spec = _override_source(spec, source, device)
        scores = predict(
            model, videos, cache_dir=data.cache(), workers=workers, source=spec, progress=progress
        )
        all_scores.append(scores)
        weights.append(fusion_weight if spec.is_motion else 1.0)
        run.streams.append(StreamScore(**asdict(Score.of(scores, videos)), model=str(path), source=spec.kind))
    if len(all_scores) > 1:
        fused = Score.of(fuse(all_scores, weights), videos)
        run.fusion = FusionScore(**asdict(fused), weights=weights)
    return run


__all__ = [
    "ActionModel", "TrainOptions", "TrainHistory", "train_action", "predict", "accuracy",
    "mean_class_accuracy", "fuse", "save_action_model", "load_action_model", "history_dict",
    "DataSpec", "Score", "TrainRun", "train_and_test", "StreamScore", "FusionScore", "EvaluationRun",
    "evaluate_models",
]  # fmt: skip
