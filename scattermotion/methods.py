"""The motion methods: one registry (name, label, learned or classical) and the one place that builds them.

Every verb, benchmark and help string takes its method names from here (like ptlflow's model registry), so a
method added or renamed here shows up everywhere at once and an unknown name fails the same way everywhere:
one :class:`InputError` listing the valid names.

Importing this module loads neither torch nor OpenCV: a classical benchmark process must not pay for torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from scattermotion.errors import InputError

LEARNED = "learned"
CLASSICAL = "classical"
OURS = "ours"
REFINED = "ours-refined"
ACCURATE = "ours-accurate"
# What ours-accurate changes in the packaged model: both directions decoded through every pass, fused only
# after the first pass at stride 4 (the previous default's fusion), where the default fuses them three passes
# before the end of stride 8 to pay for its propagation step (MotionConfig.backward_fusion_pass). About 15 %
# slower than the default, a little more accurate at motion boundaries and on small objects.
ACCURATE_SETTINGS = (("backward_fusion_pass", 1),)


@dataclass(frozen=True)
class Method:
    """One motion method. ``preset``: a random-weights network of that preset (speed only: its motion is
    meaningless, so it is never scored); ``motion_source``: False for ``zero``, a floor to score against, not
    motion worth feeding to a classifier; ``refine``: our network's motion, then OpenCV's variational
    refinement on it (:func:`scattermotion.baselines.refine_flow`); ``settings``: inference-only config
    fields (``scattermotion.model.settings``) set on our network."""

    name: str
    label: str
    kind: str
    about: str
    preset: str | None = None
    precision: str = "fp32"
    motion_source: bool = True
    refine: bool = False
    settings: tuple[tuple[str, object], ...] = ()

    @property
    def needs_torch(self) -> bool:
        return self.kind == LEARNED

    @property
    def takes_weights(self) -> bool:
        """Our trained network (``--weights``, else the packaged default), refined or not."""
        return self.kind == LEARNED and self.preset is None

    @property
    def speed_only(self) -> bool:
        return self.preset is not None


REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            OURS, "ours (default model)", LEARNED, "our network: --weights, else the packaged default model"
        ),
        Method(
            REFINED,
            "ours + variational refinement",
            LEARNED,
            "our network, then OpenCV's variational refinement on its motion, coarse to fine",
            refine=True,
        ),
        Method(
            ACCURATE,
            "ours, both directions throughout",
            LEARNED,
            "our network decoding both directions through every pass: more accurate, ~15 % slower",
            settings=ACCURATE_SETTINGS,
        ),
        Method("ours-small", "ours-small (random)", LEARNED, "small preset, random weights", preset="small"),
        Method("ours-large", "ours-large (random)", LEARNED, "large preset, random weights", preset="large"),
        Method(
            "ours-small-bf16",
            "ours-small bf16 (random)",
            LEARNED,
            "small preset, random weights, bf16 autocast",
            preset="small",
            precision="bf16",
        ),
        Method("tvl1", "TV-L1", CLASSICAL, "OpenCV Dual TV-L1, default parameters"),
        Method("dis", "DIS-medium", CLASSICAL, "OpenCV DIS, medium preset"),
        Method("dis-fast", "DIS-ultrafast", CLASSICAL, "OpenCV DIS, ultrafast preset"),
        Method("farneback", "Farneback", CLASSICAL, "OpenCV Farneback (pyramid 0.5, 3 levels, window 15)"),
        Method("zero", "zero", CLASSICAL, "no motion: the floor every method must beat", motion_source=False),
    )
}

# The usual selections (benchmark and report defaults are picks of these).
SCORED = tuple(
    n for n, m in REGISTRY.items() if not m.speed_only
)  # every method whose motion means something
CLASSICAL_METHODS = tuple(n for n, m in REGISTRY.items() if m.kind == CLASSICAL)
MOTION_SOURCES = tuple(n for n in SCORED if REGISTRY[n].motion_source)  # what a classifier may be fed
SPEED = tuple(REGISTRY)  # the speed benchmark times every method, random presets too


def uses_network(name: str) -> bool:
    """Whether method ``name`` runs our trained network (ours, refined or not): ``--weights``, ``--min-side``
    and the device apply to it, and its outputs depend on the weights."""
    return name in REGISTRY and REGISTRY[name].takes_weights


def methods_help(names: Iterable[str] = SCORED, suffix: str = "") -> str:
    """``"ours | tvl1 | ..."`` for a CLI help string, from the registry (never typed by hand)."""
    return " | ".join(names) + suffix


def get_method(name: str, allowed: Iterable[str] = SCORED) -> Method:
    """The registry entry of ``name``; :class:`InputError` listing the valid names when it is not one."""
    allowed = tuple(allowed)
    if name not in allowed:
        raise InputError(None, f"unknown method {name!r}; choose from {', '.join(allowed)}")
    return REGISTRY[name]


def check_methods(names: Iterable[str], allowed: Iterable[str] = SCORED) -> list[str]:
    """``names`` in order, duplicates dropped, each one checked (:func:`get_method`); at least one."""
    allowed = tuple(allowed)
    checked = list(dict.fromkeys(names))
    if not checked:
        raise InputError(None, f"no method given; choose from {', '.join(allowed)}")
    for name in checked:
        get_method(name, allowed)
    return checked


def method_label(name: str, weights: str | os.PathLike | None = None) -> str:
    """The label tables show: the registry's, or ``ours (<weights file>)`` for ours with explicit weights."""
    if weights is not None and name in REGISTRY and REGISTRY[name].takes_weights:
        suffix = REGISTRY[name].label.removeprefix("ours (default model)").removeprefix("ours")
        return f"{OURS} ({Path(weights).name}){suffix}"
    return REGISTRY[name].label if name in REGISTRY else name


