"""What every benchmark and evaluation report shares: the machine it ran on and how its numbers print."""

from __future__ import annotations

import math
import os
import platform
from typing import Any


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def machine_info() -> dict[str, Any]:
    """The machine and libraries a result was measured with (thread counts as they are at the call)."""
    import cv2  # here, not at the top: measuring subprocesses import this module before choosing threads
    import torch

    return {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "available_cores": available_cores(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
    }


def format_number(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    """``value × scale`` with ``digits`` decimals; "–" for a missing or non-finite value."""
    if value is None:
        return "–"
    value = float(value)
    return f"{value * scale:.{digits}f}" if math.isfinite(value) else "–"
