"""Multi-process (DDP) support: one process per device, launched by ``torchrun``.

Under ``torchrun`` the environment holds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
``init_distributed`` then joins the process group (NCCL on CUDA, Gloo on CPU) and picks this
rank's device. Outside torchrun everything here degrades to a single process (rank 0 of 1), so
the engine has one code path.

Division of labour (decisions):

* ``batch_size`` is the *global* batch, as in the paper ("512 on 8 GPUs, i.e. 64 per GPU"),
  and must be divisible by the world size.
* Every rank trains on its DistributedSampler shard (``set_epoch`` each epoch); BatchNorm
  statistics stay per rank (no SyncBatchNorm), as in the paper's multi-GPU runs.
* Only rank 0 logs, shows progress, checkpoints and writes ``result.json``.
* Evaluation runs on rank 0 alone, on the unwrapped model, over the whole test split while the
  other ranks wait at a barrier: the metrics are then exactly those of a single-process
  evaluation (a sharded DistributedSampler pads the split with duplicates, which would bias
  mAP), at the cost of idle ranks during evaluation.
* Logged losses are averaged over ranks (``all_reduce``); a NaN on any rank stops all ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from strabench.errors import ConfigError, DeviceError

__all__ = ["DistContext", "init_distributed", "shutdown_distributed", "pick_device"]


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's CUDA device if there is one, else CPU; ``cuda`` without CUDA fails."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available (use --device cpu or auto)")
        index = int(name.partition(":")[2] or local_rank)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device cuda:{index} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


@dataclass
class DistContext:
    """Who this process is; ``world_size == 1`` means no process group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # we initialised the process group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks of a short list of floats (float64 on the comm device)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def any_rank(self, flag: bool) -> bool:
        """True if ``flag`` is true on any rank (used to stop every rank on a NaN)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None


def init_distributed(device: str, *, timeout_s: float = 1800.0) -> DistContext:
    """Join the torchrun process group if the environment says so; pick this rank's device."""
    world = _env_int("WORLD_SIZE") or 1
    if world <= 1:
        return DistContext(device=pick_device(device))
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if rank is None or local_rank is None:
        raise ConfigError("WORLD_SIZE is set but RANK/LOCAL_RANK are not: launch multi-process runs with torchrun")
    dev = pick_device(device, local_rank)
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
        owns = True
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=dev, owns_group=owns)


def shutdown_distributed(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
        ctx.owns_group = False
