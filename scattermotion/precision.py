"""Numeric precision of the network: fp32, or bf16 autocast where the hardware runs it natively.

bf16 halves the bytes every convolution moves and runs on AVX512-BF16 / AMX-BF16 units where the CPU has
them (detected from the CPU flags at run time: machines of one kind differ, so this is never assumed); on
other CPUs it is emulated and slower than fp32, so ``auto`` picks fp32 there. Only the network's
convolutions and matrix products run in bf16: the soft-argmax motion, the losses and the optimizer state
stay fp32 (bf16's 8-bit mantissa would round a 60 px displacement to 0.25 px).
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU's native bf16 features (from ``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return tuple(f for f in _BF16_CPU_FLAGS if f in flags)
    return ()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` or ``"bf16"``: what ``precision`` (auto | fp32 | bf16) means on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_bf16_flags() else "fp32"


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The context the network's forward pass runs in (``precision`` already resolved)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def full_precision(device_type: str = "cpu") -> AbstractContextManager:
    """Inside an autocast region: run this part in fp32 (callers cast their inputs with ``.float()``)."""
    return torch.autocast(device_type, enabled=False)
