"""The run's log: ``metrics.jsonl`` (one JSON line per event) and TensorBoard, written by rank 0 only. On
resume, lines and events after the checkpoint's step are dropped, so the log continues the same curve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scattermotion.io.atomic import write_bytes_atomic
from scattermotion.training.config import METRICS_FILE


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
