"""``scattermotion report``: a real report (bikes.mp4 frames, the motorcycle stereo pair with ground truth, a
real image pair, one bad input, the evaluation harness's JSON) built through the CLI, its parts checked on
disk, and the page checked end to end in headless Chromium (pictures load, the clip decodes, no script or
console errors, a screenshot comes out). Plus the pieces: confidence beside motion, the shared colour
radius, reconstruction error, flow resizing, and one-line errors for bad input.

Everything runs at tiny sizes (long side 64-96 px) with a tiny random network, so the file takes seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from tiny_models import save_tiny_weights
from typer.testing import CliRunner

from scattermotion import cli
from scattermotion import estimator as estimator_module
from scattermotion.cli import app
from scattermotion.clipsets import resize_flow, resolve_set
from scattermotion.data import fetched
from scattermotion.errors import InputError
from scattermotion.estimator import get_estimator
from scattermotion.evaluate import run_evaluation, write_report
from scattermotion.io.visualize import sequence_max_flow
from scattermotion.report import ReportOptions, build_report
from scattermotion.report.analysis import MethodResult, analyse_input, colour_radius, prepare_methods
from scattermotion.report.confidence import estimate_with_confidence
from scattermotion.report.images import reconstruction_error

MAX_SIDE = 96
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")
CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_INSTALL_TIMEOUT_S = 600


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    return save_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny.safetensors", clip_len=3)


@pytest.fixture(scope="module")
def evaluation_json(tmp_path_factory) -> Path:
    """A real (small) harness run: DIS and zero motion on the motorcycle pair."""
    path = tmp_path_factory.mktemp("evaluation") / "evaluation.json"
    write_report(run_evaluation(["motorcycle"], ["dis", "zero"]), json_path=path)
    return path


@pytest.fixture(scope="module")
def image_pair() -> tuple[Path, Path]:
    return fetched.frame_pairs()["RubberWhale"]


@pytest.fixture(scope="module")
def built_report(tmp_path_factory, tiny_weights, evaluation_json, image_pair):
    """The report of four inputs (one missing) through the CLI: (folder, CLI result)."""
    out = tmp_path_factory.mktemp("report") / "report"
    missing = str(out.parent / "missing.avi")
    args = [
        "report", "bikes", "motorcycle", f"{image_pair[0]},{image_pair[1]}", missing,
        "--pairs", "3", "--max-side", str(MAX_SIDE), "--weights", str(tiny_weights),
        "--eval-json", str(evaluation_json), "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    return out, result, missing


class _Assets(HTMLParser):
    """Every src / poster / href of the page, and the tags seen."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.videos: list[str] = []
        self.posters: list[str] = []
        self.links: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "video":
            self.videos.append(attrs["src"])
            self.posters.append(attrs["poster"])
        elif tag in ("a", "link", "script") and (attrs.get("href") or attrs.get("src")):
            self.links.append(attrs.get("href") or attrs.get("src"))


def parse_page(folder: Path) -> tuple[str, _Assets]:
    html = (folder / "index.html").read_text()
    parser = _Assets()
    parser.feed(html)
    return html, parser


def video_frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


# ---- the whole report --------------------------------------------------------------------------------------


def test_cli_report_shows_every_input_and_lists_the_failure(built_report, evaluation_json):
    out, result, missing = built_report
    assert result.exit_code == 1, result.output  # one input failed; the others finished
    assert "1 of 4 inputs failed" in result.output
    html, page = parse_page(out)
    for title in ("bikes", "motorcycle", "RubberWhale/frame10 → frame11", "Evaluation harness"):
        assert title in html
    assert missing in html and "no such file or folder" in html  # the failure is listed on the page
    # Stills of every method (ours, TV-L1, DIS), the reconstruction errors, our confidence.
    for kind in ("motion", "error"):
        for method in ("ours", "tvl1", "dis"):
            assert sum(f"-{kind}-{method}.png" in src for src in page.images) == 3, (kind, method)
    assert sum("-confidence-ours.png" in src for src in page.images) == 3
    assert sum("ground-truth.png" in src for src in page.images) == 1  # only the motorcycle has it
    assert "EPE px" in html and "PSNR dB" in html and "ms/pair" in html
    assert html.count("<svg") == 3 + 1  # a speed plot per input, one from the harness JSON (one set)
    assert "ours (tiny.safetensors)" in html
    # Everything is local: no URL leaves the folder (the SVG namespace is an identifier, not a request).
    assert not [u for u in page.images + page.videos + page.posters + page.links if "//" in u]
    assert all(src.startswith("assets/") for src in page.images + page.videos)


def test_report_assets_are_real_pictures_and_clips(built_report):
    out, _, _ = built_report
    _, page = parse_page(out)
    for src in set(page.images + page.posters):
        image = cv2.imread(str(out / src))
        assert image is not None and image.size > 0, src
    frames = {"bikes": 4, "motorcycle": 2, "rubberwhale": 2}  # one video frame per input frame
    assert len(page.videos) == 3
    for src in page.videos:
        name = next(k for k in frames if k in src)
        assert video_frame_count(out / src) == frames[name], src
    assert not list(out.rglob(".*.tmp*")), "temporary files left behind"


