"""``scattermotion demo``: estimate motion on a short real clip and write a colour-coded MP4 and a PNG strip.

Runs offline right after set-up: the clip comes from the fetched real data (``scripts/fetch_data.sh``).
Uses the packaged default model unless ``method`` names another, and says which in its output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scattermotion.data import fetched
from scattermotion.data.video import open_video
from scattermotion.io.video_writer import Mp4Writer, side_by_side
from scattermotion.io.visualize import (
    color_wheel_legend,
    flow_to_color,
    make_strip,
    sequence_max_flow,
    write_png,
)
from scattermotion.methods import OURS, get_method, method_label


@dataclass
class DemoResult:
    method: str
    video: Path
    strip: Path
    pairs: int
    pairs_per_second: float


def run_demo(
    out_dir: Path = Path("demo_out"),
    source: Path | None = None,
    frames: int = 40,
    short_side: int = 288,
    method: str = "auto",
) -> DemoResult:
    from scattermotion.estimator import get_estimator

    method = get_method(OURS if method == "auto" else method).name  # auto: the packaged default model
    source = source or fetched.real_video("vtest")
    clip = open_video(source, short_side=short_side).read_all(max_frames=frames)
    estimator = get_estimator(method)

    start = time.perf_counter()
    flows = np.asarray(estimator.estimate_clip(clip))
    elapsed = time.perf_counter() - start

    # One normalisation for the whole clip, so colours are comparable from frame to frame.
    max_flow = sequence_max_flow(flows)
    colours = [flow_to_color(f, max_flow=max_flow) for f in flows]

    out_dir.mkdir(parents=True, exist_ok=True)
    video_path = out_dir / "demo_motion.mp4"
    height, width = clip[0].shape[:2]
    with Mp4Writer(video_path, fps=10, width=2 * width, height=height) as writer:
        for frame, colour in zip(clip, colours, strict=False):
            writer.write(side_by_side(frame, colour))

    picks = np.linspace(0, len(colours) - 1, num=min(4, len(colours))).round().astype(int)
    strip = make_strip(
        [clip[i] for i in picks] + [colours[i] for i in picks] + [color_wheel_legend(height)],
        columns=len(picks),
    )
    strip_path = out_dir / "demo_strip.png"
    write_png(strip_path, strip)
    return DemoResult(method_label(method), video_path, strip_path, len(flows), len(flows) / elapsed)
