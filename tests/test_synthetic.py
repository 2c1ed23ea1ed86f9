"""The synthetic generator: exact ground truth, determinism, displacement calibration, occlusion."""

from __future__ import annotations

import numpy as np
import pytest

from scattermotion.data.fetched import ensure_data
from scattermotion.data.nuisance import NuisanceConfig, apply_nuisances
from scattermotion.data.synthetic import SyntheticClips, WarpedPlane
from scattermotion.metrics import backward_warp_image, motion_boundaries

SIZE = (96, 128)


@pytest.fixture(scope="module", autouse=True)
def _data():
    ensure_data()


def _reconstruction_error(
    frame0: np.ndarray, frame1: np.ndarray, flow: np.ndarray, keep: np.ndarray
) -> float:
    warped, _ = backward_warp_image(frame1, flow)
    return float(np.abs(warped - frame0).mean(axis=2)[keep].mean())


def _comparable_pixels(flow: np.ndarray, occluded: np.ndarray) -> np.ndarray:
    """Non-occluded pixels away from the image border and motion boundaries (anti-aliased sprite edges)."""
    keep = ~occluded & ~motion_boundaries(flow, threshold=0.5, radius=2)
    keep[:2], keep[-2:], keep[:, :2], keep[:, -2:] = False, False, False, False
    return keep


@pytest.mark.parametrize(
    "kind, fast",
    [("smooth", False), ("sprites", False), ("smooth", True), ("sprites", True), ("footage", True)],
)
def test_ground_truth_is_exact(kind, fast):
    clips = SyntheticClips(
        seed=7, count=3, size=SIZE, clip_len=3, kind=kind, max_disp=12.0, fast=fast,
        nuisances=NuisanceConfig.none(),
    )  # fmt: skip
    for frames, flows, occluded in clips:
        for t in range(len(flows)):
            keep = _comparable_pixels(flows[t], occluded[t])
            assert keep.mean() > 0.5
            exact = _reconstruction_error(frames[t], frames[t + 1], flows[t], keep)
            zero = _reconstruction_error(frames[t], frames[t + 1], np.zeros_like(flows[t]), keep)
            assert exact < 2.0  # grey levels: what is left is bilinear resampling of frame t+1
            assert exact < 0.6 * zero
            # A ground truth off by 0.2 px, or 10 % too long, reconstructs worse: the flow is exact.
            for offset in ((0.2, 0.0), (-0.2, 0.0), (0.0, 0.2), (0.0, -0.2)):
                shifted = flows[t] + np.array(offset, dtype=np.float32)
                assert _reconstruction_error(frames[t], frames[t + 1], shifted, keep) > exact
            assert _reconstruction_error(frames[t], frames[t + 1], flows[t] * 1.1, keep) > exact


def test_non_rigid_field_is_inverted_exactly():
    clips = SyntheticClips(seed=3, count=2, size=SIZE, clip_len=3, kind="smooth", max_disp=20.0)
    ys, xs = np.mgrid[0 : SIZE[0], 0 : SIZE[1]].astype(np.float64)
    pixels = np.stack((xs.ravel(), ys.ravel()), axis=1)
    for index in range(len(clips)):
        background = clips.scene(index).layers[0]
        assert isinstance(background, WarpedPlane)
        assert 0 < background.waves.lipschitz() < 1  # non-rigid part present and invertible
        for t in range(3):
            for fast in (False, True):
                back = background.from_canonical(background.to_canonical(pixels, t, fast=fast), t)
                assert np.abs(back - pixels).max() < 1e-6


def test_same_seed_same_clip_and_different_seed_differs():
    a = SyntheticClips(seed=11, count=3, size=(48, 64), clip_len=2)
    b = SyntheticClips(seed=11, count=3, size=(48, 64), clip_len=2)
    first = b[2]  # access order must not matter
    for x, y in zip(a[2], first, strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[-1].frames, first.frames)
    assert not np.array_equal(a[1].frames, first.frames)
    c = SyntheticClips(seed=12, count=3, size=(48, 64), clip_len=2)
    assert not np.array_equal(c[2].frames, first.frames)


def test_shapes_types_and_indexing():
    clips = SyntheticClips(seed=1, count=2, size=(40, 56), clip_len=4, kind="sprites")
    frames, flows, occluded = clips[0]
    assert frames.shape == (4, 40, 56, 3) and frames.dtype == np.uint8
    assert flows.shape == (3, 40, 56, 2) and flows.dtype == np.float32
    assert occluded.shape == (3, 40, 56) and occluded.dtype == bool
    assert np.isfinite(flows).all()
    assert len(clips) == 2 and len(list(clips)) == 2
    with pytest.raises(IndexError):
        clips[2]
    with pytest.raises(ValueError, match="mixed, smooth, sprites"):
        SyntheticClips(seed=1, count=1, kind="chairs")


