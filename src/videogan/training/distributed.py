"""One code path for a single process and for `torchrun`: rank, world size, device, DDP wrapping.

Without torchrun's environment (WORLD_SIZE unset or 1) everything is a no-op; under
torchrun each rank joins the process group (NCCL on GPUs, gloo on CPU). Only rank 0 writes.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..config import ConfigError


@dataclass
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def wrap(self, module: nn.Module) -> nn.Module:
        if not self.enabled:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def no_sync(self, module: nn.Module):
        """Skip the gradient all-reduce of `module` (e.g. D's gradients during the G step)."""
        module = getattr(module, "_orig_mod", module)  # torch.compile wraps the DDP module
        return module.no_sync() if isinstance(module, nn.parallel.DistributedDataParallel) else nullcontext()

    def sync_if(self, module: nn.Module, sync: bool):
        """All-reduce `module`'s gradients in the backward passes run inside this context only if `sync`
        (gradient accumulation: the micro-batches before the last add up locally)."""
        return nullcontext() if sync else self.no_sync(module)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """Average a tensor over ranks (for logging), returned on the tensor's own device. The all-reduce runs
        on this rank's device: NCCL takes no CPU tensors."""
        if self.enabled:
            reduced = value.to(self.device, copy=True)
            dist.all_reduce(reduced)
            value = (reduced / self.world_size).to(value.device)
        return value

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            # All ranks tear down together: a rank that closes its sockets while a peer's gloo thread still
            # reads from them makes that peer abort (SIGABRT, "Connection closed by peer").
            dist.barrier()
            dist.destroy_process_group()


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def setup(device_name: str = "auto") -> DistributedContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)
