"""MotionNet: per-frame pyramid → local motion cues at stride 16 → residual cues at finer levels → CGU.

Frames go in once per clip; every adjacent pair (and, for training, every reversed pair) is decoded from the
same per-frame features, folded into the batch so all pairs run in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from scattermotion.model.config import MIRROR_AXES, MotionConfig
from scattermotion.model.cues import CueDecoder, cosine_correlation, local_correlation, unit_channels
from scattermotion.model.encoder import ClipEncoder
from scattermotion.model.fill import fill_motion
from scattermotion.model.filters import guided_mean, similarity_weights
from scattermotion.model.photometry import grey, pair_noise_variance
from scattermotion.model.polish import photometric_polish
from scattermotion.model.propagation import propagate_motion
from scattermotion.model.upsample import (
    MOTION_INPUT_SCALE,
    ContextGuidedUpsampler,
    convex_upsample,
    upsample_bilinear,
)
from scattermotion.warp import backward_warp, warp_features


@dataclass
class MotionOutput:
    """Everything one forward pass produces. T frames give T−1 adjacent pairs; pair t is frame t → t+1.

    Motion is ``(u, v)`` per pixel: a point at ``(x, y)`` in the reference frame is at ``(x+u, y+v)`` in the
    other one. ``flows`` are in full-resolution pixels; each entry of ``coarse_flows`` is in pixels of **its
    own level's** resolution (stride ``strides[i]``: multiply by the stride for full-resolution pixels).
    """

    flows: torch.Tensor  # B×(T−1)×2×H×W, frame t → t+1
    confidence: torch.Tensor  # B×(T−1)×1×H×W in [0, 1] (1 − normalised entropy of the coarse cues, upsampled)
    coarse_flows: list[torch.Tensor]  # per decoder level, coarsest first: B×(T−1)×2×(H/s)×(W/s)
    strides: tuple[int, ...]  # the stride of each entry of coarse_flows
    cue_logits: torch.Tensor  # B×(T−1)×k²×(H/16)×(W/16) at the coarsest level (forward pairs)
    cue_probs: torch.Tensor  # softmax of cue_logits over the k² candidates
    backward_flows: torch.Tensor | None = None  # B×(T−1)×2×H×W, frame t+1 → t (bidirectional only)
    backward_confidence: torch.Tensor | None = None
    backward_coarse_flows: list[torch.Tensor] | None = None
    # Per decoder level, coarsest first (forward pairs): the cue logits over that level's window, and the
    # motion (level pixels) the window is centred on (zero at the coarsest level, the upsampled coarser
    # motion below). A loss on the cue distributions themselves needs both (objectives.cue_target_loss).
    level_logits: list[torch.Tensor] | None = None
    level_centres: list[torch.Tensor] | None = None
    # Test-time fusion only (MotionNet.fused_motion): B×(T−1)×1×H×W, the largest distance (px) of one of the
    # fused estimates from their mean.
    spread: torch.Tensor | None = None


class MotionNet(nn.Module):
    """``forward(frames B×T×3×H×W in [0, 1], bidirectional=False) -> MotionOutput``.

    H and W must be multiples of ``self.stride`` (16); pad outside the model (:class:`InputPadder`). In eval
    mode the (forward) motion gets the config's test-time averaging, its photometric polish, its
    propagation and its fill; training and ``bidirectional`` decode the network's own motion only.
    """

    def __init__(self, config: MotionConfig | None = None):
        super().__init__()
        self.config = config = config or MotionConfig.small()
        self.stride = config.coarse_stride
        self.encoder = ClipEncoder(config)
        window = config.cue_window
        self.cue_decoder = CueDecoder(
            window * window + config.channels_at(self.stride), config.cue_hidden, window
        )
        refine = config.refine_window
        self.refiners = nn.ModuleDict(
            {
                str(s): CueDecoder(refine * refine + config.channels_at(s) + 2, config.refine_hidden, refine)
                for s in config.decoder_strides[1:]
            }
        )
        last_hidden = config.refine_hidden if self.refiners else config.cue_hidden
        self.upsampler = (
            ContextGuidedUpsampler(
                config.channels_at(config.output_stride) + last_hidden,
                config.cgu_hidden,
                config.output_stride,
            )
            if config.upsample == "cgu"
            else None
        )

    def _check(self, frames: torch.Tensor) -> None:
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"MotionNet expects B×T×3×H×W frames, got {tuple(frames.shape)}")
        if frames.shape[1] < 2:
            raise ValueError(f"MotionNet needs at least 2 frames per clip, got T={frames.shape[1]}")
        height, width = frames.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(
                f"MotionNet input {height}x{width} is not a multiple of stride {self.stride}: "
                "pad it first (scattermotion.padding.InputPadder)"
            )

    def forward(self, frames: torch.Tensor, bidirectional: bool = False) -> MotionOutput:
        self._check(frames)
        # Frames made from H×W×3 images by a permute (the estimator's, most users') are channels-last in
        # memory; oneDNN then keeps every feature map channels-last, and each product of one with a
        # contiguous map (the warped target of a correlation) takes the slow strided path: the stride-4
        # correlation took 4x its contiguous time. One copy of the frames (0.2 ms) saves ~5 % of a forward
        # (default model, 224x224, 2 threads, interleaved runs: 110.7 -> 105.0 ms median; motion within
        # 3e-5 px).
        frames = frames.contiguous()
        config = self.config
        if self.training or bidirectional:
            return self._decode(frames, bidirectional)
        if config.test_time_mirror != "none" or config.test_time_backward:
            out = self.fused_motion(frames, config.test_time_mirror, config.test_time_backward)
        else:
            out = self._decode(frames, False)
        flows = out.flows
        # The steps after the decoder see grey frames: converted once here, as is the pairs' noise variance
        # for every step that scales by it (0.7 ms for four 224×224 frames).
        luma = grey(frames)
        variance = pair_noise_variance(luma) if config.uses_noise_variance else None
        if config.polish_windows:
            flows = photometric_polish(
                luma,
                flows,
                config.polish_windows,
                config.polish_mean_window,
                config.polish_damping,
                config.polish_max_step,
                config.polish_noise_damping,
                variance,
            )
        if config.propagation_offsets:
            flows = propagate_motion(
                luma,
                flows,
                config.propagation_offsets,
                config.propagation_window,
                config.propagation_margin,
                config.propagation_noise,
                variance,
            )
        if config.fill_scale:
            flows = fill_motion(
                luma, flows, config.fill_window, config.fill_scale, config.fill_noise, variance
            )
        return out if flows is out.flows else replace(out, flows=flows)

    def fused_motion(
        self, frames: torch.Tensor, mirror: str = "none", backward: bool = False, with_spread: bool = False
    ) -> MotionOutput:
        """The mean of several estimates of the same motion from one network: the plain clip's, the backward
        motion brought to the reference frame (``backward``) and the mirrored clip's (``mirror``, one batch),
        whatever the config says and in any mode. ``with_spread``: also each pixel's largest distance (px) of
        an estimate from their mean, where small the estimates agree (self-distillation's confidence).
        Motion and confidence are fused; the cues and coarse levels are the plain clip's forward ones."""
        batch, dims = frames.shape[0], MIRROR_AXES[mirror]
        clips = torch.cat((frames, frames.flip(dims))) if dims else frames
        # The spread needs each estimate at full resolution; the motion alone is fused before upsampling.
        out = self._decode(clips, backward, fuse_backward=backward and not with_spread)
        estimates = [out.flows]
        if out.backward_flows is not None:
            estimates.append(-landed_backward(out.flows, out.backward_flows))
        confidence = out.confidence
        if dims:  # a mirror along x negates u, along y v
            sign = torch.tensor(
                [-1.0 if -1 in dims else 1.0, -1.0 if -2 in dims else 1.0], dtype=out.flows.dtype
            )
            sign = sign.to(out.flows.device).view(1, 1, 2, 1, 1)
            estimates = [e for x in estimates for e in (x[:batch], x[batch:].flip(dims) * sign)]
            confidence = (confidence[:batch] + confidence[batch:].flip(dims)) / 2
        flows = torch.stack(estimates).mean(0)
        spread = None
        if with_spread:
            spread = torch.stack([motion_length(e - flows) for e in estimates]).amax(0)
        return MotionOutput(
            flows=flows,
            confidence=confidence,
            coarse_flows=[x[:batch] for x in out.coarse_flows],
            strides=out.strides,
            cue_logits=out.cue_logits[:batch],
            cue_probs=out.cue_probs[:batch],
            level_logits=[x[:batch] for x in out.level_logits or []],
            level_centres=[x[:batch] for x in out.level_centres or []],
            spread=spread,
        )

    def _decode(self, frames: torch.Tensor, bidirectional: bool, fuse_backward: bool = False) -> MotionOutput:
        """``fuse_backward`` (with ``bidirectional``): ``flows`` are the forward motion averaged with the
        backward one landed on it (after the pass ``config.backward_fusion_point`` names, and before
        upsampling); no ``backward_flows``."""
        batch, length = frames.shape[:2]
        pairs = length - 1
        pyramid = self.encoder((frames - 0.5) * 2.0)

        ref_idx, tgt_idx = list(range(pairs)), list(range(1, length))
        if bidirectional:  # reversed pairs reuse the same per-frame features
            ref_idx, tgt_idx = ref_idx + tgt_idx, tgt_idx + ref_idx

        def ref(x: torch.Tensor) -> torch.Tensor:
            return x[:, ref_idx].flatten(0, 1)

        def tgt(x: torch.Tensor) -> torch.Tensor:
            return x[:, tgt_idx].flatten(0, 1)

        def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            """Folded (B·pairs)×… → B×P×… forward pairs, and the backward ones (None if not decoded, or no
            longer: after the fusion, only the forward pairs are)."""
            x = x.unflatten(0, (batch, -1))
            return x[:, :pairs], (x[:, pairs:] if x.shape[1] > pairs else None)

        def forward_only(x: torch.Tensor) -> torch.Tensor:
            return split(x)[0].flatten(0, 1)

        def fused(motion: torch.Tensor) -> torch.Tensor:
            """The forward pairs' motion averaged with their backward motion landed on it (folded)."""
            forward, backward = split(motion)
            return ((forward - landed_backward(forward, backward)) / 2).flatten(0, 1)

        config = self.config
        coarse = pyramid[self.stride]
        corr = local_correlation(ref(coarse.match), tgt(coarse.match), config.cue_window // 2, normalize=True)
        cue_logits, cue_probs, motion, confidence, hidden = self.cue_decoder(corr, ref(coarse.context))
        levels, level_logits, centres = [motion], [cue_logits], [torch.zeros_like(motion)]
        out_stride = config.output_stride
        fusion_point = config.backward_fusion_point  # (stride, pass) after which only forward pairs decode
        both_directions = bidirectional
        for stride in config.decoder_strides[1:]:
            level, refiner = pyramid[stride], self.refiners[str(stride)]
            motion = upsample_bilinear(motion, 2)
            # What every pass of the level shares, computed once: the pairs' features, the reference's
            # normalised for correlation, and the context's share of the decoder's first convolution
            # (default model, 224x224, 2 threads, one run: 28.0-30.8 -> 32.4 pairs/s; motion within 1e-4 px).
            unit_ref, target = unit_channels(ref(level.match)), tgt(level.match)
            context = refiner.context_response(ref(level.context))
            window = config.smoothing_window(stride)
            if window > 1:  # each frame's weights once, for every pass and pair it is the reference of
                guide = F.avg_pool2d(frames.flatten(0, 1), stride)  # each frame averaged over the cells
                weights = similarity_weights(guide, window, config.smoothing_sigma)
                smoothing = ref(weights.unflatten(0, (batch, length)))
            for number in range(1, config.passes(stride) + 1):
                centre = motion
                warped = warp_features(target, motion)
                corr = cosine_correlation(unit_ref, warped, config.refine_window // 2)
                logits, residual, hidden = refiner.residual(corr, motion / MOTION_INPUT_SCALE, context)
                motion = motion + residual
                if fuse_backward and both_directions and (stride, number) == fusion_point:
                    # Averaged before upsampling, not after upsampling both directions: one CGU pass (the
                    # forward pairs') instead of two, the landing warp on 1/16 of the pixels, and footage
                    # validation no worse (32 pairs, stage 22: 0.4648 -> 0.4628; with [8, 2] passes 0.4566 ->
                    # 0.4544). Passes after it decode the forward pairs only (ref_idx, read by ref() and
                    # tgt(), shrinks with them). Above the output level this is the exchange's forward half.
                    motion, both_directions = fused(motion), False
                    unit_ref, target, context = (forward_only(x) for x in (unit_ref, target, context))
                    if window > 1:
                        smoothing = forward_only(smoothing)
                    ref_idx, tgt_idx = ref_idx[:pairs], tgt_idx[:pairs]
                elif fuse_backward and both_directions and config.backward_exchange and stride != out_stride:
                    motion = exchange_directions(motion, batch)
                if window > 1:
                    motion = guided_mean(motion, smoothing, window)
            # The level's last pass is what its losses see (its cues are centred on the pass before).
            centres.append(centre)
            level_logits.append(logits)
            levels.append(motion)

        confidence = upsample_bilinear(confidence, self.stride // out_stride, scale_values=False)
        out_context = ref(pyramid[out_stride].context)
        if fuse_backward:
            hidden, confidence = forward_only(hidden), forward_only(confidence)
        if self.upsampler is not None:
            context = torch.cat((out_context, hidden), dim=1)
            logits = self.upsampler(motion, context)
            # One pass for motion and confidence: same weights; only the motion is scaled (by the stride).
            both = convex_upsample(torch.cat((motion * out_stride, confidence), 1), logits, out_stride, False)
            flow, confidence = both[:, :2], both[:, 2:]
        else:
            flow = upsample_bilinear(motion, out_stride)
            confidence = upsample_bilinear(confidence, out_stride, scale_values=False)

        flows, backward_flows = split(flow)  # no backward ones after the fusion
        conf_fwd, conf_bwd = split(confidence)
        level_splits = [split(m) for m in levels]
        return MotionOutput(
            flows=flows,
            confidence=conf_fwd,
            coarse_flows=[fwd for fwd, _ in level_splits],
            strides=config.decoder_strides,
            cue_logits=split(cue_logits)[0],
            cue_probs=split(cue_probs)[0],
            backward_flows=backward_flows,
            backward_confidence=conf_bwd,
            backward_coarse_flows=[bwd for _, bwd in level_splits] if backward_flows is not None else None,
            level_logits=[split(x)[0] for x in level_logits],
            level_centres=[split(x)[0] for x in centres],
        )


def motion_length(flows: torch.Tensor) -> torch.Tensor:
    """``B×P×2×H×W`` → ``B×P×1×H×W``: each pixel's √(u² + v²). By hand: a vector norm over the size-2 axis
    took 21 ms at 224×224 on this CPU."""
    return (flows[:, :, :1] ** 2 + flows[:, :, 1:] ** 2).sqrt()


def landed_backward(flows: torch.Tensor, backward_flows: torch.Tensor) -> torch.Tensor:
    """``b(x + f(x))``: the backward motion read where the forward motion lands (border values where it lands
    outside: measured as good). Negated, it is a second estimate of the forward motion from the same
    features (footage validation of stage 7: 0.677 -> 0.624 averaged with it). Both B×(T−1)×2×H×W."""
    landed, _ = backward_warp(backward_flows.flatten(0, 1), flows.flatten(0, 1))
    return landed.unflatten(0, flows.shape[:2])


def exchange_directions(motion: torch.Tensor, batch: int) -> torch.Tensor:
    """Folded ``(B·2P)×2×h×w`` motion of P forward pairs then their P backward ones per clip (the decoder's
    bidirectional layout): each direction's motion m becomes (m − m'(x + m)) / 2, m' the other direction's
    motion of the same pair read where m lands. Both directions in one warp."""
    other = motion.unflatten(0, (batch, 2, -1)).flip(1).flatten(0, 2)
    return (motion - warp_features(other, motion)) / 2


def build_motion_net(config_or_preset: MotionConfig | str = "small") -> MotionNet:
    """``build_motion_net("small" | "large" | MotionConfig(...))``."""
    if isinstance(config_or_preset, str):
        config_or_preset = MotionConfig.preset(config_or_preset)
    return MotionNet(config_or_preset)
