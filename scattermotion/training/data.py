"""The training data of one rank: real clips from the videos mixed with synthetic clips at the config's
ratio (:mod:`scattermotion.data.clips`), and the loader that walks sample indices in order, so the sample
count is the data position (exact resume)."""

from __future__ import annotations

from pathlib import Path

import torch

from scattermotion.errors import InputError
from scattermotion.threads import cap_blas_threads
from scattermotion.training.config import TrainConfig
from scattermotion.training.distributed import DistContext


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
    student_nuisance = None
    if config.distill_weight > 0:  # self-distillation's student sees real clips with footage nuisances
        from scattermotion.data.nuisance import NuisanceConfig

        student_nuisance = NuisanceConfig()
    dataset = MixedClipDataset(
        real, synthetic, config.synthetic_ratio, config.seed, ctx.rank, student_nuisance=student_nuisance
    )
    return dataset, entries


class IndexRange(torch.utils.data.Sampler[int]):
    """Sample indices ``start .. stop - 1`` in order: the data position is just the sample count."""

    def __init__(self, start: int, stop: int):
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _worker_init(_: int) -> None:
    cap_blas_threads(1)


def make_loader(
    dataset, config: TrainConfig, ctx: DistContext, first_step: int, one_blas_thread: bool = True
) -> torch.utils.data.DataLoader:
    """Batches of samples ``first_step · batch .. steps · batch`` in order (workers render ahead, numpy's
    BLAS at one thread in each: see :func:`scattermotion.threads.cap_blas_threads`)."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=IndexRange(first_step * config.batch_size, config.steps * config.batch_size),
        num_workers=config.num_workers,
        pin_memory=ctx.device.type == "cuda",
        drop_last=True,
        persistent_workers=False,
        worker_init_fn=_worker_init if one_blas_thread else None,
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global torch RNG untouched
    )
