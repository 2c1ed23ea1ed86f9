"""Training of the motion network (``scattermotion train``), one module per job:

- :mod:`~scattermotion.training.config`: the typed, validated TrainConfig and its YAML files;
- :mod:`~scattermotion.training.data`: the mixed real/synthetic clips of a rank and their loader;
- :mod:`~scattermotion.training.objectives`: the loss, from small pieces (self-supervised, supervised);
- :mod:`~scattermotion.training.loop`: set-up, the step function, the model card;
- :mod:`~scattermotion.training.callbacks`: logging, images, validation, checkpoints, test hooks;
- :mod:`~scattermotion.training.checkpoint`: checkpoints and exact resume;
- :mod:`~scattermotion.training.validation`: validation metrics (never on evaluation data's verdict);
- :mod:`~scattermotion.training.distributed`, :mod:`~scattermotion.training.runlog`.
"""

from scattermotion.training.checkpoint import (
    checkpoint_name,
    checkpoint_weights,
    latest_checkpoint,
    list_checkpoints,
    weights_hash,
)
from scattermotion.training.config import (
    CONFIG_FILE,
    METRICS_FILE,
    TrainConfig,
    load_config,
    resolve_config,
)
from scattermotion.training.loop import TrainResult, init_record, lr_factor, train

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "TrainConfig",
    "TrainResult",
    "init_record",
    "checkpoint_name",
    "checkpoint_weights",
    "latest_checkpoint",
    "list_checkpoints",
    "load_config",
    "lr_factor",
    "resolve_config",
    "train",
    "weights_hash",
]
