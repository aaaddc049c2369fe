"""Batches for sources with random access by batch index."""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch


def indexed_batches(source, start_step: int, batch_size: int, rank: int = 0, world_size: int = 1,
                    device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
    """`ClipSource.batches` for a source with `clips(index, batch_size, device)`: batch number
    `step * world_size + rank`, so ranks never share a batch and a resumed run continues exactly."""
    for step in itertools.count(start_step):
        yield source.clips(step * world_size + rank, batch_size, device)
