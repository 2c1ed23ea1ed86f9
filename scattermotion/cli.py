"""The ``scattermotion`` console entry point. Thin: parses arguments and calls library functions."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from scattermotion.action.cli import action_app
from scattermotion.errors import InputError
from scattermotion.methods import SCORED, SPEED, methods_help
from scattermotion.threads import set_threads

app = typer.Typer(
    help="Self-supervised dense motion from video: estimate, extract, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

METHOD_HELP = methods_help(SCORED, ".")
MIN_SIDE_HELP = "ours: run the network on frames scaled up to this short side (small frames, e.g. 224)."


def _weights_path(name: str) -> str:
    """``default`` means the packaged model; anything else is a path."""
    if name == "default":
        from scattermotion.estimator import DEFAULT_WEIGHTS

        if not DEFAULT_WEIGHTS.is_file():
            raise InputError(DEFAULT_WEIGHTS, "no packaged default weights in this install")
        return str(DEFAULT_WEIGHTS)
    path = Path(name).expanduser()
    if not path.is_file():
        raise InputError(path, "weights file not found")
    return str(path.resolve())


@app.command()
def flow(
    image1: Path = typer.Argument(..., help="First image (motion is from this one)."),
    image2: Path = typer.Argument(..., help="Second image, same size."),
    output: Path = typer.Option(..., "--output", "-o", help="Motion file: .flo, .png (KITTI) or .npy."),
    viz: Path | None = typer.Option(None, "--viz", help="Also write a colour-coded PNG here."),
    method: str = typer.Option("ours", "--method", help=METHOD_HELP),
    weights: Path | None = typer.Option(None, "--weights", help="Weights for ours (default: packaged)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N (ours only)."),
    fp16: bool = typer.Option(False, "--fp16", help="Half precision (CUDA autocast; ours only)."),
    min_side: int | None = typer.Option(None, "--min-side", help=MIN_SIDE_HELP),
) -> None:
    """Estimate motion between two images: scattermotion flow A.png B.png -o out.flo [--viz out.png]."""
    from scattermotion.estimator import estimate_image_files
    from scattermotion.io import FLOW_EXTENSIONS, flow_to_color, write_flow, write_png
    from scattermotion.io.atomic import check_output_file

    if output.suffix.lower() not in FLOW_EXTENSIONS:
        raise InputError(output, f"unknown motion file type; use one of {', '.join(FLOW_EXTENSIONS)}")
    if viz is not None and viz.suffix.lower() != ".png":
        raise InputError(viz, "--viz writes a PNG: give a .png path")
    for path in (output, viz):  # every output is checked before any work: none is left half-done
        if path is not None:
            check_output_file(path)
    motion = estimate_image_files(
        image1, image2, method=method, weights=weights, device=device, fp16=fp16, min_side=min_side
    )
    write_flow(output, motion)
    if viz is not None:
        write_png(viz, flow_to_color(motion))
    typer.echo(f"{output}: {motion.shape[1]}x{motion.shape[0]} motion ({method})")


@app.command()
def extract(
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT...", help="Videos, folders of videos (class folders kept), frame folders, lists."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: OUT/<class>/<video>/flow_..."),
    fmt: str = typer.Option("jpg", "--format", help="jpg (flow_x/flow_y, TSN) | flo | kitti | npy | viz."),
    method: str = typer.Option("ours", "--method", help=METHOD_HELP),
    weights: Path | None = typer.Option(None, "--weights", help="Weights for ours (default: packaged)."),
    bound: float = typer.Option(20.0, "--bound", help="jpg: clip at ±bound px; viz: saturation radius."),
    resize: str | None = typer.Option(None, "--resize", help="Resize frames to WxH, e.g. 340x256."),
    short_side: int | None = typer.Option(None, "--short-side", help="Resize so the shorter side is N px."),
    step: int = typer.Option(
        1, "--step", help="Sample every K-th frame: pairs (0,K), (K,2K), ... (not denseflow's -s: i, i+K)."
    ),
    rgb: bool = typer.Option(
        False, "--rgb", help="jpg: also write the frames as img_00001.jpg, ... (mmaction2 rawframes)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", help="N processes over videos (classical methods; for ours use --threads)."
    ),
    threads: int | None = typer.Option(None, "--threads", help="torch and OpenCV threads per process."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N (ours only)."),
    shard: str | None = typer.Option(
        None, "--shard", help="i/N: this run's part of the sorted list (torchrun: RANK/WORLD_SIZE)."
    ),
    fp16: bool = typer.Option(False, "--fp16", help="Half precision (CUDA autocast; ours only)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="ours: clip windows per forward pass."),
    min_side: int | None = typer.Option(None, "--min-side", help=MIN_SIDE_HELP),
    max_frames: int | None = typer.Option(None, "--max-frames", help="Read at most N frames per video."),
    list_root: Path | None = typer.Option(None, "--list-root", help="Base folder of list-file entries."),
) -> None:
    """Extract motion maps for videos, folders of videos, frame folders or list files (resumable)."""
    from scattermotion.extract import ExtractInterrupted, ExtractOptions
    from scattermotion.extract import extract as run_extract
    from scattermotion.inputs import parse_shard, parse_size

    options = ExtractOptions(
        out_dir=out,
        format=fmt,
        method=method,
        weights=weights,
        bound=bound,
        resize=parse_size(resize, "--resize") if resize else None,
        short_side=short_side,
        step=step,
        workers=workers,
        threads=threads,
        device=device,
        fp16=fp16,
        batch_size=batch_size,
        min_side=min_side,
        shard=parse_shard(shard) if shard else None,
        max_frames=max_frames,
        list_root=list_root,
        rgb=rgb,
    )
    try:
        summary = run_extract(inputs, options)
    except ExtractInterrupted as stop:  # SIGINT/SIGTERM: workers are stopped; say how far it got
        summary = stop.summary
    typer.echo(summary.report())
    raise typer.Exit(summary.exit_code)


@app.command()
def train(
    videos: list[str] | None = typer.Argument(
        None, metavar="VIDEOS...", help="Videos, folders of videos (recursive), frame folders, .txt lists."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: checkpoints, logs, final weights."),
    config: Path | None = typer.Option(None, "--config", help="Training config YAML (configs/default.yaml)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint"),
    steps: int | None = typer.Option(None, "--steps", help="Total optimizer steps."),
    synthetic_ratio: float | None = typer.Option(
        None, "--synthetic-ratio", help="Fraction of clips from the synthetic generator (0..1)."
    ),
    supervised_weight: float | None = typer.Option(
        None, "--supervised-weight", help="Weight of an EPE term on synthetic ground truth (default 0: off)."
    ),
    model: str | None = typer.Option(None, "--model", help="Model preset: small | large."),
    init: str | None = typer.Option(
        None,
        "--init",
        help="Fine-tune from these weights (.safetensors, or 'default' for the shipped model).",
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Clips per process and step."),
    crop: str | None = typer.Option(None, "--crop", help="Training crop WxH (multiples of 16), e.g. 256x256"),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    workers: int | None = typer.Option(None, "--workers", help="DataLoader worker processes."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N."),
    threads: int | None = typer.Option(None, "--threads", help="torch and OpenCV CPU threads per process."),
    precision: str | None = typer.Option(
        None, "--precision", help="auto (bf16 where the CPU/GPU runs it natively) | fp32 | bf16."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (data, init)."),
    log_every: int | None = typer.Option(None, "--log-every", help="Steps between log lines."),
    val_every: int | None = typer.Option(None, "--val-every", help="Steps between validation passes."),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints"),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    debug_dump: bool | None = typer.Option(None, "--debug-dump", hidden=True),
) -> None:
    """Train the motion network self-supervised on unlabeled videos (torchrun: DistributedDataParallel)."""
    from scattermotion.inputs import parse_size
    from scattermotion.training import resolve_config
    from scattermotion.training import train as run_training

    crop_size = None
    if crop is not None:
        width, height = parse_size(crop, "--crop")
        crop_size = (height, width)
    settings = resolve_config(
        out,
        sources=videos,
        config_path=config,
        resume=resume,
        steps=steps,
        synthetic_ratio=synthetic_ratio,
        supervised_weight=supervised_weight,
        model=model,
        init_weights=_weights_path(init) if init else None,
        batch_size=batch_size,
        crop_size=crop_size,
        lr=lr,
        num_workers=workers,
        device=device,
        threads=threads,
        precision=precision,
        seed=seed,
        log_every=log_every,
        val_every=val_every,
        checkpoint_every=checkpoint_every,
        debug_dump=debug_dump,
    )
    result = run_training(settings, out, resume=resume, progress=not no_progress)
    if result.final_weights is not None:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items())
        typer.echo(f"{result.step} steps in {result.train_time_s:.0f} s; weights: {result.final_weights}")
        if metrics:
            typer.echo(f"validation: {metrics}")


@app.command()
def evaluate(
    data: list[str] = typer.Option(
        ...,
        "--data",
        "-d",
        help="motorcycle | aloe | graf | synthetic-smooth | synthetic-sprites | frame-pairs | a dataset "
        "folder (Sintel, KITTI, Middlebury, FlyingChairs) | a video name (vtest, bikes, ...), file or frame "
        "folder. Repeat or comma-separate.",
    ),
    method: list[str] = typer.Option(
        ["ours"], "--method", "-m", help=methods_help(SCORED, "; several allowed.")
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Weights for ours (default: packaged)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full results (per pair too) here."),
    markdown: Path | None = typer.Option(None, "--markdown", help="Write the Markdown tables here."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="At most N pairs per set (spread evenly; videos: first N, default 16)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N (ours only)."),
    short_side: int | None = typer.Option(None, "--short-side", help="Resize video frames: short side N px."),
    sintel_pass: str | None = typer.Option(None, "--sintel-pass", help="Sintel: clean (default) | final."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch and OpenCV threads."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Evaluate motion methods side by side: EPE, accuracy, Fl-all, boundary EPE; reconstruction on video."""
    from scattermotion.evaluate import run_evaluation, split_list, to_markdown, write_report
    from scattermotion.io.atomic import check_output_file

    for path in (json_out, markdown):
        if path is not None:
            check_output_file(path, make_parents=True)
    set_threads(threads)
    report = run_evaluation(
        split_list(data),
        split_list(method),
        weights=weights,
        device=device,
        limit=limit,
        short_side=short_side,
        sintel_pass=sintel_pass,
        progress=None if quiet else (lambda line: typer.echo(line, err=True)),
    )
    write_report(report, json_out, markdown)
    typer.echo(to_markdown(report))
    if report.get("failures"):  # like every batch verb: the good sets are scored, the bad ones listed
        typer.echo(f"evaluate: {len(report['failures'])} set(s) skipped:", err=True)
        for failure in report["failures"]:
            typer.echo(f"  {failure['error']}", err=True)
        raise typer.Exit(1)


