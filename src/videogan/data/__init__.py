"""Data: decoding, datasets, synthetic scenes. Every source yields uint8 clips [B, 3, T, H, W]."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch

from ..config import Config
from .decode import DataError
from .shards import is_shard_source
from .stacked import StackedList
from .streaming import ShardClips
from .synthetic import SyntheticBatch, SyntheticScenes
from .videos import VideoClips


class ClipSource(Protocol):
    def batches(self, start_step: int, batch_size: int, rank: int = 0, world_size: int = 1,
                device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
        """One uint8 batch [B, 3, T, H, W] per training step from `start_step` on, endlessly: this
        rank's share (ranks see different clips). Streams may yield CPU tensors; the caller moves them to
        `device`."""
        ...


def make_source(cfg: Config) -> ClipSource:
    """The training data `data.source` names (see DataConfig); a DataError names it if it is unusable."""
    m, d, seed = cfg.model, cfg.data, cfg.train.seed
    if d.root and not d.source.endswith(".txt"):
        raise DataError(f"data.root ({d.root}) applies only to a LIST.txt source, not to {d.source}")
    if d.source == "synthetic":
        return SyntheticScenes(m.frames, m.size, seed=seed, cfg=cfg.synthetic)
    if d.source.endswith(".txt"):
        return StackedList(d.source, d.root or Path(d.source).parent, m.frames, m.size, seed=seed, cfg=d)
    if is_shard_source(d.source):
        return ShardClips(d.source, m.frames, m.size, seed=seed, cfg=d)
    if not Path(d.source).exists():
        raise DataError(f"{d.source}: no such file or folder "
                        "(expected 'synthetic', shards, a LIST.txt or videos)")
    return VideoClips([d.source], m.frames, m.size, seed=seed, cfg=d)


__all__ = ["ClipSource", "ShardClips", "StackedList", "SyntheticBatch", "SyntheticScenes", "VideoClips",
           "make_source"]
