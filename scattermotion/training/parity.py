"""bf16 against fp32 training on one short schedule (``benchmarks/precision_parity.py`` runs it; the README's
results section renders its JSON): real training runs from random weights or, given ``init``, fine-tuning
those weights at lr 1e-4, validated once at the end."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from scattermotion.training.loop import train
from scattermotion.training.speed import recipe


def run_once(precision: str, seed: int, steps: int, threads: int, init: str | None = None) -> dict:
    config = recipe(threads).replace(
        precision=precision,
        init_weights=init,
        seed=seed,
        steps=steps,
        lr=6e-4 if init is None else 1e-4,
        warmup_steps=min(20, steps // 5),
        schedule="cosine",
        supervised_weight=1.0,
        self_supervised_on_synthetic=False,
        num_workers=1,
        val_sets=("synthetic",),
        val_every=steps,
        checkpoint_every=steps,
        image_every=10**6,
        log_every=max(1, steps // 10),
    )
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        result = train(config, Path(run_dir) / "run", progress=False)
        seconds = time.perf_counter() - start
    return {
        "precision": precision,
        "seed": seed,
        "synthetic_epe": round(result.metrics["synthetic_epe"], 4),
        "seconds": round(seconds, 1),
    }


def summarise(runs: list[dict]) -> dict:
    by = {p: [r["synthetic_epe"] for r in runs if r["precision"] == p] for p in ("fp32", "bf16")}
    out = {
        p: {"mean": round(float(np.mean(v)), 4), "spread": round(float(np.ptp(v)), 4)}
        for p, v in by.items()
        if v
    }
    if "bf16" in out:
        out["bf16_within_fp32_spread"] = bool(
            abs(out["bf16"]["mean"] - out["fp32"]["mean"]) <= out["fp32"]["spread"]
        )
    return out


def to_markdown(report: dict) -> str:
    lines = ["| precision | seed | validation EPE | seconds |", "|---|---:|---:|---:|"]
    for run in report["runs"]:
        lines.append(
            f"| {run['precision']} | {run['seed']} | {run['synthetic_epe']:.3f} | {run['seconds']:.0f} |"
        )
    summary = report["summary"]
    lines.append("")
    for precision in ("fp32", "bf16"):
        if precision in summary:
            s = summary[precision]
            lines.append(f"- {precision}: mean {s['mean']:.3f}, seed-to-seed spread {s['spread']:.3f}")
    if "bf16_within_fp32_spread" in summary:
        lines.append(
            f"- bf16 mean within the fp32 spread of the fp32 mean: {summary['bf16_within_fp32_spread']}"
        )
    else:
        lines.append("- bf16: no native bf16 on this CPU (AVX512-BF16, AMX-BF16): not run.")
    return "\n".join(lines)
