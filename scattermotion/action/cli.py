"""``scattermotion action``: make the motion benchmark, train and evaluate TSN classifiers on any source.

Kept beside the library code it drives so the main CLI module only mounts it; heavy imports happen inside
the commands, so ``scattermotion --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from scattermotion.io.atomic import write_json_atomic
from scattermotion.methods import MOTION_SOURCES, methods_help
from scattermotion.threads import set_threads

action_app = typer.Typer(
    help="Downstream action recognition with the motion stream: make-bench | train | eval.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_DATA_HELP = (
    "Dataset folder: UCF101 / HMDB51 (class folders + split files), Kinetics (with --csv), rawframes "
    "(denseflow frame/flow folders) or class folders of videos; the generated benchmark is UCF101-like."
)
_LAYOUT_HELP = "auto | ucf101 | hmdb51 | kinetics | rawframes | folders."
_SOURCE_HELP = methods_help(
    MOTION_SOURCES,
    " | rgbdiff | rgb | precomputed[:DIR] (denseflow flow_x/flow_y folders; without DIR the videos' own "
    "rawframes folders).",
)


def _echo(line: str) -> None:
    typer.echo(line, err=True)


@action_app.command("make-bench")
def make_bench(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to create (UCF101 layout + split files)."),
    per_class: int = typer.Option(20, "--per-class", min=1, help="Training clips per class."),
    test_per_class: int = typer.Option(10, "--test-per-class", min=1, help="Test clips per class."),
    frames: int = typer.Option(16, "--frames", min=2, help="Frames per clip."),
    size: str = typer.Option("112x112", "--size", help="Clip size WxH."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the build is a function of its settings)."),
    classes: str | None = typer.Option(None, "--classes", help="Comma-separated subset of the 11 classes."),
) -> None:
    """Generate the real-footage motion benchmark: 11 motion classes, disjoint train/test footage.

    A second run with the same settings finds it and does nothing."""
    from scattermotion.action.motionbench import CLASSES, BenchSettings, make_motion_bench
    from scattermotion.inputs import parse_size

    width, height = parse_size(size, "--size")
    settings = BenchSettings(
        per_class=per_class,
        test_per_class=test_per_class,
        frames=frames,
        width=width,
        height=height,
        seed=seed,
        classes=tuple(c.strip() for c in classes.split(",")) if classes else CLASSES,
    )
    result = make_motion_bench(out, settings, progress=None)
    state = f"built in {result.seconds:.0f} s" if result.built else "already there (same settings)"
    typer.echo(f"{result.path}: {result.clips} clips, {len(settings.classes)} classes, {state}")


@action_app.command()
def train(
    data: Path = typer.Argument(..., help=_DATA_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: model.safetensors + model.json."),
    source: str = typer.Option("ours", "--source", "-s", help=_SOURCE_HELP),
    weights: Path | None = typer.Option(None, "--weights", help="ours: motion weights (default: packaged)."),
    layout: str = typer.Option("auto", "--layout", help=_LAYOUT_HELP),
    split: int = typer.Option(1, "--split", help="UCF101/HMDB51 split 1..3."),
    splits_dir: Path | None = typer.Option(None, "--splits-dir", help="Folder of the official split files."),
    csv_file: Path | None = typer.Option(None, "--csv", help="Kinetics annotation CSV."),
    train_subset: str = typer.Option("train", "--train-subset", help="Subset to train on."),
    test_subset: str = typer.Option("test", "--test-subset", help="Subset to evaluate (Kinetics: val)."),
    train_list: Path | None = typer.Option(
        None, "--train-list", help="rawframes/folders: 'path label' list."
    ),
    test_list: Path | None = typer.Option(None, "--test-list", help="rawframes/folders: test list."),
    bound: float = typer.Option(20.0, "--bound", help="Motion clipped at ±bound px, scaled to [-1, 1]."),
    short_side: int | None = typer.Option(None, "--short-side", help="Resize frames: short side N px."),
    min_side: int | None = typer.Option(
        None, "--min-side", help="ours: run the network on frames scaled up to this short side."
    ),
    crop: int | None = typer.Option(None, "--crop", help="Square crop (random in training, centre in test)."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    lr: float = typer.Option(1e-3, "--lr", help="AdamW peak learning rate (cosine decay)."),
    segments: int = typer.Option(3, "--segments", min=1, help="TSN segments per video in training."),
    test_segments: int = typer.Option(5, "--test-segments", min=1, help="Segments per video in testing."),
    length: int | None = typer.Option(None, "--length", min=1, help="Maps per snippet (5 motion, 1 RGB)."),
    backbone: str = typer.Option("compact", "--backbone", help="compact | resnet18|34|50 | module:factory."),
    width: int = typer.Option(32, "--width", min=1, help="Backbone width (compact 32; ResNet 64)."),
    end_to_end: bool = typer.Option(
        False, "--end-to-end", help="Fine-tune our motion network with the classifier (source ours)."
    ),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    threads: int | None = typer.Option(None, "--threads", help="torch and OpenCV threads."),
    cache: Path | None = typer.Option(None, "--cache", help="Motion cache folder (default: ~/.cache/...)."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Skip listed videos that are missing."),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="Evaluate on the test subset afterwards."),
) -> None:
    """Train a TSN classifier on motion maps (or RGB) from one source; evaluates on the test subset."""
    from scattermotion.action.engine import DataSpec, TrainOptions, train_and_test
    from scattermotion.action.sources import parse_source

    set_threads(threads)
    spec = parse_source(
        source, weights=weights, bound=bound, short_side=short_side, device=device, min_side=min_side
    )
    options = TrainOptions(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        segments=segments,
        test_segments=test_segments,
        length=length,
        crop=crop,
        backbone=backbone,
        width=width,
        seed=seed,
        device=device,
        workers=workers,
        end_to_end=end_to_end,
    )
    run = train_and_test(
        DataSpec(data, layout, split, splits_dir, csv_file, skip_missing, cache),
        spec,
        options,
        out,
        train_subset=train_subset,
        test_subset=test_subset,
        train_list=train_list,
        test_list=test_list,
        evaluate=evaluate,
        progress=_echo,
    )
    typer.echo(f"{run.path}: {run.kind} classifier, {run.classes} classes, {run.train_videos} videos")
    if run.test is not None:
        typer.echo(
            f"test accuracy {run.test.accuracy:.4f} (mean class {run.test.mean_class_accuracy:.4f}) "
            f"on {run.test_videos} videos"
        )


@action_app.command("eval")
def evaluate(
    data: Path = typer.Argument(..., help=_DATA_HELP),
    models: list[Path] = typer.Option(
        ...,
        "--model",
        "-m",
        help="A trained classifier (run folder or .safetensors); repeat to fuse streams.",
    ),
    fusion_weight: float = typer.Option(
        1.5, "--fusion-weight", help="Late fusion: weight of motion streams (RGB streams weigh 1)."
    ),
    layout: str = typer.Option("auto", "--layout", help=_LAYOUT_HELP),
    subset: str = typer.Option("test", "--subset", help="Subset to evaluate (Kinetics: val)."),
    split: int = typer.Option(1, "--split", help="UCF101/HMDB51 split 1..3."),
    splits_dir: Path | None = typer.Option(None, "--splits-dir", help="Folder of the official split files."),
    csv_file: Path | None = typer.Option(None, "--csv", help="Kinetics annotation CSV."),
    list_file: Path | None = typer.Option(None, "--list", help="rawframes/folders: 'path label' list."),
    source: str | None = typer.Option(
        None, "--source", help="Override where the first model's maps come from, e.g. precomputed:DIR."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    threads: int | None = typer.Option(None, "--threads", help="torch and OpenCV threads."),
    cache: Path | None = typer.Option(None, "--cache", help="Motion cache folder (default: ~/.cache/...)."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Skip listed videos that are missing."),
    json_out: Path | None = typer.Option(None, "--json", help="Write accuracies here (atomically)."),
) -> None:
    """Evaluate trained classifiers; with two or more, also their late fusion."""
    from scattermotion.action.engine import DataSpec, evaluate_models
    from scattermotion.io.atomic import check_output_file

    if json_out is not None:
        check_output_file(json_out, make_parents=True)
    set_threads(threads)
    run = evaluate_models(
        DataSpec(data, layout, split, splits_dir, csv_file, skip_missing, cache),
        models,
        subset=subset,
        list_file=list_file,
        source=source,
        fusion_weight=fusion_weight,
        device=device,
        workers=workers,
        progress=_echo,
    )
    for stream in run.streams:
        mean_class = stream.mean_class_accuracy
        typer.echo(f"{stream.source:12s} accuracy {stream.accuracy:.4f}  (mean class {mean_class:.4f})")
    if run.fusion is not None:
        typer.echo(
            f"{'fusion':12s} accuracy {run.fusion.accuracy:.4f}  "
            f"(weights {', '.join(f'{w:g}' for w in run.fusion.weights)})"
        )
    if json_out is not None:
        write_json_atomic(json_out, run.to_dict(), indent=2)
