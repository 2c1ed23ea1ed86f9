"""Distributed set-up: a plain process, or one rank of a ``torchrun`` job (the torchvision references
recipe: ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment, gloo on the CPU, NCCL on CUDA)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from scattermotion.errors import InputError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # we initialised the process group (and tear it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment (if any) and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise InputError(None, f"--device {device}: CUDA is not available on this machine")
        index = int(device.split(":")[1]) if ":" in device else local_rank
        chosen = torch.device("cuda", index)
        torch.cuda.set_device(chosen)
    else:
        chosen = torch.device("cpu")
    ctx = DistContext(rank, world_size, local_rank, chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        ctx.owns_group = True
    return ctx
