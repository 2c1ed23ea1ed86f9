"""Every architecture knob of the motion network in one dataclass, with named presets.

The pyramid has four levels at strides 2, 4, 8 and 16. Cues are decoded at stride 16 over a ``cue_window``²
displacement window (radius ``cue_window // 2`` cells, i.e. ±64 px at full resolution for 9), refined at
every pyramid level down to ``output_stride`` in a ``refine_window``² window around the upsampled motion
(``refine_iterations`` times per level, or its own number of times per level),
and the motion at ``output_stride`` is brought to full resolution by context-guided upsampling (CGU) or
bilinear interpolation.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

PYRAMID_STRIDES = (2, 4, 8, 16)
UPSAMPLE_MODES = ("cgu", "bilinear")
MIRROR_AXES = {"none": (), "horizontal": (-1,), "vertical": (-2,), "both": (-2, -1)}  # flipped tensor dims


@dataclass
class MotionConfig:
    clip_len: int = 4  # frames per clip the network is trained on (any T >= 2 runs)
    channels: tuple[int, int, int, int] = (16, 24, 32, 48)  # feature channels at strides 2, 4, 8, 16
    temporal_mixing: bool = True  # (2+1)D mixing across the T frames
    temporal_strides: tuple[int, ...] = (8, 16)  # pyramid levels that get the temporal mixing
    temporal_kernel: int = 3  # taps of the temporal convolution over the T axis
    cue_window: int = 9  # k: k×k candidate displacements at stride 16 (odd)
    refine_window: int = 5  # candidate window of the residual cues at finer levels (odd): ±2 px per level
    # Passes of each refinement level (its weights shared): pass n re-warps with the motion of pass n-1 and
    # corrects it again, RAFT's iterative refinement within one level. 1 = the single pass of stages 1-8.
    # One number for every level, or one per refinement level, coarsest first (strides 8, 4 at output stride
    # 4): a pass at stride 8 costs a quarter of one at stride 4, so extra passes are cheapest there.
    refine_iterations: int | tuple[int, ...] = 1
    output_stride: int = 4  # finest decoded level; CGU upsamples from here to full resolution
    cue_hidden: int = 48  # hidden channels of the coarse cue decoder
    refine_hidden: int = 32  # hidden channels of the refinement decoders
    upsample: str = "cgu"  # "cgu" | "bilinear" (ablation)
    # At inference (eval mode), also run the mirrored clip ("horizontal", "vertical" or "both": rotated 180°)
    # and average the two motions (the mirrored components negated): the two estimates' errors are partly
    # independent, so their mean is closer to the truth, at twice the compute. Training is unaffected.
    # Stage 7 footage validation (with test_time_backward): none 0.624, horizontal 0.592, vertical 0.579,
    # both 0.583.
    test_time_mirror: str = "none"
    # At inference, also decode the backward motion (frame t+1 → t, same features: the decoders run twice, the
    # encoder once) and average it, read where the forward motion lands and negated, with the forward one.
    test_time_backward: bool = False
    # With test_time_backward: the pass after which the backward motion is averaged in; the passes after it
    # decode the forward pairs only. 1, 2, ...: that pass of the output level; 0: its last (before the
    # upsampling); -1, -2, ...: counted back from the last pass of the level above (-1 its last, -3 its
    # third from last), where it replaces that pass's exchange (its forward half). Earlier is cheaper: the
    # passes after it decode half the pairs. Stage 23 @7650 with the shipped settings and the propagation
    # [24, 12, 6]; 48 + 48 smooth / sprites validation clips, 64 footage validation pairs (all / object
    # pixels), EPE px; forward time against the previous default (fused after pass 1 of stride 4, no
    # propagation: 0.5364 / 1.6372 / 0.3367 / 0.4796), 224x224, 2 threads, 70 interleaved runs, median:
    # after pass 1 0.4888 / 1.4870 / 0.3332 / 0.4810, ~1.13x; -1 0.5003 / 1.5039 / 0.3354 / 0.4898, 1.03x;
    # -2 0.5043 / 1.5100 / 0.3354 / 0.4881; -3 0.5079 / 1.5206 / 0.3359 / 0.4873, 0.98x (shipped); -5
    # 0.5171 / 1.5346 / 0.3378 / 0.4859, 0.95x; -6 0.5218 / 1.5380 / 0.3392 / 0.4857; no backward motion
    # at all 0.5420 / 1.5587 / 0.3454 / 0.4880. -3 with offsets [24, 12]: 0.5140 / 1.5388 / 0.3361 /
    # 0.4883, 0.94x.
    # Fusing earlier frees time for more passes at stride 8: stage 22, 32 footage / 8 synthetic validation
    # pairs, EPE px, 224x224 2-thread time per forward (one run): [6, 2] fused after pass 2 0.4628 / 4.164 /
    # 95.0 ms; [8, 2] after pass 1 0.4590 / 3.985 / 95.0 ms; [8, 2] after pass 2 0.4544 / 4.012 but slower.
    backward_fusion_pass: int = 0
    # With test_time_backward: after every pass of the levels above the output stride, each direction's motion
    # is averaged with the other's landed on it, so both refine on from the pair's consensus (a landing warp
    # at stride 8 a pass). Stage 22, [8, 2], fused after pass 1, the validation sets above: without 0.4590 /
    # 3.985; after every stride-8 pass 0.4522 / 3.681; every 2nd 0.4550 / 3.681; once, after the level 0.4577
    # / 3.840.
    backward_exchange: bool = False
    # The window (cells, odd; 1: none) of the image-guided smoothing of the motion after every pass of each
    # refinement level (one number for all, or one per level, coarsest first), and the colour scale σ of its
    # guide (frames in [0, 1]): scattermotion.model.filters. Stage 22, [8, 2], fused after pass 1, exchange;
    # 32 footage / 8 synthetic validation pairs, EPE px; (object pixels of the footage pairs; reconstruction
    # PSNR dB of 24 frame pairs of the training videos, compare_checkpoints.py --videos): none 0.4522 / 3.681
    # (0.610; 32.25); (3, 1) σ 0.05 0.4249 / 3.613 (0.612; 32.25); (5, 1) σ 0.04 0.4110 / 3.585 (0.622;
    # 32.23) at twice the cost; (3, 3) σ 0.03 0.4188 / 3.602 (0.622; 32.14); (3, 5) σ 0.03 0.4094 / 3.595
    # (0.634; 31.94). Smoothing at the output stride costs reconstruction (and, on the evaluation pairs, PSNR
    # 32.00 -> 31.79 dB for (3, 5)): the shipped model smooths at stride 8 only.
    guided_smoothing: int | tuple[int, ...] = 1
    smoothing_sigma: float = 0.05
    # At inference, Lucas–Kanade steps of the full-resolution motion against the frames (no weights), one per
    # entry, each its window in cells of 2×2 px (odd, >= 3); () none: scattermotion.model.polish. Each step
    # removes the brightness difference's mean over polish_mean_window cells (0: not; gain and exposure
    # changes), is damped by polish_damping (grey levels in [0, 1], squared: no texture, no step) and clamped
    # to ±polish_max_step px. Stage 22 with the shipped settings before it ([8, 2] passes, fused after pass 1,
    # exchange, (3, 1) smoothing); 32 footage / 8 synthetic validation pairs, EPE px (the footage pairs'
    # object pixels; reconstruction PSNR dB of 24 frame pairs of the training videos): no polish 0.4249 /
    # 3.613 (0.612; 32.25); [8, 1] passes, no polish 0.4232 / 3.645 (31.90); [8, 1], (3,), mean window 11,
    # damping 3e-4: 0.3898 / 3.590 (0.557; 34.06) in 3 % less time than before (224×224, 2 threads,
    # interleaved runs): the one step costs less than the stride-4 pass it replaces; [8, 1], (5, 3): 0.3825
    # / 3.569 (0.521; 34.44) in 4 % more. Solved per pixel instead of per cell, windows (9, 5) px, mean
    # window 21 px: 0.3938 / 3.575 (34.55). Without the mean removal (RGB, damping 1e-4, one step of
    # 5 px): footage 0.61.
    # Damping 1e-4 / 3e-4 (per pixel, (9, 5)): 0.4142 / 0.3933. Fewer stride-8 passes instead of [8, 1]
    # lose the synthetic pairs: [7, 1] 3.652, [6, 1] 3.762 (with (9, 5) px).
    # polish_noise_damping adds that many times the pair's sensor-noise variance (photometry.noise_variance)
    # to the damping: the footage validation pairs carry noise of σ ≈ 4 grey levels, which wants heavy
    # damping, clean frames want little. Stage 23 at 7650, [8, 1] passes; footage / synthetic EPE (background
    # and objects of the footage pairs; reconstruction dB; 12 smooth and 12 sprites validation-seed clips of
    # the synthetic generator): (3,), damping 3e-4: 0.3770 / 3.452 (0.361, 0.558; 34.05; 0.596, 2.188);
    # damping 1e-5 alone 0.4357 / 3.400; 1e-5 + 2 × noise 0.3767 / 3.403 (34.09; 0.546, 2.153); (5, 3), 1e-5 +
    # 3 × noise: 0.3706 / 3.374 (0.355, 0.522; 34.53; 0.515, 2.149); (7, 3) 0.3646 / 3.362 (0.349, 0.505;
    # 34.43; 0.506, 2.139), shipped; (9, 3) 0.3623 / 3.359 (0.347, 0.501; 34.37; 0.500, 2.137); (11, 3) 0.3615
    # / 3.360 (34.32); (5, 5) 0.3665 / 3.374 (33.95); (7, 3, 3) 0.3763 / 3.375 (34.83). (DIS-medium on the
    # smooth / sprites clips: 0.229 / 2.315.) Tried and left out then: filling textureless regions from the
    # textured ones around them (push–pull, trust ∝ gradient energy): smooth 0.55 -> 0.44 and footage
    # background 0.361 -> 0.346, but objects 0.554 -> 0.574 and sprites 2.15 -> 2.33: colour-blind, it spreads
    # a small object's motion over the flat background next to it. (The fill shipped since, fill_scale below,
    # weighs by the structure tensor's smaller eigenvalue over a noise-aware floor and runs last: its figures
    # are there.)
    polish_windows: tuple[int, ...] = ()
    polish_mean_window: int = 11
    polish_damping: float = 3e-4
    polish_noise_damping: float = 0.0
    polish_max_step: float = 1.0
    # After the polish, at inference: one propagation per offset (px, even, largest first), each pixel
    # taking the motion found that far to its right, left, below or above where it matches the frames
    # better (scattermotion.model.propagation): costs over propagation_window × propagation_window cells
    # of 2×2 px (odd, >= 3), a candidate taken where it costs less by a fraction propagation_margin and by
    # propagation_noise × the pair's sensor-noise variance per cell. () none. Why: on thin structures and
    # small objects that move unlike their surroundings, the stride-8 cells blur two motions together over
    # several pixels, beyond the polish's reach. Stage 23 at 7650 with the shipped settings before it;
    # footage / synthetic validation EPE (footage background, objects; reconstruction dB; 12 + 12 smooth /
    # sprites validation-seed clips): none 0.3647 / 3.362 (0.349, 0.505; 34.43; 0.506 / 2.139); [16, 8, 4],
    # window 5, margin 0.2, noise 0.5: 0.3626 / 3.171 (0.347, 0.515; 34.38; 0.473 / 2.007); window 7
    # 0.3641 / 3.205 (0.349, 0.514; 34.42; 0.476 / 2.029); no noise term (0.347, 0.552; 0.466 / 2.010):
    # noise alone swaps a small object's motion for the background's; [24, 12, 6] 0.3635 / 3.118 (0.348,
    # 0.508; 34.41; 0.451 / 1.985), shipped; [32, 16, 8, 4] (0.348, 0.530; 0.430 / 1.973) a level more
    # time; with [7, 1] passes to pay for it 0.3719 / 3.245. A floor under the noise term (σ taken as at
    # least 0.002 / 0.004 in [0, 1]: on clean frames flat regions match every candidate alike) costs the
    # smooth clips 0.451 -> 0.468 / 0.501 and the sprites 1.985 -> 2.017 / 2.049; on 48 smooth
    # validation-seed clips: none 0.5597, shipped 0.5185 (better on 22, worse on 17), floor 0.001 0.5203,
    # 0.002 0.5365. Costs at every pixel instead of on a grid of 2×2 px cells: propagation.CELL. About 9-15 %
    # of the forward time at 224×224 on 2 threads (interleaved A/B rounds on different days): in the default
    # model since fusing the two directions earlier (backward_fusion_pass -3) pays for it.
    propagation_offsets: tuple[int, ...] = ()
    propagation_window: int = 5
    propagation_margin: float = 0.2
    propagation_noise: float = 0.0
    # Last, at inference: textureless regions take the motion of the textured ones around them
    # (scattermotion.model.fill): a pixel's weight is λ / (λ + fill_scale + fill_noise × the pair's noise
    # variance), λ the smaller eigenvalue of the first frame's structure tensor over fill_window × fill_window
    # cells of 2×2 px (odd), and push–pull fills the motion by those weights. fill_scale 0: no fill. Why:
    # flat regions get the decoder's near-uniform cues, often far from the scene's motion (a dark sky beside
    # a pylon: 4 px off where DIS is 0.2). Stage 23 at 7650 with the shipped settings; 48 + 48 smooth /
    # sprites validation-seed clips, 64 footage validation pairs (their objects): none 0.5597 / 1.6422,
    # 0.3664 (0.4769); window 7, noise 3: scale 1e-5 0.5281 / 1.6431, 0.3466 (0.4797); 5e-6 0.5365 /
    # 1.6382, 0.3471 (0.4795), shipped; 3e-6 0.5414 / 1.6391, 0.3472; 5e-6 with noise 4 0.5351 / 1.6405,
    # 0.3381 (0.4837); with the colour guide below (σ 0.2, scale 1e-5; the plain fill's window and a
    # noise factor above 4 were not swept) window 5 0.5341 / 1.6506, 0.3450
    # (0.4792), window 9 0.5363 / 1.6443, 0.3487, noise 1 0.5383 / 1.6402, 0.3603, noise 6 0.5316 /
    # 1.6571, 0.3232 (0.4867): noisy flat regions look textured, but a higher floor spreads a small
    # object's motion over the flat background next to it. The 32 footage / 8 synthetic pairs of
    # compare_checkpoints.py and the 24 reconstruction pairs of its --videos: none 0.3647 / 3.362, 34.43 dB;
    # shipped 0.3454 / 3.354, 34.41 dB. After the propagation ([24, 12, 6]): none 0.5184 / 1.5029, 0.3649
    # (0.4823); shipped 0.4888 / 1.4870, 0.3437 (0.4810). Tried and left out: guiding the pull by colour
    # (each coarser cell carrying the colour of the pixels its motion came from, the bilinear taps weighted
    # by exp(−|Δcolour|² / 2σ²); Kopf et al. 2007's joint bilateral upsampling): σ 0.2 at every level
    # 0.5426 / 1.6410, 0.3475 (0.4742), at the finest two 0.5370 / 1.6387 (0.4758), for 3.5 ms more per 3
    # pairs at 224×224 (the plain fill: 2.6 ms in the forward); and checking the filled motion's
    # photometric cost against the current one's, which stopped nothing: flat regions match any motion.
    fill_scale: float = 0.0
    fill_window: int = 7
    fill_noise: float = 3.0
    cgu_hidden: int = 32  # hidden channels of the CGU weight predictor
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the weights

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)  # type: ignore[assignment]
        self.temporal_strides = tuple(int(s) for s in self.temporal_strides)
        if len(self.channels) != len(PYRAMID_STRIDES):
            raise ValueError(f"channels needs {len(PYRAMID_STRIDES)} entries (strides {PYRAMID_STRIDES})")
        if self.clip_len < 2:
            raise ValueError("clip_len must be >= 2")
        if self.cue_window < 3 or self.cue_window % 2 == 0:
            raise ValueError("cue_window must be odd and >= 3")
        if self.refine_window < 1 or self.refine_window % 2 == 0:
            raise ValueError("refine_window must be odd")
        if self.output_stride not in PYRAMID_STRIDES[:-1]:
            raise ValueError(f"output_stride must be one of {PYRAMID_STRIDES[:-1]}")
        self.refine_iterations = self._per_level(self.refine_iterations, "refine_iterations")
        self.guided_smoothing = self._per_level(self.guided_smoothing, "guided_smoothing")
        if any(
            self.smoothing_window(s) < 1 or self.smoothing_window(s) % 2 == 0
            for s in self.decoder_strides[1:]
        ):
            raise ValueError(f"guided_smoothing windows must be odd and >= 1, got {self.guided_smoothing}")
        if self.smoothing_sigma <= 0:
            raise ValueError(f"smoothing_sigma must be > 0, got {self.smoothing_sigma}")
        self.polish_windows = tuple(int(w) for w in self.polish_windows)
        if any(w < 3 or w % 2 == 0 for w in self.polish_windows):
            raise ValueError(f"polish_windows must be odd and >= 3, got {list(self.polish_windows)}")
        if self.polish_mean_window != 0 and (self.polish_mean_window < 3 or self.polish_mean_window % 2 == 0):
            raise ValueError(
                f"polish_mean_window must be 0 (none) or odd and >= 3, got {self.polish_mean_window}"
            )
        if self.polish_noise_damping < 0:
            raise ValueError(f"polish_noise_damping must be >= 0, got {self.polish_noise_damping}")
        if self.polish_damping <= 0 or self.polish_max_step <= 0:
            raise ValueError(
                "polish_damping and polish_max_step must be > 0, "
                f"got {self.polish_damping}, {self.polish_max_step}"
            )
        self.propagation_offsets = tuple(int(o) for o in self.propagation_offsets)
        if any(o < 2 or o % 2 for o in self.propagation_offsets):
            raise ValueError(
                f"propagation_offsets must be even and >= 2, got {list(self.propagation_offsets)}"
            )
        if self.propagation_window < 3 or self.propagation_window % 2 == 0:
            raise ValueError(f"propagation_window must be odd and >= 3, got {self.propagation_window}")
        if self.propagation_margin < 0 or self.propagation_noise < 0:
            raise ValueError(
                "propagation_margin and propagation_noise must be >= 0, "
                f"got {self.propagation_margin}, {self.propagation_noise}"
            )
        if self.fill_scale < 0 or self.fill_noise < 0:
            raise ValueError(
                f"fill_scale and fill_noise must be >= 0, got {self.fill_scale}, {self.fill_noise}"
            )
        if self.fill_window < 1 or self.fill_window % 2 == 0:
            raise ValueError(f"fill_window must be odd and >= 1, got {self.fill_window}")
        if any(self.passes(s) < 1 for s in self.decoder_strides[1:]):
            raise ValueError("refine_iterations must be >= 1")
        self.backward_fusion_pass = int(self.backward_fusion_pass)
        above = 2 * self.output_stride
        passes_above = self.passes(above) if above in self.decoder_strides[1:] else 0
        if not -passes_above <= self.backward_fusion_pass <= self.passes(self.output_stride):
            raise ValueError(
                "backward_fusion_pass must be a pass of the output level "
                f"(1..{self.passes(self.output_stride)}), 0 (its last) or one of the level above counted "
                f"back from its last (-1..-{passes_above}), got {self.backward_fusion_pass}"
            )
        if self.test_time_mirror not in MIRROR_AXES:
            raise ValueError(f"test_time_mirror must be one of {sorted(MIRROR_AXES)}")
        if self.upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}")
        if not set(self.temporal_strides) <= set(PYRAMID_STRIDES):
            raise ValueError(f"temporal_strides must be pyramid strides {PYRAMID_STRIDES}")
        if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise ValueError("temporal_kernel must be odd")

    # ---- derived ---------------------------------------------------------------------------------
    @property
    def coarse_stride(self) -> int:
        return PYRAMID_STRIDES[-1]

    @property
    def decoder_strides(self) -> tuple[int, ...]:
        """Strides of the decoder levels, coarsest first (stride 16, then each refinement level)."""
        return tuple(s for s in reversed(PYRAMID_STRIDES) if s >= self.output_stride)

    def _per_level(self, value: int | list[int] | tuple[int, ...], name: str) -> int | tuple[int, ...]:
        """A per-refinement-level field as one int for every level, or a tuple of one per level."""
        if not isinstance(value, (list, tuple)):
            return int(value)
        if len(value) != len(self.decoder_strides) - 1:
            raise ValueError(
                f"{name} needs one entry per refinement level (strides {list(self.decoder_strides[1:])}), "
                f"got {list(value)}"
            )
        return tuple(int(n) for n in value)

    def _at_level(self, value: int | tuple[int, ...], stride: int) -> int:
        return value[self.decoder_strides.index(stride) - 1] if isinstance(value, tuple) else value

    def passes(self, stride: int) -> int:
        """Refinement passes of the decoder level at ``stride``."""
        return self._at_level(self.refine_iterations, stride)

    @property
    def backward_fusion_point(self) -> tuple[int, int]:
        """``(stride, pass)``: the decoder pass after which ``test_time_backward`` fuses the directions."""
        if self.backward_fusion_pass < 0:
            above = 2 * self.output_stride
            return above, self.passes(above) + 1 + self.backward_fusion_pass
        return self.output_stride, self.backward_fusion_pass or self.passes(self.output_stride)

    def smoothing_window(self, stride: int) -> int:
        """The guided smoothing's window at the refinement level at ``stride`` (1: none)."""
        return self._at_level(self.guided_smoothing, stride)

    @property
    def uses_noise_variance(self) -> bool:
        """Whether an inference step after the decoder scales by the pairs' sensor-noise variance."""
        return bool(
            (self.polish_windows and self.polish_noise_damping)
            or (self.propagation_offsets and self.propagation_noise)
            or (self.fill_scale and self.fill_noise)
        )

    def channels_at(self, stride: int) -> int:
        return self.channels[PYRAMID_STRIDES.index(stride)]

    # ---- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["channels"] = list(self.channels)
        out["temporal_strides"] = list(self.temporal_strides)
        out["polish_windows"] = list(self.polish_windows)
        for name in ("refine_iterations", "guided_smoothing"):
            if isinstance(out[name], tuple):
                out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MotionConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown MotionConfig keys: {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MotionConfig:
        return cls.from_dict(json.loads(text))

    # ---- presets ---------------------------------------------------------------------------------
    @classmethod
    def small(cls, **overrides: Any) -> MotionConfig:
        """Default: real-time on a 2-core CPU (>= 30 frame pairs/s at 224×224)."""
        return cls(**overrides)

    @classmethod
    def large(cls, **overrides: Any) -> MotionConfig:
        """For GPUs: wider features and decoders, larger refinement window."""
        params: dict[str, Any] = dict(
            channels=(32, 48, 64, 96),
            cue_hidden=96,
            refine_hidden=64,
            cgu_hidden=64,
        )
        params.update(overrides)
        return cls(**params)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> MotionConfig:
        presets = {"small": cls.small, "large": cls.large}
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(presets)}")
        return presets[name](**overrides)
