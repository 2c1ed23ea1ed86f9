"""Package a training checkpoint as the model shipped in the package, with its machine-readable card.

    python scripts/package_default_model.py runs/default [--step N] [--out WEIGHTS] [--set KEY=VALUE ...]

Takes checkpoint ``N`` (default: the run's latest) of a ``scattermotion train`` run, writes the weights and
``default.json`` (training data, steps, time, last validation metrics) atomically. A run fine-tuned from
earlier weights (``--init``) keeps their card's training record under ``training.initialised_from``, read
before anything is overwritten, so the card of a multi-stage model lists every stage. The human-readable
card is ``scattermotion/weights/MODEL_CARD.md``.

``--set`` changes inference-only fields of the stored config (``refine_iterations``, ``test_time_backward``,
``test_time_mirror``): they reuse the trained weights unchanged, so the packaged model runs the same tensors
with more passes or test-time averaging; the card records what was set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scattermotion.errors import InputError  # noqa: E402
from scattermotion.model import load_weights, save_weights  # noqa: E402
from scattermotion.model.settings import add_settings_argument, parse_settings, with_settings  # noqa: E402
from scattermotion.model.weights import training_record  # noqa: E402
from scattermotion.training import (  # noqa: E402
    CONFIG_FILE,
    METRICS_FILE,
    checkpoint_weights,
    init_record,
    latest_checkpoint,
    load_config,
)


def read_events(run_dir: Path, up_to: int) -> tuple[float, dict[str, float]]:
    """Training time at ``up_to`` steps and the last validation metrics up to then."""
    train_time, validation = 0.0, {}
    for line in (run_dir / METRICS_FILE).read_text().splitlines():
        event = json.loads(line)
        if event.get("step", 0) > up_to:
            continue
        if event["kind"] == "train":
            train_time = max(train_time, float(event.get("time_s", 0.0)))
        elif event["kind"] == "val":
            validation = {k: v for k, v in event.items() if k not in ("kind",)}
    return train_time, validation


def run_precision(run_dir: Path, configured: str) -> str:
    """What the run computed in: the resolved precision its final card records, else the configured one."""
    final = run_dir / "final.json"
    if final.is_file():
        training = json.loads(final.read_text()).get("training", {})
        if training.get("precision"):
            features = ", ".join(training.get("cpu_bf16_features", [])) or "none"
            return f"{training['precision']} (configured {configured}; CPU bf16 features: {features})"
    return configured


def earlier_stage(run_dir: Path, init_weights: str | None) -> dict | None:
    """The training record of the weights a run started from (None for a run from scratch): the copy the
    run kept when it started, else (runs older than that copy) the card beside those weights now."""
    if not init_weights:
        return None
    return init_record(run_dir) or training_record(init_weights)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--step", type=int, default=None)
    default_out = ROOT / "scattermotion" / "weights" / "default.safetensors"
    parser.add_argument("--out", type=Path, default=default_out)
    add_settings_argument(parser, "the packaged model")
    args = parser.parse_args()
    try:
        step = args.step if args.step is not None else latest_checkpoint(args.run_dir)
        if step is None:
            raise InputError(args.run_dir, "no checkpoint in this run folder")
        weights = checkpoint_weights(args.run_dir, step)
        settings = parse_settings(args.settings)
        model = with_settings(load_weights(weights), settings)
        config = load_config(args.run_dir / CONFIG_FILE)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    train_time, validation = read_events(args.run_dir, step)
    card = {
        "training": {
            "data_sources": [Path(s).name for s in config.sources],
            "synthetic_ratio": config.synthetic_ratio,
            "synthetic_kind": config.synthetic_kind,
            "supervised_weight": config.supervised_weight,
            "self_supervised_on_synthetic": config.self_supervised_on_synthetic,
            "precision": run_precision(args.run_dir, config.precision),
            "steps": step,
            "batch_size": config.batch_size,
            "clip_len": config.clip_len,
            "crop_size": list(config.crop_size),
            "train_time_s": round(train_time, 1),
            "device": f"CPU, {torch.get_num_threads()} threads",
            "config": {**config.to_dict(), "sources": [Path(s).name for s in config.sources]},
            "initialised_from": earlier_stage(args.run_dir, config.init_weights),
        },
        "inference_settings": settings,
        "validation_at_checkpoint": validation,
        "evaluation_data": "motorcycle, Aloe, graf (ground truth) and frame-pairs: never trained on",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, args.out, card=card)
    size_mb = args.out.stat().st_size / 1e6
    print(f"{weights} -> {args.out} ({size_mb:.1f} MB), step {step}, validation {validation}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
