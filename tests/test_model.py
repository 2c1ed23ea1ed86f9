"""MotionNet shapes, cues, CGU upsampling, gradients, config and weights files."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_config

from scattermotion.errors import InputError
from scattermotion.losses import LossConfig, self_supervised_loss
from scattermotion.model import MotionConfig, MotionNet, build_motion_net, load_weights, save_weights
from scattermotion.model.cues import (
    CueDecoder,
    cosine_correlation,
    displacement_grid,
    local_correlation,
    unit_channels,
)
from scattermotion.model.network import landed_backward
from scattermotion.model.upsample import bilinear_logits, convex_upsample, upsample_bilinear
from scattermotion.model.weights import grow_weights
from scattermotion.padding import InputPadder

torch.set_num_threads(2)

TINY = tiny_config(clip_len=4)  # the one tiny test model (tests/tiny_models.py)


@pytest.fixture(scope="module")
def tiny_net() -> MotionNet:
    torch.manual_seed(0)
    return MotionNet(TINY).eval()


def flows_with(net: MotionNet, frames: torch.Tensor, **settings) -> torch.Tensor:
    """The motion of ``net``'s tensors in a network built with ``settings`` applied to its config (eval)."""
    changed = MotionNet(dataclasses.replace(net.config, **settings)).eval()
    changed.load_state_dict(net.state_dict())
    with torch.inference_mode():
        return changed(frames).flows


