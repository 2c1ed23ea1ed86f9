"""One rule for CPU threads: ``--threads N`` caps torch's and OpenCV's thread pools in this process
(``--workers`` always means processes); training also keeps numpy's BLAS at one thread."""

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


def cap_blas_threads(limit: int | None = 1):
    """Cap numpy's BLAS pool in this process at ``limit`` threads (None: leave it); returns threadpoolctl's
    limiter, a context manager that restores the pool on exit. Training and its data workers keep it at
    one: the data side's products are N×2 by 2×J, where threads gain nothing, and a BLAS pool spinning
    beside torch's threads on a busy 2-core machine made one such product 15x slower (39.6 vs 2.7 ms)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limit, user_api="blas")