@app.command()
def benchmark(
    sizes: str = typer.Option(
        "224x224,340x256",
        "--sizes",
        help="Frame sizes WxH, comma-separated (width first like every size option; it used to be HxW).",
    ),
    threads: str = typer.Option("1,all", "--threads", help="Thread counts, comma-separated; all = cores."),
    methods: str = typer.Option(
        "ours,tvl1,dis,farneback",
        "--methods",
        help=methods_help(SPEED, " (ours-small, ours-large: random weights, speed only)."),
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Weights for ours (default: packaged)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results here (atomically)."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed passes per entry; the best is kept."),
    rounds: int = typer.Option(
        1, "--rounds", min=1, help="Runs of the whole sweep, one after the other; each entry's best is kept."
    ),
    pairs: int | None = typer.Option(None, "--pairs", min=1, help="Pairs per pass (default 12; TV-L1 3)."),
    device: str = typer.Option("auto", "--device", help="ours: auto (CUDA when present) | cpu | cuda[:N]."),
    in_process: bool = typer.Option(
        False, "--in-process", help="Measure in this process (faster; memory numbers then mix methods)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Speed and memory of ours and the classical baselines in one run (each method in a fresh process)."""
    from scattermotion.benchmark import (
        parse_methods,
        parse_sizes,
        parse_threads,
        run_benchmark,
        to_markdown,
    )
    from scattermotion.io.atomic import check_output_file, write_json_atomic

    if json_out is not None:
        check_output_file(json_out, make_parents=True)
    report = run_benchmark(
        parse_methods(methods),
        parse_sizes(sizes),
        parse_threads(threads),
        weights=weights,
        device=device,
        repeats=repeats,
        rounds=rounds,
        pairs=pairs,
        isolate=not in_process,
        progress=None if quiet else (lambda line: typer.echo(line, err=True)),
    )
    if json_out is not None:
        write_json_atomic(json_out, report, make_parents=True)
    typer.echo(to_markdown(report))


# Downstream action recognition: make-bench | train | eval (the commands live beside the library code).
app.add_typer(action_app, name="action")


@app.command()
def report(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="INPUT...",
        help="Video file, frame folder, image pair A.png,B.png, a built-in video (vtest, bikes, ...) or a "
        "ground-truth set (motorcycle, aloe, graf, synthetic-smooth, synthetic-sprites).",
    ),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Folder for index.html and assets/."),
    methods: list[str] = typer.Option(["ours,tvl1,dis"], "--methods", "-m", help=METHOD_HELP),
    weights: Path | None = typer.Option(None, "--weights", help="Weights for ours (default: packaged)."),
    pairs: int = typer.Option(8, "--pairs", min=1, help="Frame pairs per video (samples per set)."),
    start: int = typer.Option(0, "--start", min=0, help="First frame of each video."),
    max_side: int = typer.Option(384, "--max-side", min=16, help="Shrink frames to this long side."),
    eval_json: Path | None = typer.Option(
        None, "--eval-json", help="Add evaluate's tables and plots (benchmarks/results/evaluation.json)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N (ours only)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch and OpenCV threads."),
    title: str = typer.Option("scattermotion report", "--title", help="Page title."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Build an HTML page (no network needed) of our motion beside TV-L1 and DIS, with errors and scores."""
    from scattermotion.evaluate import split_list
    from scattermotion.report import ReportOptions, build_report

    set_threads(threads)
    options = ReportOptions(
        out_dir=out,
        methods=split_list(methods),
        weights=weights,
        pairs=pairs,
        start=start,
        max_side=max_side,
        eval_json=eval_json,
        device=device,
        title=title,
    )
    progress = None if quiet else (lambda line: typer.echo(line, err=True))
    result = build_report(inputs, options, progress=progress)
    typer.echo(str(result.index))
    if result.failures:
        typer.echo(f"report: {len(result.failures)} of {len(inputs)} inputs failed (see the page)", err=True)
        raise typer.Exit(1)


@app.command()
def export(
    onnx: Path = typer.Option(..., "--onnx", help="Output .onnx file (written atomically)."),
    weights: Path | None = typer.Option(None, "--weights", help="Weights to export (default: packaged)."),
    clip_len: int | None = typer.Option(
        None, "--clip-len", min=2, help="Frames per clip T fixed in the graph (default: the model's)."
    ),
    opset: int = typer.Option(17, "--opset", min=16, help="ONNX opset (>= 16: GridSample)."),
    random_init: bool = typer.Option(
        False, "--random-init", help="Export an untrained network of --preset (for testing only)."
    ),
    preset: str | None = typer.Option(None, "--preset", help="With --random-init: small | large."),
    check: bool = typer.Option(
        True, "--check/--no-check", help="Compare onnxruntime with PyTorch before writing the file."
    ),
) -> None:
    """Export the motion network to ONNX: frames BxTx3xHxW in [0,1] -> flows, confidence (dynamic B, H, W)."""
    import torch

    from scattermotion.estimator import DEFAULT_WEIGHTS
    from scattermotion.export import MissingExportDependency, export_onnx
    from scattermotion.model import build_motion_net, load_weights

    if random_init:
        if weights is not None:
            raise InputError(weights, "--weights and --random-init exclude each other")
        torch.manual_seed(0)
        try:
            model = build_motion_net(preset or "small")
        except ValueError as err:
            raise InputError(None, f"--preset: {err}") from None
    elif preset is not None:
        raise InputError(None, "--preset only applies with --random-init; pass --weights W to export weights")
    else:
        if weights is None and not DEFAULT_WEIGHTS.is_file():
            raise InputError(DEFAULT_WEIGHTS, "no packaged default weights in this install; pass --weights W")
        model = load_weights(weights or DEFAULT_WEIGHTS)
    try:
        path = export_onnx(model, onnx, clip_len=clip_len, opset=opset, check=check)
    except MissingExportDependency as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    frames = clip_len or model.config.clip_len
    typer.echo(
        f"{path}: ONNX opset {opset}; frames Bx{frames}x3xHxW float in [0,1] (H, W multiples of "
        f"{model.stride}) -> flows Bx{frames - 1}x2xHxW, confidence Bx{frames - 1}x1xHxW"
        + ("; checked against PyTorch" if check else "")
    )


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Folder for the MP4 and PNG strip."),
    video: Path | None = typer.Option(
        None, "--video", help="Any video or frame folder (default: vtest.avi)."
    ),
    frames: int = typer.Option(40, help="How many frames of the clip to use."),
    short_side: int = typer.Option(288, help="Resize so the short side has this many pixels."),
    method: str = typer.Option(
        "auto", help=methods_help(("auto", *SCORED), " (auto: ours, the default model).")
    ),
) -> None:
    """Estimate motion on a short real clip and write a colour-coded MP4 and PNG strip."""
    from scattermotion.demo import run_demo

    result = run_demo(out, source=video, frames=frames, short_side=short_side, method=method)
    typer.echo(f"motion method: {result.method}")
    typer.echo(f"{result.pairs} frame pairs at {result.pairs_per_second:.1f} pairs/s")
    typer.echo(f"side-by-side video: {result.video}")
    typer.echo(f"PNG strip:          {result.strip}")


def main() -> None:
    """Console entry point: bad input ends in one line naming the file, never a traceback."""
    try:
        app()
    except InputError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