@pytest.mark.parametrize("kind", ["smooth", "sprites"])
def test_displacement_follows_the_requested_size(kind):
    # min_disp == max_disp: every motion (camera, each sprite) is scaled to peak at exactly 5 px per frame.
    clips = SyntheticClips(seed=5, count=3, size=SIZE, clip_len=3, kind=kind, max_disp=5.0, min_disp=5.0)
    for _, flows, _ in clips:
        peak = np.linalg.norm(flows, axis=3).max()
        assert 4.0 < peak <= 5.0 * 1.05


def test_sub_pixel_clips_exist_at_small_min_disp():
    clips = SyntheticClips(seed=5, count=2, size=SIZE, clip_len=2, kind="smooth", max_disp=0.5, min_disp=0.2)
    for _, flows, _ in clips:
        assert 0.15 < np.linalg.norm(flows, axis=3).max() <= 0.55


def test_occlusion_covers_pixels_that_leave_the_image_or_get_covered():
    clips = SyntheticClips(
        seed=2, count=3, size=SIZE, clip_len=2, kind="sprites", max_disp=15.0, min_disp=8.0
    )
    found_covered = False
    for index in range(len(clips)):
        _, flows, occluded = clips[index]
        ys, xs = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
        tx, ty = xs + flows[0, ..., 0], ys + flows[0, ..., 1]
        outside = (tx < 0) | (tx > SIZE[1] - 1) | (ty < 0) | (ty > SIZE[0] - 1)
        assert occluded[0][outside].all()
        found_covered |= bool((occluded[0] & ~outside).any())
    assert found_covered  # sprites moving over each other hide something


def test_mixed_draws_both_kinds_and_evaluation_images_are_refused():
    clips = SyntheticClips(seed=0, count=12, size=(32, 32), kind="mixed")
    kinds = {clips.clip_kind(i) for i in range(len(clips))}
    assert kinds == {"smooth", "sprites"}
    assert clips.scene(0).kind == clips.clip_kind(0)
    aloe = ensure_data() / "opencv" / "aloeL.jpg"
    with pytest.raises(ValueError, match="evaluation-only"):
        SyntheticClips(seed=0, count=1, textures=[aloe])


def test_fast_rendering_matches_the_exact_one_and_keeps_its_ground_truth():
    # footage: many small sprites, rendered only inside their bounding boxes on the fast path
    for kind in ("smooth", "sprites", "footage"):
        exact = SyntheticClips(seed=4, count=2, size=SIZE, clip_len=3, kind=kind, max_disp=12.0)
        fast = SyntheticClips(seed=4, count=2, size=SIZE, clip_len=3, kind=kind, max_disp=12.0, fast=True)
        for a, b in zip(exact, fast, strict=True):
            # The same truth: the non-rigid inverse starts in float32 and stops at 1e-7 px instead of 1e-10.
            np.testing.assert_allclose(a.flows, b.flows, rtol=0, atol=1e-5)
            np.testing.assert_array_equal(a.occluded, b.occluded)
            diff = np.abs(a.frames.astype(np.int16) - b.frames.astype(np.int16))
            assert diff.mean() < 0.3 and np.percentile(diff, 99) <= 2


def test_footage_clips_have_objects_of_many_sizes_and_real_nuisances():
    clips = SyntheticClips(seed=9, count=24, size=SIZE, clip_len=3, kind="footage", max_disp=40.0, fast=True)
    sizes = [layer.affines[0][0, :2] for i in range(len(clips)) for layer in clips.scene(i).layers[1:]]
    radii = np.hypot(*np.array(sizes).T)
    assert radii.min() < 8 and radii.max() > 24  # a few pixels up to about half the frame
    clean = SyntheticClips(
        seed=9, count=24, size=SIZE, clip_len=3, kind="footage", max_disp=40.0, fast=True,
        nuisances=NuisanceConfig.none(),
    )  # fmt: skip
    changed = [not np.array_equal(clips[i].frames, clean[i].frames) for i in range(6)]
    assert any(changed)
    np.testing.assert_array_equal(clips[3].flows, clean[3].flows)  # nuisances never move pixels


def test_nuisances_noise_and_gain_are_per_frame_and_deterministic():
    frames = np.full((3, 32, 32, 3), 128, np.uint8)
    flows = np.zeros((2, 32, 32, 2), np.float32)
    cfg = NuisanceConfig(noise=1.0, gain=1.0, blur=0.0, jpeg=0.0, grey=0.0, gain_std=0.1, offset_std=0.0)
    out = apply_nuisances(frames, flows, np.random.default_rng(1), cfg)
    again = apply_nuisances(frames, flows, np.random.default_rng(1), cfg)
    np.testing.assert_array_equal(out, again)
    means = out.reshape(3, -1).mean(1)
    assert np.ptp(means) > 2  # each frame got its own gain
    assert out[0].std() > 0.5  # and noise
    assert apply_nuisances(frames, flows, np.random.default_rng(1), NuisanceConfig.none()) is frames
