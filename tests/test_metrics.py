"""Flow and reconstruction metrics on hand-made cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scattermotion.metrics import (
    aggregate,
    along_error,
    backward_warp_image,
    flow_metrics,
    masked_ssim,
    motion_boundaries,
    reconstruction_metrics,
)


def test_known_end_point_error_and_accuracies():
    gt = np.zeros((10, 12, 2), np.float32)
    pred = gt.copy()
    pred[..., 0], pred[..., 1] = 3.0, 4.0  # EPE 5 everywhere
    pred[:5] = gt[:5] + np.array([0.5, 0.0], np.float32)  # top half: EPE 0.5
    m = flow_metrics(pred, gt)
    assert m["epe"] == pytest.approx((5 * 0.5 + 5 * 5.0) / 10)
    assert m["acc_1px"] == pytest.approx(0.5)
    assert m["acc_3px"] == pytest.approx(0.5)
    assert m["acc_5px"] == pytest.approx(0.5)  # 5 is not < 5
    assert m["fl_all"] == pytest.approx(0.5)  # EPE 5 > 3 px and > 5 % of |gt| = 0
    assert math.isnan(m["epe_boundary"])  # constant GT has no motion boundary
    assert "epe_noc" not in m


def test_fl_all_needs_both_absolute_and_relative_error():
    gt = np.zeros((4, 4, 2), np.float32)
    gt[..., 0] = 100.0
    pred = gt + np.array([4.0, 0.0], np.float32)  # 4 px > 3 px but < 5 % of 100 px
    assert flow_metrics(pred, gt)["fl_all"] == 0.0
    pred = gt + np.array([6.0, 0.0], np.float32)  # 6 px > 3 px and > 5 px
    assert flow_metrics(pred, gt)["fl_all"] == 1.0


def test_unknown_valid_and_occluded_pixels():
    gt = np.zeros((4, 4, 2), np.float32)
    pred = np.zeros_like(gt)
    pred[0] = 2.0  # row 0: EPE 2·√2
    gt[3] = np.nan  # unknown: never counted, whatever is predicted there
    pred[3] = 100.0
    occluded = np.zeros((4, 4), bool)
    occluded[0] = True
    m = flow_metrics(pred, gt, occluded=occluded)
    assert m["epe"] == pytest.approx(2 * math.sqrt(2) / 3)
    assert m["epe_occ"] == pytest.approx(2 * math.sqrt(2))
    assert m["epe_noc"] == pytest.approx(0.0)
    valid = np.ones((4, 4), bool)
    valid[0] = False
    assert flow_metrics(pred, gt, valid=valid)["epe"] == pytest.approx(0.0)
    nothing = flow_metrics(pred, np.full_like(gt, np.nan))
    assert math.isnan(nothing["epe"]) and math.isnan(nothing["fl_all"])


def test_motion_boundary_mask_and_boundary_epe():
    gt = np.zeros((8, 20, 2), np.float32)
    gt[:, 10:, 0] = 5.0  # a vertical motion edge between columns 9 and 10
    edge = motion_boundaries(gt, threshold=1.0, radius=0)
    assert edge[:, 9:11].all() and edge.sum() == 16
    band = motion_boundaries(gt, threshold=1.0, radius=2)
    assert band[:, 7:13].all() and band.sum() == 8 * 6
    ramp = np.zeros((8, 20, 2), np.float32)
    ramp[..., 0] = np.arange(20) * 0.5  # smooth zoom-like motion: no boundary
    assert not motion_boundaries(ramp, threshold=1.0, radius=2).any()

    pred = gt.copy()
    pred[:, 7:13, 0] += 2.0  # errors only in the boundary band
    m = flow_metrics(pred, gt, boundary_radius=2)
    assert m["epe_boundary"] == pytest.approx(2.0)
    assert m["epe"] == pytest.approx(2.0 * 6 / 20)


def test_boundary_ignores_unknown_neighbours():
    gt = np.zeros((6, 6, 2), np.float32)
    gt[:, 3:] = np.nan
    assert not motion_boundaries(gt, radius=0).any()


def test_reconstruction_with_exact_motion_is_perfect():
    rng = np.random.default_rng(0)
    scene = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    frame1, frame2 = scene[:32, :40], scene[2:34, 3:43]  # frame1(x, y) = frame2(x - 3, y - 2)
    flow = np.zeros((32, 40, 2), np.float32)
    flow[..., 0], flow[..., 1] = -3.0, -2.0
    exact = reconstruction_metrics(frame1, frame2, flow)
    assert exact["psnr"] == 100.0 and exact["ssim"] == pytest.approx(1.0)
    assert exact["valid_fraction"] == pytest.approx((37 * 30) / (40 * 32))
    zero = reconstruction_metrics(frame1, frame2, np.zeros_like(flow))
    assert zero["psnr"] < 15 and zero["ssim"] < 0.3 and zero["valid_fraction"] == 1.0


def test_psnr_value_and_warp_bilinear():
    frame1 = np.full((8, 8, 3), 100, np.uint8)
    frame2 = np.full((8, 8, 3), 110, np.uint8)
    m = reconstruction_metrics(frame1, frame2, np.zeros((8, 8, 2), np.float32))
    assert m["psnr"] == pytest.approx(10 * math.log10(255**2 / 100))
    ramp = np.tile(np.arange(8, dtype=np.uint8)[None, :, None] * 10, (4, 1, 1))
    flow = np.zeros((4, 8, 2), np.float32)
    flow[..., 0] = 0.25
    warped, valid = backward_warp_image(ramp, flow)
    np.testing.assert_allclose(
        warped[:, :7, 0], np.tile(np.arange(7) * 10 + 2.5, (4, 1))
    )  # exact, not 1/32-px rounded
    assert valid[:, :7].all() and not valid[:, 7].any()


def test_masked_ssim_ignores_pixels_outside_the_mask():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(24, 24, 3)).astype(np.float64)
    b = a.copy()
    b[:, 12:] = 255 - b[:, 12:]  # garbage on the right half
    mask = np.zeros((24, 24), bool)
    mask[:, :12] = True
    assert masked_ssim(a, b, mask) == pytest.approx(1.0)
    assert masked_ssim(a, b, np.ones_like(mask)) < 0.6


def test_aggregate():
    summary = aggregate(
        [{"epe": 1.0, "fl_all": 0.5}, {"epe": 3.0, "fl_all": math.nan}, {"epe": 2.0, "x": 7.0}]
    )
    assert summary["epe"] == pytest.approx(2.0)
    assert summary["fl_all"] == pytest.approx(0.5)
    assert summary["x"] == 7.0
    assert summary["samples"] == 3
    assert math.isnan(aggregate([{"epe": math.nan}])["epe"])


def test_along_error_is_signed_by_falling_short_or_overshooting():
    gt = np.zeros((2, 3, 2))
    gt[..., 0] = 4.0  # 4 px to the right
    gt[1, 2] = np.nan  # unknown
    gt[0, 2] = 0.0  # not moving: no direction to be short along
    pred = gt.copy()
    pred[0, 0] = (3.0, 5.0)  # 1 px short, 5 px off to the side: along -1
    pred[0, 1] = (6.0, 0.0)  # 2 px too far
    along = along_error(np.nan_to_num(pred), gt)
    assert along[0, 0] == pytest.approx(-1.0) and along[0, 1] == pytest.approx(2.0)
    assert along[1, 0] == 0.0 and np.isnan(along[0, 2]) and np.isnan(along[1, 2])
