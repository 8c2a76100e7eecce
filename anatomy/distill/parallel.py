"""torchrun plumbing for distillation: the process group, barriers, and rank 0's values or errors on every rank."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from anatomy.errors import AnatomyError


@dataclass
class Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_setup(device: str | None) -> tuple[Dist, Any]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: join the process group (NCCL on GPUs, gloo on CPU)."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    dist = Dist(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))
    if device is None:
        device = f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if world > 1:
        import torch.distributed as td

        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        if not td.is_initialized():
            td.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dist, dev


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        import torch.distributed as td

        td.barrier()


def broadcast(dist: Dist, obj):
    """Rank 0's value on every rank; an exception on rank 0 is re-raised everywhere (no rank hangs)."""
    if dist.world == 1:
        if isinstance(obj, BaseException):
            raise obj
        return obj
    import torch.distributed as td

    box = [obj if dist.main else None]
    td.broadcast_object_list(box, src=0)
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def safe(fn):
    """fn()'s value, or the AnatomyError it raised (so rank 0 can hand it to every rank)."""
    try:
        return fn()
    except AnatomyError as error:
        return error


def global_mean(dist: Dist, value) -> float:
    if dist.world > 1:
        import torch.distributed as td

        value = value.clone()
        td.all_reduce(value)  # SUM (gloo has no AVG)
        value = value / dist.world
    return float(value)
