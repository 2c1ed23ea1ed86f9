"""The training package's pieces: nested config validation, stale temporaries and failed starts, the
per-sample objective, precision selection."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tiny_models import tiny_config
from typer.testing import CliRunner

from scattermotion.cli import app
from scattermotion.data.fetched import ensure_data, real_video
from scattermotion.errors import InputError
from scattermotion.losses import LossConfig
from scattermotion.model import MotionNet
from scattermotion.model.cues import cue_expectation, displacement_grid
from scattermotion.precision import autocast, resolve_precision
from scattermotion.training import TrainConfig, list_checkpoints, load_config, train
from scattermotion.training.checkpoint import CHECKPOINT_DIR, remove_stale_temporaries
from scattermotion.training.distill import TeacherTargets, refined, teacher_targets
from scattermotion.training.objectives import (
    cue_target_loss,
    distillation_loss,
    select_samples,
    supervised_loss,
    training_objective,
    two_hot,
)
from scattermotion.warp import lands_inside

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"


@pytest.mark.parametrize(
    "text, words",
    [
        ("loss: {smoth_weight: 1}\n", ("loss", "smoth_weight")),
        ("model_overrides: {chanels: [8, 8, 8, 8]}\n", ("model_overrides", "chanels")),
        ("model_overrides: {cue_window: 4}\n", ("model_overrides", "cue_window")),
        ("precision: fp8\n", ("precision",)),
    ],
)
def test_nested_config_typos_fail_at_load_with_one_line(tmp_path, text, words):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(InputError) as err:
        load_config(bad)
    message = str(err.value)
    assert "\n" not in message and str(bad) in message and all(w in message for w in words)


def test_cli_typo_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loss: {smoth_weight: 1}\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "x.mp4", "--out", str(out), "--config", str(bad)])
    # The console entry point prints an InputError as its one line.
    assert isinstance(result.exception, InputError) and "smoth_weight" in str(result.exception)
    assert not out.exists()


def test_failed_start_leaves_no_run_folder(tmp_path):
    ensure_data()
    config = load_config(TINY).replace(sources=[str(tmp_path / "missing.mp4")], synthetic_ratio=0.0)
    out = tmp_path / "new_run"
    with pytest.raises(InputError):
        train(config, out, progress=False)
    assert not out.exists()


def test_resume_removes_stale_checkpoint_temporaries_only(tmp_path):
    ensure_data()
    run_dir = tmp_path / "run"
    config = load_config(TINY).replace(sources=[str(real_video("carphone"))])
    train(config, run_dir, progress=False, stop_at=3)
    folder = run_dir / CHECKPOINT_DIR
    stale = [
        folder / ".step_00000002.deadbeef.tmp.safetensors",
        folder / ".step_00000002.state.deadbeef.tmp.pt",
    ]
    keep = folder / ".my_notes"
    for path in [*stale, keep]:
        path.write_bytes(b"x")
    result = train(config, run_dir, resume=True, progress=False)
    assert result.final_weights is not None and list_checkpoints(run_dir)
    assert not any(p.exists() for p in stale) and keep.exists()
    assert remove_stale_temporaries(run_dir) == []


@pytest.fixture(scope="module")
def tiny_output():
    torch.manual_seed(0)
    model = MotionNet(tiny_config())
    frames = torch.rand(3, 3, 3, 64, 64)
    return frames, model(frames)


def test_supervised_loss_is_zero_on_the_truth_and_counts_every_level(tiny_output):
    frames, output = tiny_output
    truth = output.flows.detach()
    _, parts = supervised_loss(output, truth, (0.0, 0.0, 0.0))
    assert parts["epe_s1"] < 1e-5 and set(parts) == {"epe_s1"}
    total, parts = supervised_loss(output, truth + 1.0, (0.25, 0.5, 0.75))
    assert parts["epe_s1"] == pytest.approx(2**0.5, rel=1e-4)
    assert {"epe_s16", "epe_s8", "epe_s4"} <= set(parts) and total > parts["epe_s1"]


def test_robust_supervised_exponent_is_the_pwc_net_cost_and_logs_plain_epe(tiny_output):
    _, output = tiny_output
    truth = output.flows.detach().clone()
    truth[..., :8, :] += 10.0  # a large failure on a band, a small error everywhere else
    truth[..., 8:, :] += 0.1
    plain, plain_parts = supervised_loss(output, truth, (0.0, 0.0, 0.0))
    robust, robust_parts = supervised_loss(output, truth, (0.0, 0.0, 0.0), exponent=0.4)
    error = torch.linalg.vector_norm(output.flows.detach() - truth, dim=-3)
    assert float(robust.detach()) == pytest.approx(float(((error + 0.01) ** 0.4).mean()), rel=1e-4)
    assert float(plain_parts["epe_s1"]) == pytest.approx(float(robust_parts["epe_s1"]), rel=1e-6)
    assert float(robust.detach()) != pytest.approx(float(plain.detach()), rel=1e-2)


def test_objective_scores_each_sample_by_the_term_that_fits_it(tiny_output):
    frames, output = tiny_output
    cfg = LossConfig(occlusion=False)
    gt = output.flows.detach().clone()
    has_gt = torch.tensor([True, False, False])
    split, parts = training_objective(
        frames, output, has_gt, gt, cfg, 1.0, self_supervised_on_synthetic=False
    )
    # Sample 0 is scored by its ground truth only, samples 1 and 2 photometrically only.
    from scattermotion.losses import self_supervised_loss

    photo, _ = self_supervised_loss(frames[1:], select_samples(output, ~has_gt), cfg)
    sup, _ = supervised_loss(select_samples(output, has_gt), gt[:1], cfg.level_weights)
    assert split.item() == pytest.approx(photo.item() + sup.item(), rel=1e-5)
    assert parts["supervised_epe"] < 1e-4
    every, every_parts = training_objective(frames, output, has_gt, gt, cfg, 1.0, True)
    assert set(every_parts) == set(parts)  # same names logged whatever the mix (ranks average them)
    none, none_parts = training_objective(
        frames, output, torch.zeros(3, dtype=torch.bool), gt, cfg, 1.0, False
    )
    assert set(none_parts) == set(parts) and none_parts["supervised_epe"] == 0


def test_two_hot_targets_have_the_residual_as_expectation_clamped_to_the_window():
    residual = torch.tensor([-2.7, -1.0, -0.3, 0.0, 0.25, 1.99, 2.0, 3.5]).view(1, 8, 1)
    weights = two_hot(residual, 2)  # 1×5×8×1
    assert torch.allclose(weights.sum(1), torch.ones(1, 8, 1))
    assert (weights > 0).sum(1).max() <= 2  # at most the two candidates around the residual
    expectation = (weights * (torch.arange(5.0) - 2).view(5, 1, 1)).sum(1).flatten()
    assert torch.allclose(expectation, residual.flatten().clamp(-2, 2), atol=1e-6)


def test_cue_target_loss_is_least_for_the_two_hot_distribution_and_reaches_every_level(tiny_output):
    _, output = tiny_output
    truth = torch.randn_like(output.flows) * 3
    total, parts = cue_target_loss(output, truth, (0.25, 0.5, 0.75))
    far, _ = cue_target_loss(output, truth + 1000.0, (0.25, 0.5, 0.75))  # every residual outside its window
    assert far == 0
    assert set(parts) == {"cue_ce_s16", "cue_ce_s8", "cue_ce_s4"} and total > 0
    # Logits equal to the log of the 2-D two-hot target give the target's entropy, which no other
    # distribution beats, and an expectation that is the true residual.
    stride, logits, centre = output.strides[-1], output.level_logits[-1], output.level_centres[-1]
    window = int(logits.shape[2] ** 0.5)
    residual = torch.nn.functional.avg_pool2d(truth.flatten(0, 1), stride) / stride - centre.flatten(0, 1)
    along_x, along_y = two_hot(residual[:, 0], window // 2), two_hot(residual[:, 1], window // 2)
    target = (along_y.unsqueeze(2) * along_x.unsqueeze(1)).flatten(1, 2)
    grid = displacement_grid(window)
    radius = window // 2
    inside = (residual.abs() <= radius).all(1)
    assert inside.any() and not inside.all()
    expectation = cue_expectation(target, grid).permute(0, 2, 3, 1)[inside]
    assert torch.allclose(expectation, residual.permute(0, 2, 3, 1)[inside], atol=1e-5)
    exact_logits = target.clamp_min(1e-12).log().unflatten(0, logits.shape[:2])
    exact = dataclasses.replace(output, level_logits=[*output.level_logits[:-1], exact_logits])
    _, exact_parts = cue_target_loss(exact, truth, (0.0, 0.0, 1.0))
    entropy = -(target * target.clamp_min(1e-12).log()).sum(1)[inside].mean()
    assert exact_parts["cue_ce_s4"] == pytest.approx(entropy.item(), abs=1e-4)
    assert exact_parts["cue_ce_s4"] < parts["cue_ce_s4"]


def test_objective_adds_the_cue_target_term_only_when_weighted(tiny_output):
    frames, output = tiny_output
    gt = output.flows.detach() + 0.5
    has_gt = torch.tensor([True, True, False])
    off, off_parts = training_objective(frames, output, has_gt, gt, LossConfig(occlusion=False), 1.0, False)
    cfg = LossConfig(occlusion=False, cue_target_weight=0.5)
    on, on_parts = training_objective(frames, output, has_gt, gt, cfg, 2.0, False)
    cue, _ = cue_target_loss(select_samples(output, has_gt), gt[has_gt], cfg.level_weights)
    assert "cue_ce_s4" not in off_parts and on_parts["cue_ce_s4"] > 0
    sup, _ = supervised_loss(select_samples(output, has_gt), gt[has_gt], cfg.level_weights)
    assert on.item() - off.item() == pytest.approx(sup.item() + 2.0 * 0.5 * cue.item(), rel=1e-4)


def test_precision_auto_and_bf16_forward_keeps_fp32_motion():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) in ("fp32", "bf16")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("half", cpu)
    torch.manual_seed(0)
    model = MotionNet(tiny_config()).eval()
    with torch.no_grad(), autocast("bf16", cpu):
        out = model(torch.rand(1, 2, 3, 64, 64))
    assert out.flows.dtype == torch.float32 and all(f.dtype == torch.float32 for f in out.coarse_flows)


def test_train_speed_variants_time_every_phase_and_switch_what_they_say(tmp_path):
    from scattermotion.training.speed import PHASES, time_pipelined, time_variant, to_markdown

    ensure_data()
    config = load_config(TINY).replace(
        sources=[str(real_video("carphone"))], synthetic_ratio=0.5, supervised_weight=0.05,
        occlusion_from_step=10**9, num_workers=0, val_sets=[], val_real_clips=0,
    )  # fmt: skip
    off = time_variant(set(), config, tmp_path, steps=1, warmup=0)
    on = time_variant({"forward_only", "fast_render"}, config, tmp_path, steps=1, warmup=0)
    assert set(off["ms"]) == set(PHASES) and off["steps_per_s"] > 0
    assert off["bidirectional"] and not on["bidirectional"] and on["precision"] == "fp32"
    loop = time_pipelined({"forward_only"}, config, tmp_path, steps=1, warmup=1)
    report = {
        "variants": [{**off, "name": "all off"}, {**on, "name": "some on"}],
        "pipelined": {"all off": loop},
    }
    table = to_markdown(report)
    assert loop > 0 and "| all off |" in table and "| some on |" in table and "real loop" in table


class _BlasThreads(torch.utils.data.Dataset):
    """Each item: how many threads numpy's BLAS has in the process that loads it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        from threadpoolctl import threadpool_info

        return max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")


