"""Ablations of the design choices: context-guided upsampling (CGU) vs bilinear, T=4 vs T=2 clip context,
training with vs without forward-backward occlusion masks, and the objectives on synthetic ground truth (an
EPE term at full weight, with it the cue-target term on the cue distributions, or self-distillation of
the network's test-time ensemble on the real clips).

Every variant is trained from the same seed with the same short self-supervised schedule
(``scattermotion.training``: same videos, same synthetic share, same steps, batch and crop) and evaluated on
the same data, which never enter training: fixed synthetic clips of T=4 frames with exact ground truth
(their own seed; each model sees them through ``estimate_clip``, so the T=4 model gets 4-frame context and
the T=2 model pairs) and the real motorcycle stereo pair. DIS and zero motion are scored on the same data for
scale. Results: ``benchmarks/results/ablation.json`` and a Markdown table on stdout.

    python benchmarks/ablation.py [--steps 120] [--batch-size 4] [--crop 128] [--threads N] [--runs-dir DIR]

The default schedule is deliberately short (minutes on 2 CPU cores): it shows the variants side by side
under identical conditions, not converged accuracy; pass a larger ``--steps`` for that.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from scattermotion.clipsets import Clip
from scattermotion.data.fetched import ensure_data, real_video
from scattermotion.data.flowsets import load_flow_set
from scattermotion.data.synthetic import SyntheticClips
from scattermotion.estimator import FlowEstimator, MotionEstimator, get_estimator
from scattermotion.io.atomic import write_json_atomic
from scattermotion.model import load_weights
from scattermotion.reporting import format_number
from scattermotion.scoring import score_clips
from scattermotion.threads import set_threads
from scattermotion.training import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results" / "ablation.json"
TRAIN_VIDEOS = ("tree", "carphone", "bikes")  # unlabeled training footage (never evaluation data)
EVAL_SYNTHETIC_SEED = 20240903  # the ablation's own synthetic evaluation clips
EVAL_CLIP_LEN = 4
REFERENCE = "reference: CGU, T=4, occlusion masks"
VARIANTS: dict[str, dict[str, Any]] = {  # changes to the reference training config
    REFERENCE: {},
    "bilinear upsampling": {"model_overrides": {"upsample": "bilinear"}},
    "T=2 (no clip context)": {"clip_len": 2},
    "no occlusion masks": {"loss": {"occlusion": False}},
    # Objectives on the synthetic clips' exact motion (real video stays self-supervised in every variant).
    "EPE on synthetic (weight 1)": {"supervised_weight": 1.0, "self_supervised_on_synthetic": False},
    "EPE + cue target on synthetic": {
        "supervised_weight": 1.0,
        "self_supervised_on_synthetic": False,
        "loss": {"cue_target_weight": 1.0},
    },
    # Self-distillation: real clips also taught by the network's own test-time ensemble (no labels).
    "EPE on synthetic + self-distillation on real": {
        "supervised_weight": 1.0,
        "self_supervised_on_synthetic": False,
        "distill_weight": 1.0,
    },
}


def base_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        model="small",
        sources=[str(real_video(v)) for v in TRAIN_VIDEOS],
        clip_len=4,
        crop_size=(args.crop, args.crop),
        frame_steps=(1,),
        synthetic_ratio=0.5,
        synthetic_kind="mixed",
        synthetic_max_disp=args.max_disp,
        num_workers=0,  # a 2-core machine: loader processes would only compete with the model
        batch_size=args.batch_size,
        steps=args.steps,
        lr=args.lr,
        warmup_steps=max(1, args.steps // 10),
        schedule="onecycle",
        seed=0,
        log_every=max(1, args.steps // 5),
        image_every=args.steps,
        val_every=args.steps,
        checkpoint_every=args.steps,
        keep_checkpoints=1,
        val_sets=(),
        device="cpu",
        threads=args.threads,
    )


def evaluation_data(args: argparse.Namespace) -> dict[str, list[Clip]]:
    clips = SyntheticClips(
        seed=EVAL_SYNTHETIC_SEED,
        count=args.eval_clips,
        size=(args.eval_height, args.eval_width),
        clip_len=EVAL_CLIP_LEN,
        kind="mixed",
        max_disp=args.max_disp,
    )
    return {
        f"synthetic clips (T={EVAL_CLIP_LEN}, mixed)": [
            Clip.from_synthetic(f"synthetic/{i:03d}", clips[i]) for i in range(len(clips))
        ],
        "motorcycle": [Clip.from_sample(s) for s in load_flow_set("motorcycle")],
    }


def score(estimator: FlowEstimator, data: dict[str, list[Clip]]) -> dict[str, dict[str, float]]:
    """Mean metrics per evaluation set (EPE, boundary EPE, non-occluded / occluded EPE where known) and the
    seconds the method took; a synthetic clip is estimated whole, so a clip model gets its context."""
    out = {}
    for name, clips in data.items():
        scored = score_clips(clips, {name: estimator})[name]
        out[name] = {**scored.summary(), "seconds": scored.seconds}
    return out


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


def markdown(rows: list[dict[str, Any]], sets: list[str]) -> str:
    head = ["variant"] + [f"{s}: {m}" for s in sets for m in ("EPE", "boundary EPE")] + ["train s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in rows:
        cells = [row["variant"]]
        for name in sets:
            metrics = row["sets"][name]
            cells += [format_number(metrics.get("epe")), format_number(metrics.get("epe_boundary"))]
        cells.append(format_number(row.get("train_time_s"), 0))  # "–" when missing
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def untrained_warning(rows: list[dict[str, Any]], sets: list[str], tolerance: float = 0.05) -> str | None:
    """A warning when every trained variant scores within ``tolerance`` of zero motion on every set: the
    schedule was too short for the network to leave its zero-motion start, so the variants cannot differ."""
    zero = next((r for r in rows if r["variant"].startswith("zero")), None)
    trained = [r for r in rows if "train_time_s" in r]
    if zero is None or not trained:
        return None
    for row in trained:
        for name in sets:
            reference = zero["sets"][name]["epe"]
            if abs(row["sets"][name]["epe"] - reference) > tolerance * reference:
                return None
    return (
        f"every variant is within {tolerance:.0%} of zero motion on every set: {len(trained)} variants did "
        "not learn motion in this schedule, so they cannot be told apart; train longer (--steps)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=120, help="training steps of every variant")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per step")
    parser.add_argument("--crop", type=int, default=128, help="square training crop (multiple of 16)")
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--max-disp", type=float, default=16.0, help="synthetic motion bound (train + eval)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--eval-clips", type=int, default=6, help="synthetic evaluation clips")
    parser.add_argument("--eval-height", type=int, default=192)
    parser.add_argument("--eval-width", type=int, default=256)
    parser.add_argument("--variants", default=None, help="comma-separated subset of variant names")
    parser.add_argument("--runs-dir", type=Path, default=None, help="keep the training runs here")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.steps < 1 or args.crop % 16:
        parser.error("--steps must be >= 1 and --crop a multiple of 16")

    ensure_data()
    set_threads(args.threads or None)
    variants = VARIANTS
    if args.variants:
        wanted = [v.strip() for v in args.variants.split(",")]
        unknown = [v for v in wanted if v not in VARIANTS]
        if unknown:
            parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
        variants = {k: v for k, v in VARIANTS.items() if k in wanted}
    data = evaluation_data(args)
    base = base_config(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="scattermotion-ablation-") as scratch:
        runs_root = args.runs_dir or Path(scratch)
        for index, (name, changes) in enumerate(variants.items()):
            config = TrainConfig.from_dict(merge(base.to_dict(), changes))
            run_dir = runs_root / f"variant{index}"
            print(f"[{name}] training {config.steps} steps -> {run_dir}", file=sys.stderr)
            result = train(config, run_dir, progress=False)
            estimator = MotionEstimator(load_weights(result.final_weights))
            scores = score(estimator, data)
            rows.append(
                {
                    "variant": name,
                    "changes": changes,
                    "train_time_s": result.train_time_s,
                    "final_loss": _last_loss(run_dir),
                    "sets": scores,
                }
            )
            print(
                f"[{name}] " + ", ".join(f"{s}: EPE {m['epe']:.2f}" for s, m in scores.items()),
                file=sys.stderr,
            )
    for method in ("dis", "zero"):
        rows.append(
            {"variant": f"{method} (for scale)", "changes": {}, "sets": score(get_estimator(method), data)}
        )

    sets = list(data)
    warning = untrained_warning(rows, sets)
    print(markdown(rows, sets))
    if warning:
        print(f"WARNING: {warning}")
    record = {
        "benchmark": "ablation",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "train_config": base.to_dict(),
        "evaluation": {
            "synthetic": {
                "seed": EVAL_SYNTHETIC_SEED,
                "clips": args.eval_clips,
                "size": [args.eval_height, args.eval_width],
                "clip_len": EVAL_CLIP_LEN,
                "max_disp": args.max_disp,
            },
            "real": ["motorcycle (half size, evaluation only)"],
        },
        "sets": sets,
        "rows": rows,
        "markdown": markdown(rows, sets),
        "warning": warning,
    }
    write_json_atomic(args.output, record, make_parents=True)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _last_loss(run_dir: Path) -> float | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    losses = [json.loads(line).get("loss") for line in path.read_text().splitlines() if line.strip()]
    losses = [v for v in losses if v is not None]
    return float(losses[-1]) if losses else None


if __name__ == "__main__":
    sys.exit(main())
