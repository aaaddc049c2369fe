"""Clips from noise: seeded z, and G(z) with BatchNorm in a chosen mode. What the sampling API (sample.py),
the training loop's progress grids and the FVD protocol's generated side all draw with, so they draw alike."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

from ..config import ConfigError
from ..models import GeneratorOutput, ImageToVideoGenerator

BatchNormMode = Literal["running", "batch"]


def noise(num: int, z_dim: int, seed: int) -> torch.Tensor:
    """z ~ N(0, 1), [num, z_dim], reproducible from the seed alone (drawn on the CPU, whatever the device)."""
    return torch.randn(num, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate_from_noise(generator: nn.Module, z: torch.Tensor,
                        batchnorm: BatchNormMode = "running") -> GeneratorOutput:
    """G(z) on the generator's device; BatchNorm from running statistics or from this batch."""
    if isinstance(generator, ImageToVideoGenerator):
        raise ConfigError("this is an image-to-video (conditional) model: it animates images, "
                          "see `videogan animate`")
    device = next(generator.parameters()).device
    if batchnorm == "batch":
        with batch_statistics(generator):
            return generator(z.to(device))
    with eval_mode(generator):
        return generator(z.to(device))


@contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Run BatchNorm layers on the batch's own statistics, leaving running statistics untouched."""
    was_training = module.training
    buffers = {name: b.clone() for name, b in module.named_buffers()}
    module.train()
    try:
        yield
    finally:
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(buffers[name])
        module.train(was_training)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run the module in eval mode (BatchNorm from running statistics), restoring its training flag after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
