"""Training clips from a folder of ordinary video files, held in memory.

A simple path for modest amounts of footage: every video is decoded, centre-cropped
to a square, resized to `size`, and cut into non-overlapping clips of `frames`.
(Stabilisation, shot detection and sharded datasets for large data are `videogan prepare`'s job.)
"""
from __future__ import annotations

import os
import sys
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .decode import DataError, VideoDecodeError, find_videos, iter_frames


def frames_to_clips(frames: np.ndarray, clip_frames: int, size: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> uint8 clips [N, 3, clip_frames, size, size] (centre square crop, area resize)."""
    t, h, w, _ = frames.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    n = t // clip_frames
    if n == 0:
        return torch.empty(0, 3, clip_frames, size, size, dtype=torch.uint8)
    x = torch.from_numpy(frames[: n * clip_frames, top : top + side, left : left + side])
    x = x.permute(0, 3, 1, 2).float()  # [T, 3, side, side]
    x = F.interpolate(x, size=(size, size), mode="area") if side != size else x
    x = x.round().clamp(0, 255).to(torch.uint8)
    return x.reshape(n, clip_frames, 3, size, size).permute(0, 2, 1, 3, 4).contiguous()


def _chunks(frames: Iterator[np.ndarray], length: int) -> Iterator[list[np.ndarray]]:
    """Consecutive, non-overlapping runs of `length` frames (a shorter tail is dropped)."""
    chunk: list[np.ndarray] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == length:
            yield chunk
            chunk = []


class VideoClips:
    """`clips(index, batch_size)` -> uint8 [B, 3, T, S, S], drawn at random, reproducibly per (seed, index)."""

    def __init__(self, inputs: list[str | os.PathLike], frames: int, size: int, seed: int = 0):
        self.seed = seed
        paths = find_videos(inputs)
        if not paths:
            raise DataError(f"{', '.join(map(str, inputs))}: no video files found")
        chunks, self.skipped = [], []
        for path in paths:
            try:
                for chunk in _chunks(iter_frames(path), frames):
                    chunks.append(frames_to_clips(np.stack(chunk), frames, size))
            except VideoDecodeError as e:  # clips cut before a mid-file error are kept
                self.skipped.append(str(e))
                print(f"skipped: {e}", file=sys.stderr)
        self.data = torch.cat(chunks) if chunks else torch.empty(0)
        if len(self.data) == 0:
            raise DataError(f"{', '.join(map(str, inputs))}: no clip of {frames} frames could be cut from the videos")

    def __len__(self) -> int:
        return len(self.data)

    def clips(self, index: int, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + index * 7_919 + 29) % (2**63))
        return self.data[torch.randint(len(self.data), (batch_size,), generator=gen)].to(device, non_blocking=True)
