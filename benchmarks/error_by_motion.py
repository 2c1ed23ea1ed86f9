"""Where the error comes from: EPE by ground-truth motion magnitude, ours beside TV-L1, DIS, Farneback.

    python benchmarks/error_by_motion.py [--clips 12] [--weights W]

Generated clips with exact ground truth, of both kinds the model trains on (``mixed``: sample pictures under
smooth fields and sprites; ``footage``: camera motion, independent objects and sensor nuisances), 256×320, one
pair each, from a seed of their own (never a training or validation seed). For every bin of |true motion|
the table gives each method's mean EPE there, its ratio to DIS's, its mean signed error along the true motion
(a method that finds too little of the motion is negative there), and the share of the method's whole error
(summed over pixels) that the bin holds: which motions a better model must fix first. Prints Markdown and
writes ``benchmarks/results/error_by_motion.json`` atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from scattermotion.clipsets import Clip
from scattermotion.data.synthetic import SyntheticClips
from scattermotion.estimator import get_estimator
from scattermotion.io.atomic import write_json_atomic
from scattermotion.methods import CLASSICAL_METHODS, OURS, REGISTRY
from scattermotion.metrics import along_error, endpoint_error
from scattermotion.reporting import format_number, machine_info
from scattermotion.scoring import score_clips
from scattermotion.threads import set_threads

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 4242  # a seed of its own: never one of the training or validation sets
KINDS = ("mixed", "footage")
BINS = (0.0, 1.0, 4.0, 16.0, 32.0, 64.0, 200.0)  # |true motion| in px
BASELINES = tuple(m for m in CLASSICAL_METHODS if REGISTRY[m].motion_source)


def binned_errors(flows: list[np.ndarray], clips: list[Clip]) -> np.ndarray:
    """``len(BINS)-1`` × 4 per motion bin: summed EPE, its pixel count (finite ground truth), summed error
    along the true motion (:func:`along_error`) and its count (moving pixels)."""
    sums = np.zeros((len(BINS) - 1, 4))
    for pred, clip in zip(flows, clips, strict=True):
        truth = clip.flows[0]
        magnitude = np.linalg.norm(truth, axis=-1)
        epe, along = endpoint_error(pred, truth), along_error(pred, truth)
        for column, values in ((0, epe), (2, along)):
            ok = np.isfinite(magnitude) & np.isfinite(values)
            which = np.digitize(magnitude[ok], BINS[1:-1])
            sums[:, column] += np.bincount(which, values[ok], minlength=len(BINS) - 1)
            sums[:, column + 1] += np.bincount(which, minlength=len(BINS) - 1)
    return sums


def to_markdown(report: dict) -> str:
    lines = [
        f"{report['clips']} pairs of 256×320 per kind (seed {SEED}); EPE in px by |true motion|; "
        "along: mean signed error along the true motion (negative: too short).",
        "",
    ]
    for kind in KINDS:
        rows = report["kinds"][kind]
        dis = {r["bin"]: r["epe"] for r in rows if r["method"] == "dis"}
        lines += [
            f"**{kind}**",
            "",
            "| |true motion| px | pixels % | method | EPE px | × DIS | along px | share of its error % |",
            "|---|---:|---|---:|---:|---:|---:|",
        ]
        for r in rows:
            ratio = r["epe"] / dis[r["bin"]] if dis.get(r["bin"]) else None
            lines.append(
                f"| {r['bin']} | {format_number(r['pixels_share'], 1, 100)} | {r['method']} | "
                f"{format_number(r['epe'])} | {format_number(ratio)} | {format_number(r.get('along'))} | "
                f"{format_number(r['error_share'], 1, 100)} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--weights", default=None, help="weights for ours (default: packaged)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS / "error_by_motion.json")
    args = parser.parse_args()
    set_threads(args.threads)
    methods = {OURS: get_estimator(OURS, args.weights), **{m: get_estimator(m) for m in BASELINES}}
    report: dict = {"benchmark": "error_by_motion", "clips": args.clips, "machine": machine_info()}
    report["kinds"] = {}
    for kind in KINDS:
        synthetic = SyntheticClips(
            seed=SEED, count=args.clips, size=(256, 320), clip_len=2, kind=kind, max_disp=96.0
        )
        clips = [Clip.from_synthetic(f"{kind}/{i:03d}", synthetic[i]) for i in range(len(synthetic))]
        scored = score_clips(clips, methods, keep_flows=True)
        sums = {m: binned_errors(scored[m].flows, clips) for m in methods}
        edges = list(zip(BINS[:-1], BINS[1:], strict=True))
        report["kinds"][kind] = [
            {
                "bin": f"{low:g}–{high:g}",
                "method": method,
                "epe": sums[method][i, 0] / sums[method][i, 1] if sums[method][i, 1] else None,
                "along": sums[method][i, 2] / sums[method][i, 3] if sums[method][i, 3] else None,
                "pixels_share": sums[method][i, 1] / sums[method][:, 1].sum(),
                "error_share": sums[method][i, 0] / sums[method][:, 0].sum(),
            }
            for i, (low, high) in enumerate(edges)
            for method in methods
        ]  # bin by bin, every method within a bin
    print(to_markdown(report))
    write_json_atomic(args.output, report, indent=2)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