def test_training_keeps_numpy_blas_at_one_thread_in_its_data_workers():
    from threadpoolctl import threadpool_limits

    from scattermotion.training.data import make_loader
    from scattermotion.training.distributed import DistContext

    config = load_config(TINY).replace(batch_size=1, steps=2, num_workers=1)
    with threadpool_limits(2, user_api="blas"):  # as on a 2-core machine, whatever this one has
        parent = _BlasThreads()[0]
        capped = [int(b) for b in make_loader(_BlasThreads(), config, DistContext(), 0)]
        free = [int(b) for b in make_loader(_BlasThreads(), config, DistContext(), 0, one_blas_thread=False)]
    assert capped == [1, 1]
    assert free == [parent, parent]  # 2 wherever the machine has 2 cores: the cap is what made it 1


def test_a_non_finite_gradient_skips_the_update_and_keeps_the_weights():
    from scattermotion.training.distributed import DistContext
    from scattermotion.training.loop import train_step

    torch.manual_seed(0)
    model = MotionNet(tiny_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    flows = torch.zeros(2, 2, 2, 64, 64)
    flows[0, 0, 0, 0, 0] = float("nan")  # one bad ground-truth value: a NaN loss and NaN gradients
    batch = {"frames": torch.rand(2, 3, 3, 64, 64), "has_gt": torch.ones(2, dtype=torch.bool), "flows": flows}
    config = TrainConfig(occlusion_from_step=10**9, supervised_weight=1.0)
    out = train_step(model, optimizer, scheduler, batch, config, 0, "fp32", DistContext())
    assert not torch.isfinite(torch.as_tensor(out.terms["grad_norm"]))
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert scheduler.last_epoch == 1  # the schedule still advanced: the step count stays exact
    batch["flows"] = torch.zeros(2, 2, 2, 64, 64)
    train_step(model, optimizer, scheduler, batch, config, 1, "fp32", DistContext())
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_bf16_temporal_mixing_gives_finite_gradients_on_two_frame_clips():
    """oneDNN's bf16 Conv3d weight gradient was NaN for T=2 < kernel 3 (AVX512-BF16 CPU); the temporal
    mixing runs in fp32, so this loss (a fresh model, masked photometric term) keeps finite gradients."""
    from scattermotion.losses import self_supervised_loss
    from scattermotion.model.config import MotionConfig

    torch.manual_seed(0)
    model = MotionNet(MotionConfig.small(clip_len=2))
    frames = torch.rand(4, 2, 3, 128, 128)
    with autocast("bf16", torch.device("cpu")):
        output = model(frames, bidirectional=True)
    loss, _ = self_supervised_loss(frames, output, LossConfig(occlusion=True))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_lean_kernels_switch_changes_speed_not_the_loss_or_its_gradients():
    from scattermotion import losses
    from scattermotion.losses import self_supervised_loss
    from scattermotion.model import network
    from scattermotion.training.speed import kernels

    with kernels(False):  # the old ones really are in place
        assert network.convex_upsample.__name__ != "convex_upsample" and losses.box3.__name__ != "box3"
    assert network.convex_upsample.__name__ == "convex_upsample" and losses.box3.__name__ == "box3"

    torch.manual_seed(0)
    model = MotionNet(tiny_config())
    frames = torch.rand(2, 3, 3, 64, 64)
    results = []
    for lean in (True, False):
        model.zero_grad()
        with kernels(lean):
            loss, _ = self_supervised_loss(frames, model(frames, bidirectional=True))
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (lean_loss, lean_grads), (old_loss, old_grads) = results
    torch.testing.assert_close(lean_loss, old_loss, atol=1e-5, rtol=1e-5)
    assert len(lean_grads) == len(old_grads) > 0
    for a, b in zip(lean_grads, old_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


# ---- self-distillation ------------------------------------------------------------------------------------


def test_lands_inside_marks_the_pixels_whose_motion_stays_in_the_frame():
    flows = torch.zeros(1, 2, 4, 6)
    flows[:, 0] = 2.0  # 2 px right: the last two columns leave the frame
    inside = lands_inside(flows)
    assert inside.shape == (1, 1, 4, 6)
    assert inside[..., :4].all() and not inside[..., 4:].any()


def test_refined_teacher_moves_each_pair_towards_its_own_shift():
    """Clip b moves its texture by (b + 2, 1) px a frame; a rough motion 0.6 px short is refined pair by pair,
    each towards its own clip's shift (the batch and pair layout survives the trip through OpenCV)."""

    image = cv2.imread(str(ensure_data() / "opencv" / "baboon.jpg"), cv2.IMREAD_COLOR)
    image = cv2.resize(image, (200, 200), interpolation=cv2.INTER_AREA)
    texture = torch.from_numpy(image).permute(2, 0, 1) / 255
    clips = []
    for b in range(2):
        u = b + 2
        clips.append(torch.stack([texture[:, 40 - t : 136 - t, 40 - t * u : 168 - t * u] for t in range(3)]))
    frames = torch.stack(clips)  # 2×3×3×96×128: frame t+1 = frame t moved by (u, 1)
    truth = torch.tensor([[2.0, 1.0], [3.0, 1.0]]).view(2, 1, 2, 1, 1).expand(2, 2, 2, 96, 128)
    rough = truth - 0.6
    better = refined(frames, rough)
    assert better.shape == rough.shape and better.dtype == rough.dtype
    inner = (..., slice(15, -15), slice(15, -15))
    before = (rough - truth)[inner].abs().mean(dim=(2, 3, 4))
    after = (better - truth)[inner].abs().mean(dim=(2, 3, 4))
    # measured 0.35-0.37 px of 0.6: every pair of every clip, towards its own shift
    assert bool((after < 0.7 * before).all()), after
    net = MotionNet(tiny_config()).train()
    target = teacher_targets(net, frames, "vertical", max_spread=1e6, refine=True)
    assert target.flows.shape == (2, 2, 2, 96, 128) and not np.isnan(target.flows.numpy()).any()


def test_teacher_trusts_where_the_ensemble_agrees_and_the_student_is_scored_there_only():
    torch.manual_seed(0)
    net = MotionNet(tiny_config()).train()
    frames = torch.rand(2, 3, 3, 64, 64)
    loose = teacher_targets(net, frames, "vertical", max_spread=1e6)
    strict = teacher_targets(net, frames, "vertical", max_spread=1e-6)
    assert not loose.flows.requires_grad and loose.flows.dtype == torch.float32
    inside = lands_inside(loose.flows.flatten(0, 1)).unflatten(0, loose.flows.shape[:2])
    assert torch.equal(loose.trusted, inside)  # every estimate "agrees"
    assert strict.trusted.sum() < loose.trusted.sum()  # the untrained ensemble disagrees somewhere
    output = net(frames)
    same = dataclasses.replace(loose, flows=output.flows.detach().float())
    zero, parts = distillation_loss(output, same)
    assert float(zero.detach()) < 1e-5 and float(parts["distill_trusted"]) > 0
    shifted = dataclasses.replace(same, flows=same.flows + torch.tensor([3.0, 4.0]).view(1, 1, 2, 1, 1))
    five, parts = distillation_loss(output, shifted)
    five_value = float(five.detach())
    assert five_value == pytest.approx(5.0, rel=1e-4) and float(parts["distill_epe"]) == pytest.approx(
        5.0, rel=1e-4
    )
    untrusted = dataclasses.replace(shifted, trusted=torch.zeros_like(shifted.trusted))
    assert float(distillation_loss(output, untrusted)[0].detach()) == 0  # nothing trusted, nothing taught
    five.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_objective_adds_distillation_on_the_real_samples_only(tiny_output):
    frames, output = tiny_output
    cfg = LossConfig(occlusion=False)
    has_gt = torch.tensor([True, False, False])
    real = select_samples(output, ~has_gt)
    teacher = TeacherTargets(
        real.flows.detach().float() + 1.0, torch.ones_like(real.flows[:, :, :1], dtype=torch.bool)
    )
    args = (frames, output, has_gt, output.flows.detach(), cfg, 1.0, False)
    plain, plain_parts = training_objective(*args)
    taught, parts = training_objective(*args, teacher=teacher, distill_weight=0.5)
    assert float(parts["distill_epe"]) == pytest.approx(2**0.5, rel=1e-4)
    assert float(taught.detach()) == pytest.approx(float(plain.detach()) + 0.5 * 2**0.5, rel=1e-4)
    assert set(parts) == set(plain_parts) | {"distill_epe", "distill_trusted"}
    everyone_labelled = training_objective(
        frames,
        output,
        torch.ones(3, dtype=torch.bool),
        output.flows.detach(),
        cfg,
        1.0,
        False,
        teacher=None,
        distill_weight=0.5,
    )[1]
    assert set(everyone_labelled) == set(parts) and everyone_labelled["distill_epe"] == 0  # same names


def test_student_frames_carry_nuisances_on_real_clips_only():
    from scattermotion.data.clips import MixedClipDataset
    from scattermotion.data.nuisance import NuisanceConfig

    clip = torch.rand(3, 3, 32, 32)

    class Fixed:  # stands in for the real and synthetic datasets
        def __init__(self, has_gt: bool):
            self.has_gt = has_gt

        def __getitem__(self, index):
            return {"frames": clip.clone(), "has_gt": torch.tensor(self.has_gt)}

    always = NuisanceConfig(noise=1.0, gain=1.0, jpeg=0.0, grey=0.0)
    mixed = MixedClipDataset(Fixed(False), Fixed(True), 0.5, seed=3, student_nuisance=always)
    samples = [mixed[i] for i in range(12)]
    assert {bool(s["has_gt"]) for s in samples} == {True, False}
    for s in samples:
        moved = (s["student_frames"] - s["frames"]).abs().mean()
        assert (float(moved) == 0) == bool(s["has_gt"])
        assert s["student_frames"].shape == s["frames"].shape and 0 <= float(s["student_frames"].min())
    again = MixedClipDataset(Fixed(False), Fixed(True), 0.5, seed=3, student_nuisance=always)
    assert torch.equal(again[5]["student_frames"], samples[5]["student_frames"])  # a pure function of index
    assert "student_frames" not in MixedClipDataset(Fixed(False), Fixed(True), 0.5, seed=3)[0]


def test_distillation_trains_end_to_end_and_logs_its_terms(tmp_path):
    config = load_config(TINY).replace(
        sources=[str(real_video("carphone"))], steps=2, val_every=2, distill_weight=1.0, val_sets=[]
    )
    train(config, tmp_path / "run", progress=False)
    import json

    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if r["kind"] == "train"]
    assert logged and all(0 < r["distill_trusted"] <= 1 and r["distill_epe"] >= 0 for r in logged)
    with pytest.raises(ValueError, match="distill_mirror"):
        config.replace(distill_mirror="sideways")
