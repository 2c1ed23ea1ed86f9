"""Markdown of an action-recognition benchmark report (``benchmarks/action_recognition.py``), shared by the
benchmark and the README updater."""

from __future__ import annotations


def to_markdown(report: dict, heading: bool = True) -> str:
    """The report as Markdown: the setting in a paragraph, a table of streams, per-class accuracy."""
    bench = report["benchmark"]
    settings = bench["settings"]
    opts = report["options"]
    machine = report["machine"]
    lines = ["## Downstream motion classification (generated real-footage benchmark)", ""] if heading else []
    lines += [
        f"{len(bench['classes'])} classes; {bench['train_clips']} training / {bench['test_clips']} test "
        f"clips ({settings['frames']} frames, {settings['width']}x{settings['height']}), train and test "
        f"footage disjoint. Same TSN (compact CNN, {opts['segments']} segments x {opts['length']} maps, "
        f"{opts['epochs']} epochs) for every source; accuracy mean ± std (sample) over seeds "
        f"{opts['seeds']}. "
        f"Extraction: motion of one clip from decoded frames, {machine['extract_threads']} thread(s) for "
        f"every method on a {machine['cores']}-core machine ({machine['device']}), all in this run.",
        "",
        "| stream | test accuracy | extraction ms / clip | × TV-L1 time |",
        "|---|---|---|---|",
    ]
    for entry in report["streams"].values():
        extraction = entry.get("extraction", {})
        ms = f"{extraction['ms_per_clip']:.1f}" if "ms_per_clip" in extraction else "–"
        ratio = f"{extraction['fraction_of_tvl1']:.3f}" if "fraction_of_tvl1" in extraction else "–"
        acc = f"{entry['accuracy_mean']:.3f} ± {entry['accuracy_std']:.3f}"
        lines.append(f"| {entry['label']} | {acc} | {ms} | {ratio} |")
    for name, entry in report["fusion"].items():
        label = report["streams"][name]["label"]
        acc = f"{entry['accuracy_mean']:.3f} ± {entry['accuracy_std']:.3f}"
        lines.append(f"| {label} + RGB (late fusion, {opts['fusion_weight']:g} : 1) | {acc} | | |")
    classes = bench["classes"]
    lines += [
        "",
        "Per-class test accuracy (mean over seeds):",
        "",
        "| class | " + " | ".join(e["label"] for e in report["streams"].values()) + " |",
        "|---|" + "---|" * len(report["streams"]),
    ]
    for name in classes:
        cells = [f"{e['per_class_accuracy'][name]:.2f}" for e in report["streams"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
