"""Ground-truth sets: the real evaluation pairs (photometric check of their scale) and the standard dataset
layouts on tiny fixtures built in exactly their on-disk form."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from scattermotion.data import flowsets
from scattermotion.data.fetched import ensure_data, homography_pair
from scattermotion.data.flowsets import (
    FLOW_SETS,
    FlowSample,
    homography_flow,
    load_dataset_folder,
    load_flow_set,
    load_flying_chairs,
    load_homography,
    load_kitti,
    load_middlebury,
    load_sintel,
    load_stereo,
    read_homography,
)
from scattermotion.errors import InputError
from scattermotion.io.flo import write_flo
from scattermotion.io.kitti import write_kitti
from scattermotion.metrics import backward_warp_image


@pytest.fixture(scope="module", autouse=True)
def _data():
    ensure_data()


def _photometric_error(sample: FlowSample, flow: np.ndarray) -> float:
    """Mean |frame1 - frame2 warped back by flow| over pixels with known GT whose sample point is inside."""
    warped, inside = backward_warp_image(sample.frame2, np.nan_to_num(flow))
    keep = inside & sample.valid
    return float(np.abs(warped - sample.frame1).mean(axis=2)[keep].mean())


@pytest.mark.parametrize(("name", "shape"), [("motorcycle", (250, 370)), ("aloe", (370, 427))])
def test_stereo_pairs_at_reference_scale(name, shape):
    sample = load_stereo(name)
    assert sample.frame1.shape == shape + (3,) and sample.frame1.dtype == np.uint8
    assert sample.frame2.shape == shape + (3,)
    assert sample.flow.shape == shape + (2,) and sample.flow.dtype == np.float32
    valid = sample.valid
    assert 0.7 < valid.mean() < 1.0  # unknown disparities stay unknown after downscaling
    assert np.all(sample.flow[valid][:, 1] == 0)
    assert np.all(sample.flow[valid][:, 0] < 0)  # left-image points are further left in the right image
    gt = _photometric_error(sample, sample.flow)
    assert gt < 0.5 * _photometric_error(sample, np.zeros_like(sample.flow))
    # The disparity scale is right: 10 % too short or too long is clearly worse.
    assert gt < 0.8 * _photometric_error(sample, sample.flow * 0.9)
    assert gt < 0.8 * _photometric_error(sample, sample.flow * 1.1)


def test_stereo_scale_scales_the_disparity():
    half = load_stereo("motorcycle", scale=0.5)
    quarter = load_stereo("motorcycle", scale=0.25)
    assert quarter.flow.shape[:2] == (125, 185)
    ratio = np.nanmedian(half.flow[..., 0]) / np.nanmedian(quarter.flow[..., 0])
    assert ratio == pytest.approx(2.0, rel=0.05)


def test_graf_homography_flow():
    sample = load_homography("graf")
    assert sample.frame1.shape == (640, 800, 3)
    valid = sample.valid
    assert 0.9 < valid.mean() < 1.0  # where graf1 maps outside graf3 the GT is NaN
    assert np.nanmax(np.linalg.norm(sample.flow, axis=2)) > 200  # very large motion
    assert _photometric_error(sample, sample.flow) < 0.5 * _photometric_error(
        sample, np.zeros_like(sample.flow)
    )


def test_graf_downscaled_matches_full_resolution_homography():
    half = load_homography("graf", scale=0.5)
    assert half.frame1.shape == (320, 400, 3)
    homography = read_homography(homography_pair("graf")[2])
    # Low-res pixel (x, y) is full-res point (2x + 0.5, 2y + 0.5); its motion halves.
    ys, xs = np.mgrid[0:320:37, 0:400:41].astype(np.float64)
    full = np.stack((2 * xs + 0.5, 2 * ys + 0.5, np.ones_like(xs)), axis=2) @ homography.T
    expected = (full[..., :2] / full[..., 2:] - np.stack((2 * xs + 0.5, 2 * ys + 0.5), axis=2)) / 2
    got = half.flow[ys.astype(int), xs.astype(int)]
    known = np.isfinite(got).all(axis=2)
    assert known.mean() > 0.8
    np.testing.assert_allclose(got[known], expected[known], atol=1e-3)


def test_homography_reader_and_flow(tmp_path):
    text = tmp_path / "H.txt"
    text.write_text("1 0 5\n0 1 -2\n0 0 1\n")
    matrix = read_homography(text)
    flow = homography_flow(matrix, (4, 10), (4, 10))
    np.testing.assert_array_equal(flow[2, 0], [5, -2])
    np.testing.assert_array_equal(flow[3, 4], [5, -2])
    assert np.isfinite(flow[2:, :5]).all() and np.isnan(flow[2:, 5:]).all()  # x + 5 > 9 leaves the image
    assert np.isnan(flow[:2]).all()  # y - 2 < 0
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3")
    with pytest.raises(InputError, match="3×3"):
        read_homography(bad)


def test_registry(monkeypatch):
    with pytest.raises(ValueError, match="motorcycle, aloe, graf"):
        load_flow_set("chairs")
    assert load_flow_set("aloe")[0].flow.shape == (370, 427, 2)
    # The synthetic sets are plumbed through the registry (shrunk here to keep the test fast).
    monkeypatch.setitem(
        flowsets.SYNTHETIC_SETS,
        "synthetic-sprites",
        dict(seed=1, count=2, size=(32, 48), clip_len=3, kind="sprites", max_disp=6.0),
    )
    samples = load_flow_set("synthetic-sprites")
    assert len(samples) == 4  # 2 clips × 2 pairs
    assert samples[1].name == "synthetic-sprites/000_01"
    assert samples[0].occluded is not None and samples[0].occluded.shape == (32, 48)
    assert np.array_equal(samples[0].frame2, samples[1].frame1)
    assert set(FLOW_SETS) >= {"synthetic-smooth", "synthetic-sprites", "motorcycle", "aloe", "graf"}


# ---- standard layouts on tiny fixtures ------------------------------------------------------------


def _image(seed: int, shape=(6, 8)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape + (3,), dtype=np.uint8)


def _write_rgb(path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _flow(seed: int, shape=(6, 8)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3, 3, size=shape + (2,)).astype(np.float32)


def test_sintel_layout(tmp_path):
    for scene in ("alley_1", "market_2"):
        for i in (1, 2, 3):
            _write_rgb(tmp_path / "training" / "clean" / scene / f"frame_{i:04d}.png", _image(i))
        for i in (1, 2):
            (tmp_path / "training" / "flow" / scene).mkdir(parents=True, exist_ok=True)
            write_flo(tmp_path / "training" / "flow" / scene / f"frame_{i:04d}.flo", _flow(10 * i))
    occlusion = np.zeros((6, 8), np.uint8)
    occlusion[2:4, 3:6] = 255
    (tmp_path / "training" / "occlusions" / "alley_1").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "training" / "occlusions" / "alley_1" / "frame_0002.png"), occlusion)

    data = load_sintel(tmp_path)
    assert len(data) == 4
    assert [f.name for f in data.files] == [
        "alley_1/frame_0001", "alley_1/frame_0002", "market_2/frame_0001", "market_2/frame_0002",
    ]  # fmt: skip
    sample = data[1]
    np.testing.assert_array_equal(sample.frame1, _image(2))  # RGB order kept
    np.testing.assert_array_equal(sample.frame2, _image(3))
    np.testing.assert_array_equal(sample.flow, _flow(20))
    np.testing.assert_array_equal(sample.occluded, occlusion > 0)
    assert data[0].occluded is None  # no mask for that frame
    with pytest.raises(InputError, match="final"):
        load_sintel(tmp_path, pass_name="final")


@pytest.mark.parametrize("year", [2015, 2012])
def test_kitti_layout(tmp_path, year):
    base = tmp_path / "training"
    image_dir = base / ("image_2" if year == 2015 else "colored_0")
    for index in (0, 1):
        _write_rgb(image_dir / f"{index:06d}_10.png", _image(index))
        _write_rgb(image_dir / f"{index:06d}_11.png", _image(index + 100))
        flow = np.round(_flow(index) * 64) / 64  # KITTI stores 1/64 px
        valid = np.ones((6, 8), bool)
        valid[0, 0] = False
        noc = valid.copy()
        noc[3, 3:5] = False  # visible in frame 1 only: occluded
        (base / "flow_occ").mkdir(parents=True, exist_ok=True)
        (base / "flow_noc").mkdir(parents=True, exist_ok=True)
        write_kitti(base / "flow_occ" / f"{index:06d}_10.png", flow, valid)
        write_kitti(base / "flow_noc" / f"{index:06d}_10.png", flow, noc)
    if year == 2012:  # the grey image_0 folder beside colored_0 must not be picked
        _write_rgb(base / "image_0" / "000000_10.png", _image(55))

    data = load_dataset_folder("kitti", tmp_path, year=year)
    assert len(data) == 2 and data.files[1].name == "000001"
    sample = data[1]
    np.testing.assert_array_equal(sample.frame1, _image(1))
    np.testing.assert_array_equal(sample.frame2, _image(101))
    assert np.isnan(sample.flow[0, 0]).all()
    np.testing.assert_allclose(sample.flow[1:], np.round(_flow(1) * 64)[1:] / 64, atol=1e-6)
    expected_occluded = np.zeros((6, 8), bool)
    expected_occluded[3, 3:5] = True
    np.testing.assert_array_equal(sample.occluded, expected_occluded)


def test_kitti_2012_grey_only(tmp_path):
    base = tmp_path / "training"
    grey = np.random.default_rng(0).integers(0, 256, size=(6, 8), dtype=np.uint8)
    (base / "image_0").mkdir(parents=True)
    cv2.imwrite(str(base / "image_0" / "000000_10.png"), grey)
    cv2.imwrite(str(base / "image_0" / "000000_11.png"), grey)
    (base / "flow_occ").mkdir()
    write_kitti(base / "flow_occ" / "000000_10.png", np.zeros((6, 8, 2), np.float32))
    sample = load_kitti(tmp_path, year=2012)[0]
    assert sample.frame1.shape == (6, 8, 3)
    np.testing.assert_array_equal(sample.frame1[..., 1], grey)
    assert sample.occluded is None


def test_middlebury_layout(tmp_path):
    for seq in ("Grove2", "Venus"):
        _write_rgb(tmp_path / "other-data" / seq / "frame10.png", _image(len(seq)))
        _write_rgb(tmp_path / "other-data" / seq / "frame11.png", _image(len(seq) + 1))
        (tmp_path / "other-gt-flow" / seq).mkdir(parents=True)
        flow = _flow(len(seq))
        flow[0, 0] = 1e10  # Middlebury's "unknown"
        write_flo(tmp_path / "other-gt-flow" / seq / "flow10.flo", flow)
    _write_rgb(tmp_path / "other-data" / "Army" / "frame10.png", _image(9))  # no GT: not a sample
    data = load_middlebury(tmp_path)
    assert [f.name for f in data.files] == ["Grove2", "Venus"]
    sample = data[1]
    np.testing.assert_array_equal(sample.frame1, _image(5))
    assert np.isnan(sample.flow[0, 0]).all()
    np.testing.assert_array_equal(sample.flow[1:], _flow(5)[1:])


def test_flying_chairs_layout_and_split(tmp_path):
    data_dir = tmp_path / "data"
    for index in (1, 2, 3):
        _write_rgb(data_dir / f"{index:05d}_img1.ppm", _image(index))
        _write_rgb(data_dir / f"{index:05d}_img2.ppm", _image(index + 10))
        write_flo(data_dir / f"{index:05d}_flow.flo", _flow(index))
    (tmp_path / "FlyingChairs_train_val.txt").write_text("1\n2\n1\n")
    everything = load_flying_chairs(tmp_path)
    assert len(everything) == 3
    assert [f.name for f in load_flying_chairs(tmp_path, split="train").files] == ["00001", "00003"]
    val = load_flying_chairs(tmp_path, split="val")
    assert len(val) == 1
    sample = val[0]
    np.testing.assert_array_equal(sample.frame1, _image(2))
    np.testing.assert_array_equal(sample.frame2, _image(12))
    np.testing.assert_array_equal(sample.flow, _flow(2))
    assert len(load_flying_chairs(data_dir)) == 3  # the data folder itself works too


def test_bad_folders_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_dataset_folder("sintel", tmp_path / "missing")
    with pytest.raises(InputError, match="no samples found"):
        load_dataset_folder("middlebury", tmp_path)
    with pytest.raises(ValueError, match="sintel, kitti"):
        load_dataset_folder("things", tmp_path)
    # A flow whose size differs from its frames is reported, naming the file.
    _write_rgb(tmp_path / "data" / "00001_img1.ppm", _image(1))
    _write_rgb(tmp_path / "data" / "00001_img2.ppm", _image(2))
    write_flo(tmp_path / "data" / "00001_flow.flo", _flow(1, shape=(5, 8)))
    with pytest.raises(InputError, match="00001_flow.flo: flow is"):
        load_flying_chairs(tmp_path)[0]
