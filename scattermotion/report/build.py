"""``scattermotion report``: analyse each input, write its pictures and clip, and write the HTML page.

Output: ``OUT/index.html`` and ``OUT/assets/`` (PNG stills, one MP4 clip per input). Every file is written
atomically (temporary name, then rename), the page last, so an interrupted run never leaves a page that
points at missing files. An input that fails is logged, listed on the page and skipped; the others finish.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scattermotion.clipsets import resolve_set
from scattermotion.errors import InputError
from scattermotion.io.atomic import write_bytes_atomic
from scattermotion.io.video_writer import Mp4Writer
from scattermotion.io.visualize import color_wheel_legend, flow_to_color, make_strip, write_png
from scattermotion.report.analysis import (
    DEFAULT_METHODS,
    InputAnalysis,
    Method,
    analyse_input,
    prepare_methods,
)
from scattermotion.report.harness import (
    evaluation_facts,
    evaluation_plots,
    evaluation_tables,
    load_evaluation,
)
from scattermotion.report.images import (
    CONFIDENCE_COLORMAP,
    ERROR_COLORMAP,
    ERROR_RANGE,
    colour_bar,
    confidence_image,
    error_image,
    label_panel,
    reconstruction_error,
)
from scattermotion.report.page import Clip, Figure, FigureRow, Page, Section, render_page
from scattermotion.report.tables import input_plot, input_table

log = logging.getLogger(__name__)

ASSETS = "assets"
CLIP_FPS = 4.0  # slow enough to follow the motion of a few pairs
LEGEND_SIZE = 128
EXPLANATIONS = [
    "Motion colours: hue is the direction, saturation the length (Middlebury colour wheel). White is no "
    "motion; the wheel's rim is the radius given beside it, the same for every method of one input so "
    "that their colours compare; longer motion is drawn darker; black is unknown ground truth.",
    f"Reconstruction error: |frame t − frame t+1 sampled at (x+u, y+v)| averaged over RGB, from 0 (black) "
    f"to {ERROR_RANGE:.0f} grey levels or more (yellow); grey pixels sample outside frame t+1 and are not "
    "scored. PSNR and SSIM are computed on the scored pixels and averaged over the pairs.",
    "Confidence: our network's certainty about each pixel's motion (1 − normalised entropy of its local "
    "motion cues), from the same pass as its motion.",
    "EPE: mean end-point error against ground truth in pixels; boundary EPE: within 2 px of a motion "
    "boundary; <N px: share of pixels with EPE below N; Fl-all: KITTI outliers (EPE > 3 px and > 5 % of "
    "|gt|).",
    "ms/pair: wall time of the method's own call on this machine divided by the pairs (our network: after "
    "one untimed warm-up call); times from different runs or machines do not compare.",
]


@dataclass
class ReportOptions:
    out_dir: Path
    methods: Sequence[str] = DEFAULT_METHODS
    weights: Path | None = None
    pairs: int = 8
    start: int = 0
    max_side: int = 384
    eval_json: Path | None = None
    device: str = "cpu"
    title: str = "scattermotion report"


@dataclass
class ReportResult:
    index: Path
    inputs: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "input"


class _Assets:
    """Writes the pictures and clips of one input under ``OUT/assets`` and hands back page figures."""

    def __init__(self, out_dir: Path, prefix: str):
        self.out_dir, self.prefix = out_dir, prefix
        self.written: list[Path] = []  # files this run created: removed again when its input fails

    def own(self, path: Path) -> Path:
        if not path.exists():  # a file an earlier page uses is never taken back
            self.written.append(path)
        return path

    def png(self, name: str, image: np.ndarray, caption: str) -> Figure:
        rel = f"{ASSETS}/{self.prefix}-{name}.png"
        write_png(self.own(self.out_dir / rel), image)
        return Figure(rel, caption, image.shape[1], image.shape[0])

    def remove(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)


def _write_shared_assets(assets: _Assets) -> dict[str, Figure]:
    return {
        "wheel": assets.png("colour-wheel", color_wheel_legend(LEGEND_SIZE), "colour key"),
        "error_bar": assets.png("error-bar", colour_bar(ERROR_COLORMAP), f"error 0 … ≥{ERROR_RANGE:.0f}"),
        "confidence_bar": assets.png("confidence-bar", colour_bar(CONFIDENCE_COLORMAP), "confidence 0 … 1"),
    }


def _clip_grid_columns(panels: int) -> int:
    return panels if panels <= 3 else (panels + 1) // 2


def _write_clip(analysis: InputAnalysis, assets: _Assets) -> Clip:
    """An MP4 of every frame beside each method's motion (and the ground truth), one video frame per input
    frame; frame t shows the motion of pair t (the last frame of a clip repeats its last pair)."""
    report_input = analysis.input
    gt = report_input.ground_truth
    grids: list[np.ndarray] = []
    pair = 0
    for clip in report_input.clips:
        frames = clip.frames
        for t, frame in enumerate(frames):
            p = pair + min(t, len(frames) - 2)
            panels = [label_panel(frame, f"frame {t}" if len(frames) > 2 else ("frame 1", "frame 2")[t])]
            panels += [
                label_panel(flow_to_color(r.flows[p], analysis.max_flow), r.label) for r in analysis.results
            ]
            if gt is not None:
                panels.append(label_panel(flow_to_color(gt[p], analysis.max_flow), "ground truth"))
            grids.append(make_strip(panels, gap=4, columns=_clip_grid_columns(len(panels))))
        pair += clip.pair_count
    height, width = grids[0].shape[:2]
    rel = f"{ASSETS}/{assets.prefix}-clip.mp4"
    with Mp4Writer(assets.own(assets.out_dir / rel), fps=CLIP_FPS, width=width, height=height) as video:
        for grid in grids:
            video.write(grid)
    poster = assets.png("clip-poster", grids[0], "clip poster")
    caption = f"{len(grids)} frames at {CLIP_FPS:g} fps: each frame beside the motion of every method"
    return Clip(rel, poster.src, width, height, caption)


def _section(index: int, analysis: InputAnalysis, shared: dict[str, Figure], assets: _Assets) -> Section:
    report_input = analysis.input
    k = analysis.key_pair
    frame1, frame2 = analysis.pairs[k]
    which = f"pair {k + 1} of {len(analysis.pairs)}" if len(analysis.pairs) > 1 else "the pair"
    inputs_row = [assets.png("frame1", frame1, "frame t"), assets.png("frame2", frame2, "frame t+1")]
    if report_input.ground_truth is not None:
        truth = flow_to_color(report_input.ground_truth[k], analysis.max_flow)
        inputs_row.append(assets.png("ground-truth", truth, "ground truth"))
    wheel = shared["wheel"]
    inputs_row.append(
        Figure(wheel.src, f"colour key: rim = {analysis.max_flow:.1f} px", wheel.width, wheel.height)
    )

    motion_row, error_row, confidence_row = [], [], []
    for result in analysis.results:
        slug = _slug(result.name)
        colour = flow_to_color(result.flows[k], analysis.max_flow)
        motion_row.append(
            assets.png(f"motion-{slug}", colour, f"{result.label} · {result.ms_per_pair:.0f} ms/pair")
        )
        error, valid = reconstruction_error(frame1, frame2, result.flows[k])
        psnr = result.scores[k]["psnr"]
        error_row.append(
            assets.png(f"error-{slug}", error_image(error, valid), f"{result.label} · PSNR {psnr:.2f} dB")
        )
        if result.confidence is not None:
            confidence = result.confidence[k]
            caption = f"{result.label} · mean {float(np.mean(confidence)):.2f}"
            confidence_row.append(assets.png(f"confidence-{slug}", confidence_image(confidence), caption))
    error_row.append(shared["error_bar"])
    rows = [
        FigureRow("frames", inputs_row, which),
        FigureRow("motion", motion_row, "colour-coded"),
        FigureRow("reconstruction error", error_row, "frame t vs warped t+1"),
    ]
    if confidence_row:
        rows.append(FigureRow("confidence", [*confidence_row, shared["confidence_bar"]], "our network"))
    width, height = report_input.size
    facts = [
        report_input.source,
        f"{width}x{height}, {len(analysis.pairs)} pair{'s' if len(analysis.pairs) != 1 else ''}"
        + (", with ground truth" if report_input.ground_truth is not None else ", no ground truth"),
    ]
    return Section(
        anchor=assets.prefix,
        title=report_input.name,
        facts=facts,
        notes=list(report_input.notes),
        rows=rows,
        clip=_write_clip(analysis, assets),
        table=input_table(analysis),
        plot_svg=input_plot(analysis),
    )


def _failure_text(err: Exception) -> str:
    if isinstance(err, InputError):
        return err.problem
    return f"{type(err).__name__}: {err}"


def _page_facts(methods: list[Method]) -> list[str]:
    import cv2
    import torch

    from scattermotion import __version__

    return [
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by scattermotion {__version__}.",
        "Methods: " + ", ".join(m.label for m in methods) + ".",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), OpenCV {cv2.__version__} ({cv2.getNumThreads()} threads).",
    ]


def build_report(
    inputs: Sequence[str],
    options: ReportOptions,
    progress: Callable[[str], None] | None = None,
) -> ReportResult:
    """Analyse every input and write ``options.out_dir/index.html`` with its assets.

    Options and the methods are checked before any input is read (:class:`InputError`). A failing input is
    skipped and listed on the page; when every input fails, the first failure is raised (an
    :class:`InputError` for bad input) and no page is written.
    """
    say = progress or (lambda line: None)
    if not inputs:
        raise InputError(None, "no INPUT given")
    if options.pairs < 1 or options.max_side < 16 or options.start < 0:
        raise InputError(None, "--pairs must be >= 1, --max-side >= 16 and --start >= 0")
    evaluation = load_evaluation(options.eval_json) if options.eval_json is not None else None
    methods = prepare_methods(options.methods, options.weights, options.device)
    out_dir = Path(options.out_dir)
    created = [p for p in (out_dir / ASSETS, out_dir, *out_dir.parents) if not p.exists()]
    try:
        (out_dir / ASSETS).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(out_dir, f"cannot create the report folder: {err.strerror or err}") from None
    key_assets = _Assets(out_dir, "key")
    try:
        return _build(inputs, options, methods, evaluation, out_dir, key_assets, say)
    except BaseException:  # no page: take back what this run wrote and the folders it made
        key_assets.remove()
        for folder in created:  # innermost first; only while empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _build(inputs, options, methods, evaluation, out_dir: Path, key_assets: _Assets, say):
    shared = _write_shared_assets(key_assets)
    result = ReportResult(out_dir / "index.html")
    sections: list[Section] = []
    first_error: Exception | None = None
    for number, spec in enumerate(inputs, start=1):
        prefix = f"[{number}/{len(inputs)}] {spec}"
        assets: _Assets | None = None
        try:
            say(f"{prefix}: reading")
            report_input = resolve_set(spec, options.pairs, start=options.start, max_side=options.max_side)
            width, height = report_input.size
            count = report_input.pair_count
            say(f"{prefix}: {count} pair{'s' if count != 1 else ''} at {width}x{height}")
            analysis = analyse_input(report_input, methods, lambda line, p=prefix: say(f"{p}: {line}"))
            assets = _Assets(out_dir, f"{number:02d}-{_slug(report_input.name)}")
            sections.append(_section(number, analysis, shared, assets))
            result.inputs.append(spec)
        except (
            Exception
        ) as err:  # one bad input must not sink the batch; it is reported below and on the page
            log.debug("report input %s failed", spec, exc_info=True)
            if assets is not None:  # no half-written pictures of a failed input
                assets.remove()
            first_error = first_error or err
            result.failures.append((spec, _failure_text(err)))
            say(f"{prefix}: FAILED, skipped: {_failure_text(err)}")
    if not sections and first_error is not None:
        raise first_error  # an InputError prints as one line; anything else is a bug worth its traceback
    page = Page(
        title=options.title,
        facts=_page_facts(methods),
        notes=[],
        sections=sections,
        failures=result.failures,
        explanations=EXPLANATIONS,
    )
    if evaluation is not None:
        page.harness_tables = evaluation_tables(evaluation)
        page.harness_plots = evaluation_plots(evaluation)
        page.harness_facts = evaluation_facts(evaluation, options.eval_json)
    write_bytes_atomic(result.index, render_page(page).encode("utf-8"))
    say(f"report: {result.index} ({len(sections)} input{'s' if len(sections) != 1 else ''})")
    return result
