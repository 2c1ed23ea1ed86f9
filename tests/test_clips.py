"""Training clips and augmentation: clips stay inside shots, sampling is a pure function of (seed, rank,
index), decoding stays within its memory budget, scans are cached, and augmentation keeps the photometric
relation between frames (and ground truth exact where it is kept)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from scattermotion.augment import AugmentConfig, augment_clip, crop_clip, random_crop_window
from scattermotion.data import clips as clips_module
from scattermotion.data.clips import (
    ClipSampling,
    MixedClipDataset,
    SyntheticClipDataset,
    VideoClipDataset,
    scan_videos,
    training_synthetic_seed,
)
from scattermotion.data.fetched import ensure_data, real_video
from scattermotion.data.frame_cache import FrameCache
from scattermotion.data.synthetic import SyntheticClips
from scattermotion.errors import InputError
from scattermotion.warp import backward_warp

torch.set_num_threads(1)

NO_PHOTOMETRIC = dict(brightness=0, contrast=0, saturation=0, gamma=0, noise_std=0)


def texture(name: str = "baboon.jpg") -> np.ndarray:
    image = cv2.imread(str(ensure_data() / "opencv" / name), cv2.IMREAD_COLOR)
    assert image is not None
    return np.ascontiguousarray(image[:, :, ::-1])


def panning_clip(length: int = 3, shift: int = 2, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Frames of a real texture panned ``shift`` px left per frame: frame_t(x) = frame_{t+1}(x - shift)."""
    image = texture()
    h, w = size
    return np.stack([image[100 : 100 + h, 100 + t * shift : 100 + t * shift + w] for t in range(length)])


def write_two_shot_folder(folder: Path, per_shot: int = 10) -> Path:
    """A frame folder with a hard cut at frame ``per_shot``: a slowly panning baboon, then fruits."""
    folder.mkdir(parents=True)
    index = 0
    for name in ("baboon.jpg", "fruits.jpg"):
        image = texture(name)
        for t in range(per_shot):
            frame = image[50 : 50 + 72, 50 + t : 50 + t + 96]
            cv2.imwrite(str(folder / f"img_{index:03d}.png"), frame[:, :, ::-1])
            index += 1
    return folder


# ---- augmentation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_augmentation_keeps_frames_related_by_the_same_motion(seed):
    """Crop, flips, reversal and colour jitter of a panning clip still give a clip where every frame is the
    next one shifted by 2 px horizontally: the photometric relation survives (one colour map for all)."""
    raw = panning_clip(length=3, shift=2, size=(48, 64))
    cfg = AugmentConfig(hflip=0.5, vflip=0.5, reverse=0.5, noise_std=0.0)
    out, flows = augment_clip(raw, np.random.default_rng(seed), cfg, crop_size=(32, 48))
    assert out.shape == (3, 32, 48, 3) and out.dtype == np.float32 and flows is None
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert not np.allclose(out[0], raw[0, :32, :48] / 255.0, atol=0.02)  # colours really were jittered
    for t in range(2):
        errors = {
            shift: np.abs(out[t][:, 2:-2] - np.roll(out[t + 1], shift, axis=1)[:, 2:-2]).max()
            for shift in (-2, 2)
        }
        assert min(errors.values()) < 1e-5, errors
        assert max(errors.values()) > 0.05  # the test can tell the directions apart


