"""Scale-out with torchrun: one process per GPU (or per CPU worker), DistributedDataParallel.

Under `torchrun --nproc_per_node N -m edge.cli distill …` the environment names each process's
RANK, LOCAL_RANK and WORLD_SIZE: every process trains on its shard of each epoch, DDP averages
the gradients, and rank 0 alone evaluates, logs and writes checkpoints. Without torchrun it is
a single process, on the GPU when there is one, else on the CPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cluster:
    """This process's place: rank, number of processes, and the device it trains on."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """True for the one process that evaluates, logs and writes checkpoints."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This process's part of n ordered items (every world-th, from its rank)."""
        return slice(self.rank, n, self.world)

    def wrap(self, module: nn.Module) -> nn.Module:
        """`module` in DDP when there are several processes (parameters a stage does not use,
        such as the other modality's branch, are allowed)."""
        if self.world == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

    def check_replicas(self, model: nn.Module) -> None:
        """Raise when the processes' parameters differ (DDP keeps them equal; this proves it).
        BatchNorm statistics may differ after the last step: rank 0's are the ones saved."""
        if self.world == 1:
            return
        with torch.no_grad():
            total = torch.stack([p.double().sum() for p in model.parameters()]).sum()
            values = [torch.zeros_like(total) for _ in range(self.world)]
            dist.all_gather(values, total)
        if not all(torch.isclose(v, values[0], rtol=1e-9, atol=1e-9) for v in values):
            raise RuntimeError(f"model replicas diverged across ranks: {values}")


def world_size() -> int:
    """How many processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join() -> Cluster:
    """This process's Cluster: from torchrun's environment, else a single process."""
    if world_size() == 1:
        return Cluster(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    cluster = Cluster(dist.get_rank(), dist.get_world_size(), device)
    log.info("rank %d of %d on %s (%s)", cluster.rank, cluster.world, device, backend)
    return cluster


def leave() -> None:
    """End the process group (after the last collective call)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