def test_all_inputs_failing_raises_one_line_error_and_writes_no_page(
    tmp_path, tiny_weights, monkeypatch, capsys
):
    out = tmp_path / "report"
    missing = tmp_path / "nothing.mp4"
    monkeypatch.setattr(sys, "argv", ["scattermotion", "report", str(missing), "--out", str(out), "-q"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0] and err[0].startswith("error: ")
    assert not (out / "index.html").exists()
    assert not out.exists()  # a failed report used to leave report/assets/ behind


@pytest.mark.parametrize(
    "problem",
    ["single-image", "different-sizes", "bad-eval-json", "unknown-method", "weights-without-ours"],
)
def test_bad_input_names_the_file(tmp_path, image_pair, tiny_weights, problem):
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((20, 30, 3), np.uint8))
    options = ReportOptions(tmp_path / "out", max_side=MAX_SIDE, weights=tiny_weights)
    inputs = [str(image_pair[0])]
    expected = str(image_pair[0])
    if problem == "different-sizes":
        inputs, expected = [f"{image_pair[0]},{small}"], str(small)
    elif problem == "bad-eval-json":
        options.eval_json = tmp_path / "bad.json"
        options.eval_json.write_text("{not json")
        expected = str(options.eval_json)
    elif problem == "unknown-method":
        options.methods, expected = ("dis", "raft"), "raft"
    elif problem == "weights-without-ours":
        options.methods, expected = ("dis",), str(tiny_weights)
    with pytest.raises(InputError) as info:
        build_report(inputs, options)
    assert expected in str(info.value) and "\n" not in str(info.value)


# ---- the pieces -------------------------------------------------------------------------------------------


def test_confidence_comes_from_the_same_pass_as_the_motion(tiny_weights):
    estimator = get_estimator("ours", tiny_weights)
    frames = resolve_set("tree", limit=4, max_side=64).clips[0].frames  # 5 frames: 2 windows of 3
    flows, confidence = estimate_with_confidence(estimator, frames)
    np.testing.assert_array_equal(flows, estimator.estimate_clip(frames))
    assert confidence.shape == flows.shape[:3]
    assert confidence.min() >= 0.0 and confidence.max() <= 1.0 and confidence.std() > 0


def test_ground_truth_scores_and_reconstruction_on_real_pairs():
    methods = prepare_methods(["dis", "zero"])
    motorcycle = analyse_input(resolve_set("motorcycle", max_side=MAX_SIDE), methods)
    dis, zero = motorcycle.results
    truth = motorcycle.input.ground_truth
    # Zero motion's EPE is the mean ground-truth length; DIS finds most of the (stereo) motion.
    magnitude = np.linalg.norm(truth[0][np.isfinite(truth[0]).all(axis=2)], axis=1).mean()
    assert zero.summary()["epe"] == pytest.approx(magnitude, rel=1e-6)
    assert dis.summary()["epe"] < 0.5 * zero.summary()["epe"]
    assert motorcycle.max_flow == pytest.approx(sequence_max_flow(truth))  # the colours follow the truth
    # Without ground truth: warping with DIS's motion reconstructs the next frame of a camera pan far
    # better than no motion does.
    bikes = analyse_input(resolve_set("bikes", limit=3, max_side=MAX_SIDE), methods)
    assert len(bikes.pairs) == 3 and bikes.input.ground_truth is None
    assert bikes.results[0].summary()["psnr"] > bikes.no_motion["psnr"] + 5.0


def test_video_input_is_split_at_scene_cuts():
    report_input = resolve_set("bikes", limit=4, start=28, max_side=64)  # bikes.mp4 cuts at frame 30
    assert [len(clip.frames) for clip in report_input.clips] == [2, 3]
    assert report_input.pair_count == 3 and "30" in report_input.notes[0]
    assert max(report_input.size) == 64


def test_frame_folder_and_image_pair_inputs(tmp_path, image_pair):
    folder = tmp_path / "frames"
    folder.mkdir()
    base = cv2.imread(str(image_pair[0]))
    for i in range(3):
        cv2.imwrite(str(folder / f"img_{i}.png"), base[10 + i : 90 + i, 20:140])
    frames = resolve_set(str(folder), max_side=MAX_SIDE)
    assert frames.name == "frames" and [len(c.frames) for c in frames.clips] == [3]
    assert frames.size == (96, 64)  # 120x80 shrunk to a long side of 96
    pair = resolve_set(f"{image_pair[0]},{image_pair[1]}", max_side=MAX_SIDE)
    assert pair.pair_count == 1 and pair.name == "RubberWhale/frame10 → frame11"
    with pytest.raises(InputError, match="two image files"):
        resolve_set(f"{image_pair[0]},{image_pair[1]},{image_pair[1]}")