def test_flips_keep_ground_truth_exact_and_reversal_drops_it():
    clip = SyntheticClips(seed=5, count=1, size=(48, 64), clip_len=3, kind="smooth", max_disp=4.0)[0]

    def warp_error(frames: np.ndarray, flows: np.ndarray) -> float:
        first = torch.from_numpy(np.ascontiguousarray(frames[0])).permute(2, 0, 1)[None].float()
        second = torch.from_numpy(np.ascontiguousarray(frames[1])).permute(2, 0, 1)[None].float()
        flow = torch.from_numpy(np.ascontiguousarray(flows[0])).permute(2, 0, 1)[None]
        warped, valid = backward_warp(second, flow)
        return float(((warped - first).abs().mean(1, keepdim=True) * valid).sum() / valid.sum())

    plain = augment_clip(clip.frames, np.random.default_rng(0), AugmentConfig.none(), flows=clip.flows)
    flip_cfg = AugmentConfig(hflip=1.0, vflip=1.0, reverse=0.0, **NO_PHOTOMETRIC)
    flipped = augment_clip(clip.frames, np.random.default_rng(0), flip_cfg, flows=clip.flows)
    assert flipped.flows is not None
    base = warp_error(plain.frames, plain.flows)
    assert base < 0.02
    assert abs(warp_error(flipped.frames, flipped.flows) - base) < 2e-3
    # The motion of the mirrored clip really is the mirrored motion: the unmirrored field fails.
    assert warp_error(flipped.frames, np.ascontiguousarray(clip.flows[:, ::-1, ::-1])) > 3 * base
    reverse_cfg = AugmentConfig(hflip=0, vflip=0, reverse=1.0, **NO_PHOTOMETRIC)
    reversed_clip = augment_clip(clip.frames, np.random.default_rng(0), reverse_cfg, flows=clip.flows)
    assert reversed_clip.flows is None
    np.testing.assert_allclose(reversed_clip.frames[0], clip.frames[-1] / 255.0, atol=1e-6)


def test_crop_window_upsamples_small_frames_and_scales_motion():
    rng = np.random.default_rng(1)
    window = random_crop_window(rng, (40, 50), (64, 64), (1.0, 1.0))
    assert window.height <= 40 and window.width <= 50 and window.height == window.width
    frames = np.zeros((2, 40, 50, 3), np.uint8)
    flows = np.ones((1, 40, 50, 2), np.float32)
    out, out_flows = crop_clip(frames, window, (64, 64), flows)
    assert out.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(out_flows[0, 10, 10], [64 / window.width, 64 / window.height], rtol=1e-5)


# ---- scanning and sampling ---------------------------------------------------------------------------------


def test_frame_folder_clips_never_cross_the_cut(tmp_path):
    folder = write_two_shot_folder(tmp_path / "shots")
    entries = scan_videos([folder], cut_cache=tmp_path / "cuts.json")
    assert len(entries) == 1 and entries[0].frame_count == 20 and entries[0].cuts == (10,)
    sampling = ClipSampling(clip_len=4, crop_size=(48, 48), frame_steps=(1, 2))
    dataset = VideoClipDataset(entries, sampling, seed=3)
    plans = [dataset.plan(i) for i in range(300)]
    for plan in plans:
        last = plan.start + 3 * plan.step
        assert (last < 10) or (plan.start >= 10), plan
    assert {p.step for p in plans} == {1, 2}
    assert {p.start >= 10 for p in plans} == {True, False}  # both shots are used
    sample = dataset[7]
    assert sample["frames"].shape == (4, 3, 48, 48) and not sample["has_gt"]


def test_sampling_is_a_function_of_seed_rank_and_index(tmp_path):
    folder = write_two_shot_folder(tmp_path / "shots")
    entries = scan_videos([folder])
    sampling = ClipSampling(clip_len=3, crop_size=(32, 32))
    a = VideoClipDataset(entries, sampling, seed=1, rank=0)
    b = VideoClipDataset(entries, sampling, seed=1, rank=0)
    other_rank = VideoClipDataset(entries, sampling, seed=1, rank=1)
    for index in (0, 5, 123):
        assert torch.equal(a[index]["frames"], b[index]["frames"])
    different = sum(not torch.equal(a[i]["frames"], other_rank[i]["frames"]) for i in range(6))
    assert different == 6


def test_scan_reads_the_cut_cache_and_rescans_changed_folders(tmp_path, monkeypatch):
    folder = write_two_shot_folder(tmp_path / "shots")
    cache = tmp_path / "cuts.json"
    first = scan_videos([folder], cut_cache=cache)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cached scan should have been used")

    monkeypatch.setattr(clips_module, "detect_scene_cuts", no_decoding)
    assert scan_videos([folder], cut_cache=cache) == first
    cv2.imwrite(str(folder / "img_999.png"), cv2.imread(str(folder / "img_000.png")))
    with pytest.raises(AssertionError, match="cached scan"):
        scan_videos([folder], cut_cache=cache)