def build_estimator(
    name: str,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    fp16: bool = False,
    batch_size: int | None = None,
    min_side: int | None = None,
    allowed: Iterable[str] = SCORED,
):
    """The :class:`~scattermotion.estimator.FlowEstimator` of method ``name``.

    ``ours`` loads ``weights`` (None: the packaged default model); a random preset builds an untrained
    network (seeded, so every run times the same one); a classical method runs on the CPU only and takes
    none of the network's options.
    """
    method = get_method(name, allowed)
    from scattermotion.estimator import ClassicalEstimator, MotionEstimator, resolve_device

    if method.kind == CLASSICAL:
        if weights is not None:
            raise InputError(weights, f"weights apply to --method {OURS} only, not {name}")
        if min_side is not None:
            raise InputError(None, f"min_side applies to --method {OURS} only, not {name}")
        if fp16 or resolve_device(device).type != "cpu":
            raise InputError(None, f"{name} is an OpenCV CPU method: drop --device cuda / --fp16")
        return ClassicalEstimator(name)
    options = {"device": device, "fp16": fp16, "batch_size": batch_size, "min_side": min_side}
    if method.takes_weights:
        estimator = MotionEstimator.from_pretrained(weights, **options)
        if method.settings:
            from scattermotion.model.settings import with_settings

            model = with_settings(estimator.model, dict(method.settings))
            estimator = MotionEstimator(model, precision=estimator.precision, **options)
        if method.refine:
            from scattermotion.estimator import RefinedEstimator

            return RefinedEstimator(estimator)
        return estimator
    if weights is not None:
        raise InputError(weights, f"{name} has random weights; pass --weights to --method {OURS}")
    import torch

    from scattermotion.model import build_motion_net

    torch.manual_seed(0)
    return MotionEstimator(build_motion_net(method.preset), precision=method.precision, **options)


def build_estimators(
    names: Iterable[str],
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    allowed: Iterable[str] = SCORED,
) -> dict:
    """One estimator per method (checked, in order, duplicates dropped) for the verbs that run several side
    by side; ``weights`` and ``device`` apply to ours (refined or not) only, and ``weights`` without ours is
    refused."""
    names = check_methods(names, allowed)
    if weights is not None and not any(REGISTRY[n].takes_weights for n in names):
        raise InputError(weights, f"--weights applies to --method {OURS}, which is not selected")
    return {
        n: build_estimator(n, weights, device, allowed=allowed)
        if REGISTRY[n].takes_weights
        else build_estimator(n, allowed=allowed)
        for n in names
    }
