"""One rule for CPU threads: ``--threads N`` caps torch's and OpenCV's thread pools in this process
(``--workers`` always means processes)."""

from __future__ import annotations

from scattermotion.errors import InputError


def set_threads(threads: int | None, with_torch: bool = True, flag: str = "--threads") -> None:
    """Cap OpenCV's (and, with ``with_torch``, torch's) threads at ``threads``; None leaves their defaults.
    ``with_torch=False`` keeps torch unimported where a classical-only process never needs it."""
    if threads is None:
        return
    if threads < 1:
        raise InputError(None, f"{flag} must be >= 1, got {threads}")
    import cv2

    cv2.setNumThreads(threads)
    if with_torch:
        import torch

        torch.set_num_threads(threads)
