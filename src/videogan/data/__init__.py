"""Data: decoding, datasets, synthetic scenes. Every source yields uint8 clips [B, 3, T, H, W]."""
from __future__ import annotations

from typing import Protocol

import torch

from ..config import Config
from .synthetic import SyntheticBatch, SyntheticScenes
from .videos import VideoClips


class ClipSource(Protocol):
    def clips(self, index: int, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Batch `index` of the stream: uint8 [B, 3, T, H, W] on `device`; the same index gives the same batch."""
        ...


def make_source(cfg: Config) -> ClipSource:
    m, t = cfg.model, cfg.train
    if t.data == "synthetic":
        return SyntheticScenes(m.frames, m.size, seed=t.seed, cfg=cfg.synthetic)
    return VideoClips([t.data], m.frames, m.size, seed=t.seed)


__all__ = ["ClipSource", "SyntheticBatch", "SyntheticScenes", "VideoClips", "make_source"]
