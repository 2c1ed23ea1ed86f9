"""Validation during training: EPE on the fixed synthetic clips and, when a config asks (``footage``), on
robustness-benchmark-style pairs of the training videos (both from the validation seed; real evaluation
pairs only when a config asks, and then only watched, never used to pick a checkpoint), and the
self-supervised loss on a fixed set of un-augmented training clips (``real_loss``: free of the batch-to-batch
noise)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from scattermotion.augment import AugmentConfig
from scattermotion.clipsets import Clip
from scattermotion.scoring import score_clips
from scattermotion.training.config import (
    VALIDATION_FOOTAGE_SIZE,
    VALIDATION_SYNTHETIC_SEED,
    TrainConfig,
)


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
        self.sets: dict[str, list[Clip]] = {}  # name -> clips with ground truth, scored by EPE
        if "synthetic" in config.val_sets:
            clips = SyntheticClips(
                seed=VALIDATION_SYNTHETIC_SEED,
                count=config.val_synthetic_count,
                size=config.val_synthetic_size,
                clip_len=config.clip_len,
                kind="mixed",
                max_disp=config.synthetic_max_disp,
            )
            self.sets["synthetic"] = [
                Clip.from_synthetic(f"synthetic/{i:03d}", clips[i]) for i in range(len(clips))
            ]
        if "footage" in config.val_sets:
            # The robustness benchmark's kind of pair: what users see on real footage, which the synthetic
            # EPE alone missed (it improved from stage 4 to 6 while these pairs got worse).
            from scattermotion.data.robustness import RobustnessPairs

            pairs = RobustnessPairs(
                VALIDATION_SYNTHETIC_SEED, config.val_footage_pairs, size=VALIDATION_FOOTAGE_SIZE
            )
            self.sets["footage"] = [
                Clip(f"footage/{i:03d}", [p.frame1, p.frame2], [p.flow], [p.occluded])
                for i, p in enumerate(pairs)
            ]
        for name in config.val_sets:
            if name not in ("synthetic", "footage"):
                self.sets[name] = [Clip.from_sample(s) for s in load_flow_set(name)]

    @property
    def empty(self) -> bool:
        return self.real_clips is None and not self.sets

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
            for name, clips in self.sets.items():  # the scorer of evaluate: the same EPE for the same pair
                scored = score_clips(clips, {name: estimator}, keep_flows=True)[name]
                metrics[f"{name}_epe"] = scored.summary()["epe"]
                examples[name] = (scored.flows[0], clips[0].flows[0])
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
