"""Running under ``torchrun``: which share of the work this process owns, on which device.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them we are a single process. The process
group is only needed for the final barrier before rank 0 writes the manifest, so any backend
works: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch

from .devices import check_device


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """This process's place in a torchrun job (rank 0 of 1 when not launched by torchrun)."""
    try:
        env = DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                      int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers (as torchrun sets them): {exc}") from exc
    if not 0 <= env.rank < env.world_size:
        raise ValueError(f"RANK={env.rank} is outside WORLD_SIZE={env.world_size}")
    return env


def rank_device(requested: str, env: DistEnv) -> torch.device:
    """'cuda' means this rank's own GPU (cuda:LOCAL_RANK); anything explicit is kept. A device this
    machine lacks is refused by :func:`devices.check_device`."""
    device = check_device(requested)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", env.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(env: DistEnv, device: torch.device) -> Iterator[None]:
    """Join the torchrun job's process group for the duration (a no-op for one process)."""
    if env.world_size == 1:
        yield
        return
    import torch.distributed as dist

    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
