"""The ``scattermotion`` console entry point. Thin: parses arguments and calls library functions."""

from __future__ import annotations

import sys

import typer

from scattermotion.errors import InputError

app = typer.Typer(
    help="Self-supervised dense motion from video: estimate, extract, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def _not_built(verb: str, issue: int) -> None:
    typer.echo(f"scattermotion {verb}: not built yet (tracked in issue {issue})", err=True)
    raise typer.Exit(2)


@app.command(context_settings=_PASSTHROUGH)
def flow(ctx: typer.Context) -> None:
    """Estimate motion between two images: scattermotion flow A.png B.png -o out.flo [--viz out.png]."""
    _not_built("flow", 5)


@app.command(context_settings=_PASSTHROUGH)
def extract(ctx: typer.Context) -> None:
    """Extract motion maps for videos, folders of videos, frame folders or list files."""
    _not_built("extract", 5)


@app.command(context_settings=_PASSTHROUGH)
def train(ctx: typer.Context) -> None:
    """Train the motion network self-supervised on unlabeled videos."""
    _not_built("train", 4)


@app.command(context_settings=_PASSTHROUGH)
def evaluate(ctx: typer.Context) -> None:
    """Evaluate a motion method on ground-truth sets and real video (EPE, accuracy, reconstruction)."""
    _not_built("evaluate", 6)


@app.command(context_settings=_PASSTHROUGH)
def benchmark(ctx: typer.Context) -> None:
    """Measure speed and memory of ours and the classical baselines in one run."""
    _not_built("benchmark", 6)


@app.command(context_settings=_PASSTHROUGH)
def action(ctx: typer.Context) -> None:
    """Downstream action recognition with the motion stream (train | eval)."""
    _not_built("action", 7)


@app.command(context_settings=_PASSTHROUGH)
def report(ctx: typer.Context) -> None:
    """Build a self-contained HTML page showing motion, baselines and metrics."""
    _not_built("report", 8)


@app.command(context_settings=_PASSTHROUGH)
def export(ctx: typer.Context) -> None:
    """Export the motion network (ONNX)."""
    _not_built("export", 5)


@app.command(context_settings=_PASSTHROUGH)
def demo(ctx: typer.Context) -> None:
    """Estimate motion on a short real clip and write a colour-coded MP4 and PNG strip."""
    _not_built("demo", 2)


def main() -> None:
    """Console entry point: bad input ends in one line naming the file, never a traceback."""
    try:
        app()
    except InputError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
