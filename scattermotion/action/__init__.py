"""Downstream action recognition with the motion stream: TSN over motion maps from any source.

- :mod:`~scattermotion.action.datasets`: UCF101, HMDB51, Kinetics, rawframes and class-folder layouts.
- :mod:`~scattermotion.action.sources`: ours / TV-L1 / DIS / RGB-difference / RGB / pre-extracted maps
  through one interface, estimated motion cached on disk per video.
- :mod:`~scattermotion.action.loader`: TSN segment sampling and the torch Dataset.
- :mod:`~scattermotion.action.model`: the TSN with a compact CNN (CPU) or a ResNet / custom backbone.
- :mod:`~scattermotion.action.engine`: training, prediction, late fusion, end-to-end fine-tuning.
- :mod:`~scattermotion.action.motionbench`: the generated real-footage motion benchmark.
- :mod:`~scattermotion.action.cli`: the ``scattermotion action`` verb.

Names are imported lazily, so that mounting the CLI does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "VideoRecord": "datasets", "VideoSet": "datasets", "load_videos": "datasets",
    "ActionModel": "engine", "TrainOptions": "engine", "train_action": "engine", "predict": "engine",
    "accuracy": "engine", "fuse": "engine", "save_action_model": "engine", "load_action_model": "engine",
    "BenchSettings": "motionbench", "make_motion_bench": "motionbench",
    "SourceSpec": "sources", "make_source": "sources", "parse_source": "sources",
}  # fmt: skip
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"scattermotion.action.{_EXPORTS[name]}"), name)