def test_real_video_cuts_and_list_file_inputs(tmp_path):
    bikes = real_video("bikes")
    listing = tmp_path / "train.txt"
    listing.write_text(f"# training videos\n{bikes}\n{real_video('carphone')}\n")
    entries = scan_videos([listing], short_side=64, cut_cache=tmp_path / "cuts.json")
    by_name = {e.item.source.name: e for e in entries}
    assert by_name["bikes.mp4"].cuts == (30, 76, 137, 187, 242)
    assert by_name["bikes.mp4"].frame_count == 250 and by_name["bikes.mp4"].height == 64
    dataset = VideoClipDataset(entries, ClipSampling(clip_len=4, crop_size=(48, 48)), seed=0)
    bikes_index = entries.index(by_name["bikes.mp4"])
    for plan in (dataset.plan(i) for i in range(500)):
        if plan.video == bikes_index:
            assert not any(plan.start < cut <= plan.start + 3 for cut in (30, 76, 137, 187, 242)), plan


def test_bad_inputs_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        scan_videos([tmp_path / "missing.mp4"])
    short = tmp_path / "short"
    short.mkdir()
    cv2.imwrite(str(short / "a.png"), np.zeros((32, 32, 3), np.uint8))
    cv2.imwrite(str(short / "b.png"), np.zeros((32, 32, 3), np.uint8))
    entries = scan_videos([short])
    with pytest.raises(InputError, match="long enough"):
        VideoClipDataset(entries, ClipSampling(clip_len=4, crop_size=(32, 32)))


# ---- decoding budget ---------------------------------------------------------------------------------------


def test_frame_store_stays_within_budget_and_streams_large_videos():
    entries = scan_videos([real_video("carphone"), real_video("tree")], short_side=64, detect_cuts=False)
    sizes = [e.frame_count * e.frame_bytes for e in entries]
    budget = max(sizes) + 1000  # room for either video, not both
    assert sum(sizes) > budget
    store = FrameCache(budget, short_side=64)
    for entry in entries * 2:
        clip = store.clip(entry.item.source, start=5, length=3, step=2)
        assert clip.shape == (3, entry.height, entry.width, 3)
        assert store.cached_bytes <= budget
    assert store.cached_videos == 1 and store.streamed_reads == 0
    small = FrameCache(min(sizes) - 1, short_side=64)  # no video fits: every clip is streamed
    streamed = small.clip(entries[0].item.source, start=5, length=3, step=2)
    assert small.cached_bytes == 0 and small.streamed_reads == 1
    np.testing.assert_array_equal(streamed, store.clip(entries[0].item.source, start=5, length=3, step=2))


# ---- synthetic mixing --------------------------------------------------------------------------------------


def test_mixed_dataset_ratio_and_synthetic_ground_truth(tmp_path):
    folder = write_two_shot_folder(tmp_path / "shots")
    sampling = ClipSampling(clip_len=3, crop_size=(32, 32), augment=AugmentConfig(reverse=0.0))
    real = VideoClipDataset(scan_videos([folder]), sampling, seed=2)
    synthetic = SyntheticClipDataset(sampling, seed=2, max_disp=4.0)
    mixed = MixedClipDataset(real, synthetic, 0.3, seed=2)
    picks = [mixed.is_synthetic(i) for i in range(2000)]
    assert 0.26 < np.mean(picks) < 0.34
    assert picks == [mixed.is_synthetic(i) for i in range(2000)]
    index = picks.index(True)
    sample = mixed[index]
    assert sample["synthetic"] and sample["has_gt"] and sample["flows"].shape == (2, 2, 32, 32)
    assert sample["flows"].abs().max() > 0
    assert not mixed[picks.index(False)]["has_gt"]
    # Training synthetic clips come from seeds no evaluation set uses.
    seeds = {training_synthetic_seed(0, 0), training_synthetic_seed(0, 1), training_synthetic_seed(1, 0)}
    assert len(seeds) == 3 and min(seeds) > 2**32