# ---- shapes --------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", range(2, 9))
def test_shapes_for_any_clip_length_and_odd_sizes(tiny_net: MotionNet, length: int):
    height, width = 37, 51  # odd: needs the padder
    frames = torch.rand(2, length, 3, height, width)
    padder = InputPadder(height, width, tiny_net.stride)
    (padded,) = padder.pad(frames)
    assert padded.shape[-2:] == (48, 64) and padder.padded_size == (48, 64)
    with torch.inference_mode():
        out = tiny_net(padded)
    pairs = length - 1
    assert out.flows.shape == (2, pairs, 2, 48, 64)
    assert padder.unpad(out.flows).shape == (2, pairs, 2, height, width)
    assert out.confidence.shape == (2, pairs, 1, 48, 64)
    assert out.confidence.min() >= 0 and out.confidence.max() <= 1
    assert out.strides == (16, 8, 4)
    assert [tuple(f.shape) for f in out.coarse_flows] == [(2, pairs, 2, 48 // s, 64 // s) for s in (16, 8, 4)]
    assert out.cue_logits.shape == out.cue_probs.shape == (2, pairs, 25, 3, 4)
    torch.testing.assert_close(out.cue_probs.sum(2), torch.ones(2, pairs, 3, 4))
    assert out.backward_flows is None and out.backward_coarse_flows is None


def test_bidirectional_outputs_match_forward_pass(tiny_net: MotionNet):
    frames = torch.rand(1, 3, 3, 32, 48)
    with torch.inference_mode():
        forward_only = tiny_net(frames)
        both = tiny_net(frames, bidirectional=True)
    assert both.backward_flows.shape == both.flows.shape == (1, 2, 2, 32, 48)
    assert both.backward_confidence.shape == (1, 2, 1, 32, 48)
    assert [b.shape for b in both.backward_coarse_flows] == [f.shape for f in both.coarse_flows]
    # The forward half is the same computation with or without the reversed pairs.
    torch.testing.assert_close(both.flows, forward_only.flows, atol=1e-5, rtol=1e-4)


def test_backward_pairs_equal_forward_pairs_of_the_reversed_clip_without_temporal_mixing():
    # Without temporal mixing every frame's features are its own, so backward pair t (t+1 → t) must be exactly
    # forward pair T−2−t of the time-reversed clip. (With mixing the time direction matters by design.)
    torch.manual_seed(0)
    net = MotionNet(MotionConfig.from_dict({**TINY.to_dict(), "temporal_mixing": False})).eval()
    with torch.no_grad():
        for decoder in [net.cue_decoder, *net.refiners.values()]:
            decoder.logits.weight.normal_(0, 0.2)  # non-trivial cues, so the comparison means something
    frames = torch.rand(1, 3, 3, 32, 48)
    with torch.inference_mode():
        both = net(frames, bidirectional=True)
        reversed_clip = net(frames.flip(1))
    assert both.backward_flows.abs().max() > 0.5
    assert not torch.allclose(both.backward_flows, both.flows, atol=1e-3)
    torch.testing.assert_close(both.backward_flows, reversed_clip.flows.flip(1), atol=1e-5, rtol=1e-5)
    for backward, forward in zip(both.backward_coarse_flows, reversed_clip.coarse_flows, strict=True):
        torch.testing.assert_close(backward, forward.flip(1), atol=1e-5, rtol=1e-5)


def test_input_checks(tiny_net: MotionNet):
    with pytest.raises(ValueError, match="multiple of stride 16"):
        tiny_net(torch.rand(1, 2, 3, 40, 48))
    with pytest.raises(ValueError, match="at least 2 frames"):
        tiny_net(torch.rand(1, 1, 3, 32, 32))
    with pytest.raises(ValueError, match="B×T×3×H×W"):
        tiny_net(torch.rand(1, 3, 32, 32))


def test_padder_round_trip_and_replicate_border():
    padder = InputPadder(5, 7, stride=4)
    image = torch.arange(35.0).view(1, 1, 5, 7)
    (padded,) = padder.pad(image)
    assert padded.shape == (1, 1, 8, 8)
    assert torch.equal(padder.unpad(padded), image)
    assert torch.equal(padded[0, 0, 0], padded[0, 0, 1])  # replicated top row (1 row padded on top)
    with pytest.raises(ValueError):
        padder.pad(torch.zeros(1, 1, 6, 7))


# ---- encoder / temporal mixing -------------------------------------------------------------------
def test_features_see_neighbouring_frames_only_with_temporal_mixing():
    torch.manual_seed(0)
    frames = torch.rand(1, 3, 3, 32, 32)
    changed = frames.clone()
    changed[:, 0] = torch.rand(
        3, 32, 32
    )  # frame 0 is not part of pair 1 (frames 1 → 2) but neighbours frame 1
    for mixing, should_change in ((True, True), (False, False)):
        config = MotionConfig.from_dict({**TINY.to_dict(), "temporal_mixing": mixing})
        net = MotionNet(config).eval()
        with torch.no_grad():  # make the temporal convolutions clearly non-trivial
            for module in net.encoder.temporal.values():
                module.conv.weight.normal_(0, 0.5)
            for decoder in [net.cue_decoder, *net.refiners.values()]:
                decoder.logits.weight.normal_(0, 0.1)
        with torch.inference_mode():
            a, b = net(frames), net(changed)
            match_a = net.encoder((frames - 0.5) * 2)[16].match[:, 1:]
            match_b = net.encoder((changed - 0.5) * 2)[16].match[:, 1:]
        assert torch.equal(match_a, match_b)  # matching features are strictly per frame
        assert (not torch.allclose(a.flows[:, 1], b.flows[:, 1], atol=1e-6)) == should_change


# ---- local cues ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "size,radius", [((6, 7), 4), ((20, 24), 1), ((9, 40), 2), ((20, 12), 2)]
)  # all-pairs, shifted, shifted and banded-row paths
def test_local_correlation_matches_direct_definition(size, radius):
    torch.manual_seed(0)
    ref, target = torch.randn(2, 5, *size), torch.randn(2, 5, *size)
    corr = local_correlation(ref, target, radius)
    grid = displacement_grid(2 * radius + 1)
    height, width = size
    for index, (dx, dy) in enumerate(grid.long().tolist()):
        expected = torch.zeros(2, height, width)
        ys = slice(max(0, -dy), min(height, height - dy))
        xs = slice(max(0, -dx), min(width, width - dx))
        ys_t = slice(ys.start + dy, ys.stop + dy)
        xs_t = slice(xs.start + dx, xs.stop + dx)
        expected[:, ys, xs] = (ref[:, :, ys, xs] * target[:, :, ys_t, xs_t]).sum(1) / 5
        torch.testing.assert_close(corr[:, index], expected, atol=1e-5, rtol=1e-5)


def test_banded_row_correlation_has_the_shifted_products_values_and_gradients(monkeypatch):
    import scattermotion.model.cues as cues

    torch.manual_seed(0)
    ref, target = torch.randn(2, 6, 10, 14, requires_grad=True), torch.randn(2, 6, 10, 14, requires_grad=True)
    weights = torch.randn(2, 25, 10, 14)

    def run() -> tuple[torch.Tensor, ...]:
        corr = cues._window_products(ref, target, 2)
        return (corr, *torch.autograd.grad((corr * weights).sum(), (ref, target)))

    monkeypatch.setattr(cues, "_ALL_PAIRS_CELLS_PER_CANDIDATE", 0)
    banded = run()  # 14 + 2·2 cells a row <= 8 × 5: the banded rows
    monkeypatch.setattr(cues, "_BANDED_ROW_CELLS_PER_CANDIDATE", 0)
    shifted = run()
    for a, b in zip(banded, shifted, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_cosine_correlation_takes_a_normalised_reference():
    torch.manual_seed(0)
    ref, target = torch.randn(2, 6, 12, 10), torch.randn(2, 6, 12, 10) * 3
    expected = local_correlation(ref, target, 2, normalize=True)
    torch.testing.assert_close(cosine_correlation(unit_channels(ref), target, 2), expected)
    assert expected.abs().max() <= 1 + 1e-5  # cosines


def test_cue_decoder_context_response_is_the_same_convolution():
    """A level's passes decode the same context: its share of the first convolution, computed once, gives
    what the full convolution over [corr, context, motion] gives (zero padding included)."""
    torch.manual_seed(0)
    decoder = CueDecoder(in_channels=9 + 5 + 2, hidden=6, window=3)
    corr, context, motion = torch.randn(2, 9, 5, 7), torch.randn(2, 5, 5, 7), torch.randn(2, 2, 5, 7)
    full = decoder(corr, torch.cat((context, motion), 1))
    shared = decoder(corr, motion, decoder.context_response(context))
    for a, b in zip(full, shared, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # training runs this path too: the gradient reaches the context through the shared response
    context.requires_grad_(True)
    decoder(corr, motion, decoder.context_response(context))[2].sum().backward()
    assert context.grad is not None and context.grad.abs().sum() > 0


def test_cue_decoder_soft_argmax_and_confidence():
    decoder = CueDecoder(in_channels=9 + 4, hidden=4, window=3)
    features = torch.randn(1, 4, 3, 3)
    no_match = torch.zeros(1, 9, 3, 3)  # no matching evidence: the learned logits alone decide
    with torch.no_grad():
        decoder.logits.weight.zero_()
        decoder.logits.bias.zero_()
        decoder.logits.bias[5] = 50.0  # candidate 5 = row 1, col 2 = displacement (+1, 0)
    _, probs, motion, confidence, _ = decoder(no_match, features)
    torch.testing.assert_close(motion, torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 3, 3))
    assert confidence.min() > 0.99
    with torch.no_grad():
        decoder.logits.bias.zero_()  # uniform cues: zero motion, zero confidence
    _, _, motion, confidence, _ = decoder(no_match, features)
    assert motion.abs().max() < 1e-6 and confidence.max() < 1e-5


def test_cue_decoder_follows_the_correlation_from_initialisation():
    """An untrained decoder already points where the features match best (the τ·corr prior)."""
    torch.manual_seed(0)
    decoder = CueDecoder(in_channels=9 + 4, hidden=4, window=3)
    corr = torch.full((1, 9, 3, 3), 0.2)
    corr[:, 1] = 1.0  # candidate 1 = row 0, col 1 = displacement (0, -1)
    _, _, motion, _, _ = decoder(corr, torch.randn(1, 4, 3, 3))
    assert (motion[:, 1] < -0.9).all() and motion[:, 0].abs().max() < 0.1


# ---- CGU -----------------------------------------------------------------------------------------
def test_cgu_with_centre_weight_is_nearest_upsampling():
    torch.manual_seed(0)
    stride = 4
    field = torch.randn(2, 2, 5, 6)
    logits = torch.zeros(2, 9 * stride * stride, 5, 6)
    logits[:, 4 * stride * stride : 5 * stride * stride] = 60.0  # neighbour 4 = the parent cell itself
    up = convex_upsample(field, logits, stride)
    nearest = F.interpolate(field, scale_factor=stride, mode="nearest") * stride
    torch.testing.assert_close(up, nearest)


def test_cgu_keeps_constant_field_constant_for_any_weights():
    torch.manual_seed(0)
    field = torch.tensor([1.5, -2.0]).view(1, 2, 1, 1).expand(3, 2, 4, 5)
    logits = torch.randn(3, 9 * 64, 4, 5) * 5
    up = convex_upsample(field, logits, 8)
    torch.testing.assert_close(up, torch.tensor([12.0, -16.0]).view(1, 2, 1, 1).expand(3, 2, 32, 40))
    confidence = convex_upsample(torch.full((3, 1, 4, 5), 0.3), logits, 8, scale_values=False)
    torch.testing.assert_close(confidence, torch.full((3, 1, 32, 40), 0.3))


def test_cgu_weights_are_a_convex_combination():
    torch.manual_seed(0)
    field = torch.rand(1, 1, 6, 6)
    up = convex_upsample(field, torch.randn(1, 9 * 16, 6, 6) * 3, 4, scale_values=False)
    assert up.min() >= field.min() - 1e-6 and up.max() <= field.max() + 1e-6


def test_cgu_gradients_match_an_unfold_reference():
    # RAFT's formulation (unfold the 3x3 neighbours, softmax over them, weighted sum, pixel shuffle), written
    # independently: the fast path's values and both gradients must be the same.
    torch.manual_seed(0)
    stride, field0, logits0 = 4, torch.randn(2, 3, 5, 6), torch.randn(2, 9 * 16, 5, 6)

    def reference(field, logits):
        batch, channels, height, width = field.shape
        weights = F.softmax(logits.view(batch, 1, 9, stride, stride, height, width), dim=2)
        neighbours = F.unfold(F.pad(field, (1, 1, 1, 1), mode="replicate"), 3)
        neighbours = neighbours.view(batch, channels, 9, 1, 1, height, width)
        up = (weights * neighbours).sum(2).permute(0, 1, 4, 2, 5, 3)
        return up.reshape(batch, channels, height * stride, width * stride) * stride

    results = []
    for function in (lambda f, w: convex_upsample(f, w, stride), reference):
        field, logits = field0.clone().requires_grad_(), logits0.clone().requires_grad_()
        out = function(field, logits)
        out.sin().sum().backward()
        results.append((out, field.grad, logits.grad))
    for fast, slow in zip(*results, strict=True):
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stride", [2, 4, 8])
def test_cgu_with_bilinear_logits_and_bilinear_mode_equal_interpolate(stride):
    torch.manual_seed(0)
    field = torch.randn(2, 2, 5, 7)
    reference = F.interpolate(field, scale_factor=stride, mode="bilinear", align_corners=False) * stride
    logits = bilinear_logits(stride).view(1, -1, 1, 1).expand(2, -1, 5, 7)
    torch.testing.assert_close(convex_upsample(field, logits, stride), reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(upsample_bilinear(field, stride), reference)


def test_bilinear_mode_network_runs_and_has_no_upsampler():
    net = MotionNet(MotionConfig.from_dict({**TINY.to_dict(), "upsample": "bilinear"})).eval()
    assert net.upsampler is None
    with torch.inference_mode():
        out = net(torch.rand(1, 2, 3, 32, 32))
    reference = upsample_bilinear(out.coarse_flows[-1][:, 0], 4)
    torch.testing.assert_close(out.flows[:, 0], reference)


# ---- gradients -----------------------------------------------------------------------------------
def test_self_supervised_loss_reaches_every_parameter():
    torch.manual_seed(0)
    net = MotionNet(TINY)
    frames = torch.rand(2, 3, 3, 32, 48)
    out = net(frames, bidirectional=True)
    loss, parts = self_supervised_loss(frames, out, LossConfig())
    loss.backward()
    assert torch.isfinite(loss) and "occluded" in parts
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


# ---- config --------------------------------------------------------------------------------------
def test_config_round_trip_presets_and_validation():
    for config in (MotionConfig.small(), MotionConfig.large(), TINY):
        assert MotionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert MotionConfig.large().channels[0] > MotionConfig.small().channels[0]
    assert build_motion_net("small").config == MotionConfig.small()
    assert MotionConfig.small().decoder_strides == (16, 8, 4)
    assert MotionConfig.small(output_stride=8).decoder_strides == (16, 8)
    for bad in ({"cue_window": 8}, {"upsample": "nearest"}, {"output_stride": 16}, {"channels": (1, 2)}):
        with pytest.raises(ValueError):
            MotionConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        MotionConfig.from_dict({"nonsense": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        build_motion_net("huge")


@pytest.mark.parametrize("stride, levels", [(8, (16, 8)), (2, (16, 8, 4, 2))])
def test_other_output_strides_run(stride, levels):
    net = MotionNet(MotionConfig.from_dict({**TINY.to_dict(), "output_stride": stride})).eval()
    with torch.inference_mode():
        out = net(torch.rand(1, 2, 3, 32, 32))
    assert out.strides == levels and out.flows.shape == (1, 1, 2, 32, 32)
    assert [m.shape[-1] for m in out.coarse_flows] == [32 // s for s in levels]


# ---- weights -------------------------------------------------------------------------------------
def test_growing_a_finer_level_keeps_every_tensor_that_fits(tmp_path, tiny_net: MotionNet):
    path = save_weights(tiny_net, tmp_path / "m.safetensors")
    grown, fresh = grow_weights(path, {"output_stride": 2})
    assert grown.config.output_stride == 2 and grown.config.channels == tiny_net.config.channels
    stored = tiny_net.state_dict()
    kept = [name for name in grown.state_dict() if name not in fresh]
    assert fresh and all(name.startswith(("refiners.2.", "upsampler.")) for name in fresh)
    assert "refiners.2.logits.weight" in fresh and "encoder.levels.0.0.0.weight" in kept
    assert all(torch.equal(grown.state_dict()[name], stored[name]) for name in kept)
    # The new level starts near a zero residual: its stride-2 motion is the stride-4 one, upsampled.
    grown.eval()
    with torch.inference_mode():
        out = grown(torch.rand(1, 2, 3, 32, 32))
    coarse, fine = out.coarse_flows[-2], out.coarse_flows[-1]
    up = F.interpolate(coarse[0], scale_factor=2, mode="bilinear", align_corners=False) * 2
    radius = grown.config.refine_window // 2  # a residual never leaves its window, whatever the features
    assert (fine[0] - up).abs().max() <= radius + 1e-5
    with pytest.raises(InputError, match="model_overrides"):
        grow_weights(path, {"output_stride": 3})


def test_refine_iterations_reuse_each_level_and_centre_the_second_pass_on_the_first(
    tmp_path, tiny_net: MotionNet
):
    path = save_weights(tiny_net, tmp_path / "m.safetensors")
    iterated, fresh = grow_weights(path, {"refine_iterations": 2})
    assert not fresh and iterated.state_dict().keys() == tiny_net.state_dict().keys()
    iterated.eval(), tiny_net.eval()
    frames = torch.rand(1, 2, 3, 32, 32)
    with torch.inference_mode():
        once, twice = tiny_net(frames), iterated(frames)
    torch.testing.assert_close(twice.coarse_flows[0], once.coarse_flows[0])  # the cues are not iterated
    assert not torch.allclose(twice.flows, once.flows)
    radius = iterated.config.refine_window // 2
    for i in range(1, len(twice.strides)):
        up = F.interpolate(twice.coarse_flows[i - 1][0], scale_factor=2, mode="bilinear", align_corners=False)
        first_pass = twice.level_centres[i][0] - up * 2  # the last pass is centred on the first one's motion
        assert 0 < first_pass.abs().max() <= radius + 1e-5
        assert (twice.coarse_flows[i][0] - up * 2).abs().max() <= 2 * radius + 1e-5


@pytest.mark.parametrize(
    ("mirror", "dims", "signs"),
    [("horizontal", (-1,), (-1.0, 1.0)), ("vertical", (-2,), (1.0, -1.0)), ("both", (-2, -1), (-1.0, -1.0))],
)
def test_test_time_mirror_makes_the_motion_mirror_equivariant_at_inference_only(
    tiny_net: MotionNet, mirror, dims, signs
):
    frames = torch.rand(2, 3, 3, 32, 48)
    net = build_motion_net(dataclasses.replace(tiny_net.config, test_time_mirror=mirror))
    net.load_state_dict(tiny_net.state_dict())
    net.eval(), tiny_net.eval()
    sign = torch.tensor(signs).view(1, 1, 2, 1, 1)
    with torch.inference_mode():
        plain, averaged = tiny_net(frames), net(frames)
        alone_mirrored = tiny_net(frames.flip(dims)).flows.flip(dims) * sign
        torch.testing.assert_close(averaged.flows, (plain.flows + alone_mirrored) / 2)
        # Mirroring the clip mirrors the motion exactly: one network alone is not equivariant.
        mirrored = net(frames.flip(dims))
        torch.testing.assert_close(mirrored.flows, averaged.flows.flip(dims) * sign, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(alone_mirrored, plain.flows, atol=1e-3)
        assert averaged.confidence.shape == plain.confidence.shape == (2, 2, 1, 32, 48)
        assert averaged.coarse_flows[0].shape[0] == 2
    net.train()
    torch.testing.assert_close(net(frames).flows, tiny_net.train()(frames).flows)  # training: one pass
    with pytest.raises(ValueError, match="test_time_mirror"):
        MotionConfig.small(test_time_mirror="diagonal")


def test_test_time_backward_averages_the_forward_motion_with_the_landed_backward_one(tiny_net: MotionNet):
    forward = torch.full((1, 1, 2, 16, 16), 2.0)
    backward = torch.full((1, 1, 2, 16, 16), -2.0)
    backward[..., 0, :, 10:] = -4.0  # frame t+1's right part says 4 px: reached from x >= 8 in frame t
    fused = (forward - landed_backward(forward, backward)) / 2
    assert torch.allclose(fused[..., 0, :, :7], torch.tensor(2.0)) and torch.allclose(
        fused[..., 1, :, :], torch.tensor(2.0)
    )
    assert torch.allclose(fused[..., 0, :, 8:14], torch.tensor(3.0))
    # The network fuses the two at its output stride, before upsampling (one upsampling pass instead of
    # two). With bilinear upsampling the fused full-resolution motion is exactly the upsampled fusion.
    torch.manual_seed(0)
    net = build_motion_net(dataclasses.replace(tiny_net.config, test_time_backward=True, upsample="bilinear"))
    net.eval()
    frames = torch.rand(2, 3, 3, 32, 32)
    with torch.inference_mode():
        both = net(frames, bidirectional=True)  # asked for: both directions, no fusion
        assert both.backward_flows is not None
        coarse, coarse_back = both.coarse_flows[-1], both.backward_coarse_flows[-1]
        expected = (coarse - landed_backward(coarse, coarse_back)) / 2
        stride = net.config.output_stride
        expected = upsample_bilinear(expected.flatten(0, 1), stride).unflatten(0, expected.shape[:2])
        fused = net(frames)
        torch.testing.assert_close(fused.flows, expected)
        assert fused.backward_flows is None and not torch.allclose(fused.flows, both.flows)


def test_backward_fusion_pass_fuses_inside_the_output_level_and_decodes_only_the_forward_pairs_after_it(
    tiny_net: MotionNet,
):
    def decode(fusion_pass: int) -> tuple[torch.Tensor, dict[int, list[int]]]:
        config = dataclasses.replace(
            tiny_net.config, test_time_backward=True, refine_iterations=2, backward_fusion_pass=fusion_pass
        )
        net = MotionNet(config).eval()
        net.load_state_dict(tiny_net.state_dict())
        batches: dict[int, list[int]] = {}  # per refinement level, the batch of every pass

        def recorder(stride: int):
            return lambda module, args, out: batches.setdefault(stride, []).append(args[0].shape[0])

        hooks = [  # the logits run once a pass
            net.refiners[str(stride)].logits.register_forward_hook(recorder(stride))
            for stride in config.decoder_strides[1:]
        ]
        with torch.inference_mode():
            out = net(frames)
        for hook in hooks:
            hook.remove()
        assert out.backward_flows is None and out.flows.shape == (2, 3, 2, 32, 48)
        return out.flows, batches

    torch.manual_seed(1)
    frames = torch.rand(2, 4, 3, 32, 48)
    out_stride, above = tiny_net.config.output_stride, 2 * tiny_net.config.output_stride
    last, last_batches = decode(0)  # 0: after the output level's last pass
    assert last_batches[out_stride] == [12, 12]  # 2 clips x 3 pairs x both directions, both passes
    named_last, _ = decode(2)
    torch.testing.assert_close(named_last, last, rtol=0, atol=0)
    early, early_batches = decode(1)
    assert early_batches[out_stride] == [12, 6]  # the pass after the fusion decodes the forward pairs only
    assert not torch.allclose(early, last)
    # Negative: counted back from the last pass of the level above, the rest forward pairs only
    above_last, above_last_batches = decode(-1)
    assert above_last_batches == {above: [12, 12], out_stride: [6, 6]}
    above_first, above_first_batches = decode(-2)
    assert above_first_batches == {above: [12, 6], out_stride: [6, 6]}
    assert not torch.allclose(above_last, early) and not torch.allclose(above_first, above_last)
    for wrong in (3, -3):
        with pytest.raises(ValueError, match="backward_fusion_pass"):
            dataclasses.replace(tiny_net.config, refine_iterations=2, backward_fusion_pass=wrong)


def test_backward_exchange_averages_each_direction_with_the_other_landed_on_it(tiny_net: MotionNet):
    from scattermotion.model.network import exchange_directions

    torch.manual_seed(2)
    forward, backward = torch.randn(2, 3, 2, 8, 12) * 2, torch.randn(2, 3, 2, 8, 12) * 2
    folded = torch.cat((forward, backward), 1).flatten(0, 1)  # per clip: 3 forward pairs, then 3 backward
    exchanged = exchange_directions(folded, batch=2).unflatten(0, (2, 6))
    torch.testing.assert_close(exchanged[:, :3], (forward - landed_backward(forward, backward)) / 2)
    torch.testing.assert_close(exchanged[:, 3:], (backward - landed_backward(backward, forward)) / 2)

    frames = torch.rand(1, 4, 3, 32, 48)

    def run(**settings) -> torch.Tensor:
        return flows_with(tiny_net, frames, refine_iterations=2, **settings)

    # Only while both directions are decoded for the fusion: no effect without test_time_backward.
    torch.testing.assert_close(run(backward_exchange=True), run(), rtol=0, atol=0)
    plain = run(test_time_backward=True)
    assert not torch.allclose(run(test_time_backward=True, backward_exchange=True), plain)


def test_guided_mean_averages_within_a_colour_and_keeps_a_step_between_two():
    from scattermotion.model.filters import guided_mean, similarity_weights

    torch.manual_seed(0)
    guide = torch.zeros(1, 3, 12, 16)
    guide[..., 8:] = 1.0  # two surfaces: black left, white right
    motion = torch.zeros(1, 2, 12, 16)
    motion[:, 0, :, :8], motion[:, 0, :, 8:] = 2.0, -1.0
    noisy = motion + torch.randn_like(motion) * 0.3
    weights = similarity_weights(guide, 5, sigma=0.03)
    assert weights.shape == (1, 25, 12, 16)
    torch.testing.assert_close(weights.sum(1), torch.ones(1, 12, 16))
    torch.testing.assert_close(guided_mean(motion, weights, 5), motion)  # each side constant, the step kept
    smoothed = guided_mean(noisy, weights, 5)
    assert (smoothed - motion).square().mean() < 0.25 * (noisy - motion).square().mean()
    # a uniform guide is a plain box mean (edges replicated): it blurs the step
    box = guided_mean(motion, similarity_weights(torch.zeros_like(guide), 5, sigma=0.03), 5)
    assert box[0, 0, 0, 7] < 1.5


def test_guided_smoothing_runs_after_every_pass_of_its_levels_only_when_set(tiny_net: MotionNet):
    frames = torch.rand(1, 3, 3, 32, 48)

    def run(**settings) -> torch.Tensor:
        return flows_with(tiny_net, frames, refine_iterations=2, **settings)

    plain = run(test_time_backward=True, backward_fusion_pass=1)
    smoothed = run(test_time_backward=True, backward_fusion_pass=1, guided_smoothing=3)
    assert smoothed.shape == plain.shape and not torch.allclose(smoothed, plain)
    torch.testing.assert_close(run(guided_smoothing=1), run(), rtol=0, atol=0)  # window 1: off
    with pytest.raises(ValueError, match="odd"):
        dataclasses.replace(tiny_net.config, guided_smoothing=4)
    with pytest.raises(ValueError, match="one entry per refinement level"):
        dataclasses.replace(tiny_net.config, guided_smoothing=(3,))
    with pytest.raises(ValueError, match="smoothing_sigma"):
        dataclasses.replace(tiny_net.config, smoothing_sigma=0.0)


def test_fused_motion_spread_is_each_pixels_largest_distance_from_the_mean(tiny_net: MotionNet):
    """Any mode, any config: the mean of the plain, landed-backward and mirrored estimates, and how far the
    farthest of them lies from it (self-distillation trusts the pixels where they agree)."""
    frames = torch.rand(2, 3, 3, 32, 48)
    tiny_net.train()  # training mode: the teacher of self-distillation runs inside the training step
    with torch.no_grad():
        fused = tiny_net.fused_motion(frames, mirror="vertical", backward=True, with_spread=True)
        plain = tiny_net(frames, bidirectional=True)
        mirrored = tiny_net(frames.flip(-2), bidirectional=True)
    sign = torch.tensor([1.0, -1.0]).view(1, 1, 2, 1, 1)
    estimates = [
        plain.flows,
        -landed_backward(plain.flows, plain.backward_flows),
        mirrored.flows.flip(-2) * sign,
        -landed_backward(mirrored.flows, mirrored.backward_flows).flip(-2) * sign,
    ]
    mean = sum(estimates) / 4
    torch.testing.assert_close(fused.flows, mean, atol=1e-5, rtol=1e-5)
    farthest = torch.stack([(e - mean).norm(dim=2, keepdim=True) for e in estimates]).amax(0)
    torch.testing.assert_close(fused.spread, farthest, atol=1e-5, rtol=1e-5)
    assert fused.spread.shape == (2, 2, 1, 32, 48) and float(fused.spread.max()) > 0
    alone = tiny_net.fused_motion(frames, with_spread=True)
    assert alone.spread.abs().max() == 0  # one estimate: nothing to disagree with
    assert tiny_net.fused_motion(frames, mirror="vertical").spread is None  # only when asked for


def test_weights_round_trip_gives_identical_outputs(tmp_path, tiny_net: MotionNet):
    path = save_weights(tiny_net, tmp_path / "m.safetensors", card={"steps": 3})
    loaded = load_weights(path)
    assert loaded.config == tiny_net.config and not loaded.training
    frames = torch.rand(1, 3, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(frames).flows, tiny_net(frames).flows, atol=0, rtol=0)
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["steps"] == 3 and card["config"]["cue_window"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temp files left
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # the mode any file written here gets: weights must be as readable
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_bad_weights_files_raise_input_error(tmp_path, tiny_net: MotionNet):
    with pytest.raises(InputError, match="not found"):
        load_weights(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(InputError, match="corrupt.safetensors"):
        load_weights(corrupt)
    truncated = tmp_path / "truncated.safetensors"
    good = save_weights(tiny_net, tmp_path / "good.safetensors").read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError):
        load_weights(truncated)
    # Tensors of one architecture under the config of another.
    from safetensors.torch import save_file

    other = MotionConfig.from_dict({**TINY.to_dict(), "cue_hidden": 12})
    mismatched = tmp_path / "mismatched.safetensors"
    save_file(
        {k: v.contiguous() for k, v in tiny_net.state_dict().items()},
        str(mismatched),
        metadata={"motion_config": other.to_json()},
    )
    with pytest.raises(InputError, match="wrong shape"):
        load_weights(mismatched)
    no_config = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(no_config))
    with pytest.raises(InputError, match="motion_config"):
        load_weights(no_config)


def test_weights_config_is_checked_on_the_meta_device_before_allocating(tmp_path, monkeypatch):
    """A 452-byte file asking for channels [16384]*4 used to build the 9.6 GB model before comparing
    shapes: the model is now built on the meta device first, and for real only once the tensors fit."""
    from safetensors.torch import save_file

    from scattermotion.model import weights as weights_module

    huge = MotionConfig.from_dict({**TINY.to_dict(), "channels": [16384] * 4})
    path = tmp_path / "huge.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"motion_config": huge.to_json()})
    assert path.stat().st_size < 1024
    built: list[torch.device] = []
    real_init = MotionNet.__init__

    def recording_init(self, config):
        real_init(self, config)
        built.append(next(self.parameters()).device)

    monkeypatch.setattr(weights_module.MotionNet, "__init__", recording_init)
    with pytest.raises(InputError, match="huge.safetensors: tensors do not match.*missing"):
        load_weights(path)
    assert built == [torch.device("meta")]
    bad_values = tmp_path / "negative.safetensors"
    negative = json.dumps({**TINY.to_dict(), "channels": [-8, 12, 16, 24]})
    save_file({"x": torch.zeros(1)}, str(bad_values), metadata={"motion_config": negative})
    with pytest.raises(InputError, match="negative.safetensors: bad"):
        load_weights(bad_values)


def test_non_float_and_non_finite_weights_are_rejected(tmp_path, tiny_net: MotionNet):
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in tiny_net.state_dict().items()}
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.dim() == 4)
    metadata = {"motion_config": tiny_net.config.to_json()}
    for label, tensor, problem in (
        ("nan", tensors[name].clone().fill_(float("nan")), "NaN or infinite"),
        ("inf", tensors[name].clone().fill_(float("inf")), "NaN or infinite"),
        ("int", torch.ones_like(tensors[name], dtype=torch.int32), "not floating point"),
    ):
        path = tmp_path / f"{label}.safetensors"
        save_file({**tensors, name: tensor}, str(path), metadata=metadata)
        with pytest.raises(InputError, match=f"{label}.safetensors: .*{problem}.*{name}"):
            load_weights(path)


def test_refine_iterations_per_level_runs_each_level_its_own_number_of_passes(tmp_path, tiny_net: MotionNet):
    path = save_weights(tiny_net, tmp_path / "m.safetensors")
    levels = len(tiny_net.config.decoder_strides) - 1
    uniform, _ = grow_weights(path, {"refine_iterations": 2})
    per_level, fresh = grow_weights(path, {"refine_iterations": [2] * levels})
    coarse_only, _ = grow_weights(path, {"refine_iterations": [3] + [2] * (levels - 1)})
    assert not fresh and per_level.config.refine_iterations == (2,) * levels
    assert MotionConfig.from_json(per_level.config.to_json()) == per_level.config
    frames = torch.rand(1, 2, 3, 32, 32)
    for net in (uniform, per_level, coarse_only):
        net.eval()
    with torch.inference_mode():
        two, listed, more = uniform(frames), per_level(frames), coarse_only(frames)
    torch.testing.assert_close(listed.flows, two.flows)  # a list of equal counts is the single number
    assert not torch.allclose(more.coarse_flows[1], two.coarse_flows[1])  # the extra pass ran where asked
    with pytest.raises(ValueError, match="one entry per refinement level"):
        MotionConfig.small(refine_iterations=[2] * (levels + 1))
    with pytest.raises(ValueError, match=">= 1"):
        MotionConfig.small(refine_iterations=[0] + [1] * (levels - 1))
