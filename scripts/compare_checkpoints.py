"""Compare trained checkpoints on the validation sets, to choose which one to package.

    python scripts/compare_checkpoints.py CHECKPOINT [CHECKPOINT ...] [--set KEY=VALUE ...]
        [--config YAML] [--footage-pairs 32] [--videos VIDEO ...] [--threads 2] [--json OUT]

A CHECKPOINT is a weights file, a ``scattermotion train`` run folder (its latest checkpoint) or
``RUN_FOLDER:STEP``. Every checkpoint is scored by the validator training uses (same seed, same clips),
with ``--footage-pairs`` footage pairs (more than training's 16, for a steadier figure) and the synthetic
clips of ``--config``'s validation settings; ``--set`` applies inference-only settings to all of them
(``test_time_backward=true`` scores them as the default model runs). Validation data only: the evaluation
sets (motorcycle, Aloe, graf, frame-pairs) never pick a checkpoint. Prints a Markdown table, the first
checkpoint the reference of the ratios.

``--videos`` (training-side videos only) adds the reconstruction PSNR of frame pairs (t, t + 2) taken at
``--pairs-per-video`` evenly spaced points of each: what the EPE sets miss (a smoother motion can lower their
EPE and blur real detail that the evaluation's frame-pairs PSNR sees).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scattermotion.clipsets import Clip  # noqa: E402
from scattermotion.data.video import open_video  # noqa: E402
from scattermotion.errors import InputError  # noqa: E402
from scattermotion.estimator import MotionEstimator  # noqa: E402
from scattermotion.io.atomic import write_json_atomic  # noqa: E402
from scattermotion.model import load_weights  # noqa: E402
from scattermotion.model.settings import add_settings_argument, parse_settings, with_settings  # noqa: E402
from scattermotion.scoring import score_clips  # noqa: E402
from scattermotion.threads import set_threads  # noqa: E402
from scattermotion.training import checkpoint_weights, latest_checkpoint, load_config  # noqa: E402
from scattermotion.training.validation import Validator  # noqa: E402

DEFAULT_CONFIG = ROOT / "configs" / "coarse_passes_6.yaml"  # the default model's recipe


def resolve_checkpoint(spec: str) -> Path:
    """The weights file a CHECKPOINT argument names."""
    path, _, step = spec.rpartition(":") if ":" in spec else (spec, "", "")
    folder = Path(path)
    if folder.is_file() and not step:
        return folder
    if not folder.is_dir():
        raise InputError(folder, "not a weights file or a training run folder")
    if step and not step.isdigit():
        raise InputError(folder, f"checkpoint step must be a whole number, got {step!r}")
    chosen = int(step) if step else latest_checkpoint(folder)
    if chosen is None:
        raise InputError(folder, "no checkpoint in this run folder")
    weights = checkpoint_weights(folder, chosen)
    if not weights.is_file():
        raise InputError(folder, f"has no checkpoint at step {chosen}")
    return weights


def reconstruction_clips(videos: list[Path], per_video: int, short_side: int = 240) -> list[Clip]:
    """Frame pairs (t, t + 2), ``per_video`` of them evenly spaced through each video, at ``short_side``."""
    clips = []
    for path in videos:
        source = open_video(path, short_side=short_side, require_frames=3)
        count = source.frame_count
        for k in range(per_video):
            start = min(int((k + 0.5) * count / per_video), count - 3)
            clips.append(Clip(f"{path.stem}/{start}", list(source.read_clip(start, 2, step=2))))
    return clips


def compare(
    checkpoints: list[tuple[str, Path]],
    settings: dict[str, object],
    validator: Validator,
    reconstruction: list[Clip] | None = None,
) -> list[dict]:
    """One row per (argument, weights file), in order: the validation EPE of every set (and the mean PSNR of
    the ``reconstruction`` pairs)."""
    rows = []
    for spec, weights in checkpoints:
        model = with_settings(load_weights(weights), settings)
        metrics, _ = validator(model, torch.device("cpu"))
        if reconstruction:
            scored = score_clips(reconstruction, {"ours": MotionEstimator(model)})["ours"]
            metrics["reconstruction_psnr"] = scored.summary()["psnr"]
        rows.append({"checkpoint": spec, "weights": str(weights), **metrics})
        print(f"scored {spec}", file=sys.stderr, flush=True)
    return rows


def to_markdown(rows: list[dict], sets: list[str]) -> str:
    psnr = "reconstruction_psnr" in rows[0]
    head = "| checkpoint | " + " | ".join(f"{name} EPE | ratio" for name in sets)
    head += " | reconstruction PSNR dB | difference |" if psnr else " |"
    lines = [head, "|---|" + "---:|---:|" * (len(sets) + psnr)]
    for row in rows:
        cells = [f"{row[f'{n}_epe']:.4f} | {row[f'{n}_epe'] / rows[0][f'{n}_epe']:.3f}" for n in sets]
        if psnr:
            value = row["reconstruction_psnr"]
            cells.append(f"{value:.3f} | {value - rows[0]['reconstruction_psnr']:+.3f}")
        lines.append(f"| {row['checkpoint']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    add_settings_argument(parser, "every checkpoint scored")
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="training config whose validation settings to use"
    )
    parser.add_argument("--footage-pairs", type=int, default=32)
    parser.add_argument("--videos", type=Path, nargs="+", default=[], help="training-side videos only")
    parser.add_argument("--pairs-per-video", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here (atomically)")
    args = parser.parse_args()
    try:
        set_threads(args.threads)
        settings = parse_settings(args.settings)
        # Every argument checked before the minutes of scoring start, so a typo in the last one fails at once.
        checkpoints = [(spec, resolve_checkpoint(spec)) for spec in args.checkpoints]
        if args.footage_pairs < 1:
            raise InputError(None, f"--footage-pairs must be >= 1, got {args.footage_pairs}")
        config = dataclasses.replace(
            load_config(args.config), val_footage_pairs=args.footage_pairs, val_real_clips=0
        )
        if args.pairs_per_video < 1:
            raise InputError(None, f"--pairs-per-video must be >= 1, got {args.pairs_per_video}")
        reconstruction = reconstruction_clips(args.videos, args.pairs_per_video) if args.videos else None
        validator = Validator(config)
        rows = compare(checkpoints, settings, validator, reconstruction)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(to_markdown(rows, list(validator.sets)))
    if args.json:
        write_json_atomic(args.json, {"settings": settings, "config": str(args.config), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