def test_colour_radius_is_shared_and_robust_to_one_wild_method():
    def result(name: str, length: float) -> MethodResult:
        flow = np.zeros((8, 8, 2), np.float32)
        flow[..., 0] = length
        return MethodResult(name, name, [flow], 1.0, [{}])

    results = [result("a", 2.0), result("b", 3.0), result("wild", 500.0)]
    assert colour_radius(None, results) == pytest.approx(3.0)
    truth = [np.full((8, 8, 2), 4.0, np.float32)]
    assert colour_radius(truth, results) == pytest.approx(np.hypot(4.0, 4.0))


def test_reconstruction_error_is_zero_for_the_true_shift():
    rng = np.random.default_rng(0)
    frame2 = cv2.GaussianBlur(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), (0, 0), 1.0)
    frame1 = np.roll(frame2, shift=(-2, -3), axis=(0, 1))  # pixel (x, y) of frame 1 is (x+3, y+2) in frame 2
    flow = np.zeros((40, 50, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, 2.0
    error, valid = reconstruction_error(frame1, frame2, flow)
    assert valid.sum() == (40 - 2) * (50 - 3)  # the last rows and columns sample outside frame 2
    assert error[valid].max() < 1e-9
    still, _ = reconstruction_error(frame1, frame2, np.zeros_like(flow))
    assert still.mean() > 5.0


def test_resize_flow_rescales_vectors_and_keeps_unknown_apart():
    flow = np.zeros((60, 100, 2), np.float32)
    flow[..., 0], flow[..., 1] = 4.0, -2.0
    flow[:, :10] = np.nan
    small = resize_flow(flow, (50, 30))
    assert small.shape == (30, 50, 2)
    assert np.isnan(small[:, :5]).all()
    np.testing.assert_allclose(small[:, 5:], np.broadcast_to([2.0, -1.0], (30, 45, 2)), rtol=1e-6)


def test_a_missing_default_model_is_an_error_naming_it(tmp_path, monkeypatch):
    """The model ships with the package, so ours is never silently left out: a broken install says so."""
    monkeypatch.setattr(estimator_module, "DEFAULT_WEIGHTS", tmp_path / "absent.safetensors")
    with pytest.raises(InputError, match="absent.safetensors: weights file not found"):
        prepare_methods(["ours", "dis"])


# ---- end to end in a real browser -------------------------------------------------------------------------


def _find_chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary; installed from Debian with apt-get when missing and running as root. Skips only
    when it still cannot be had (no root, no apt, no package)."""
    found = _find_chromium()
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
        for command in (install, ["apt-get", "update"], install):
            try:
                subprocess.run(command, env=env, capture_output=True, timeout=CHROMIUM_INSTALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                break
            found = _find_chromium()
            if found:
                break
    if found is None:
        pytest.skip("chromium is not installed and could not be installed (apt-get install chromium)")
    return found


def run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def page_check(binary: str, profile: Path, index: Path) -> tuple[dict[str, str], str]:
    """Load the page, let its inline check run (virtual time: no real waiting), and read the hidden marker
    it writes into the DOM; also return Chromium's log (console messages land there)."""
    done = run_chromium(
        binary, profile, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
        index.resolve().as_uri(),
    )  # fmt: skip
    marker = re.search(r'<div id="page-check"([^>]*)>', done.stdout)
    assert marker, f"the page's check never finished:\n{done.stderr[-2000:]}"
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', marker.group(1))), done.stderr


def test_page_loads_in_headless_chromium_without_errors(chromium, built_report, tmp_path):
    out, _, _ = built_report
    check, log = page_check(chromium, tmp_path / "profile", out / "index.html")
    assert check["done"] == "1"
    assert int(check["images"]) >= 20 and check["images-loaded"] == check["images"]
    assert check["videos"] == "3" and check["videos-playable"] == "3"  # Chromium decodes our H.264 clips
    assert check["errors"] == "0"
    assert "Uncaught" not in log and not re.search(r"CONSOLE.*error", log, re.IGNORECASE)


def test_page_check_catches_a_missing_picture(chromium, built_report, tmp_path):
    out, _, _ = built_report
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    _, page = parse_page(broken)
    (broken / page.images[0]).unlink()
    check, _ = page_check(chromium, tmp_path / "profile", broken / "index.html")
    assert int(check["images-loaded"]) == int(check["images"]) - 1
    assert int(check["errors"]) >= 1


def test_screenshot_of_the_page(chromium, built_report, tmp_path):
    out, _, _ = built_report
    shot = tmp_path / "shot.png"
    run_chromium(
        chromium, tmp_path / "profile", "--hide-scrollbars", "--window-size=1200,1600",
        "--virtual-time-budget=10000", f"--screenshot={shot}", (out / "index.html").resolve().as_uri(),
    )  # fmt: skip
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1600, 1200)
    # A rendered page with photos and colour maps, not a blank or error page: many distinct colours.
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 1000 and image.std() > 20
