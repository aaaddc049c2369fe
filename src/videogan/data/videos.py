"""Training clips from a folder of ordinary video files, decoded on the fly.

For small experiments: no preparation step, but every pass decodes the videos again (in the
DataLoader workers) and there is no stabilisation or motion filter. Clips are cut exactly as
`videogan prepare --no-stabilize` cuts them (same decoding, shot cuts, crop and resize), so a
model sees the same kind of clip either way; for anything large, prepare shards once instead.
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset

from ..config import DataConfig
from .augment import maybe_hflip, randint
from .decode import DataError, VideoDecodeError, find_videos
from .prepare import PrepareConfig, VideoStats, video_clips
from .streaming import (
    BatchBuffers,
    ReturnSlots,
    loader_batches,
    loader_slots,
    reader_of,
    reader_samples,
    seed_of,
    shuffled,
    warn,
)

# Decoded clips are large (393 KB at 32x64x64), so the shuffle buffer holds at most this many.
MAX_DECODED_BUFFER = 256


class _VideoStream(IterableDataset):
    """One rank's batches, split between the DataLoader workers it runs in (a "reader" is one worker of one
    rank)."""

    def __init__(self, source: VideoClips, start_step: int, rank: int, world_size: int, batch_size: int,
                 slots: ReturnSlots | None = None):
        super().__init__()
        self.source, self.start_step, self.batch_size = source, start_step, batch_size
        self.rank, self.world_size = rank, world_size
        self.slots = slots  # from loader_slots: workers' batches in reusable shared buffers

    def clips(self, reader: int, readers: int) -> Iterator[np.ndarray]:
        """This reader's clips uint8 [T, S, S, 3], pass after pass over the videos (shuffled per pass).

        With at least as many videos as readers each reader decodes its own videos; otherwise every
        reader decodes all of them and keeps every `readers`-th clip. DataError only once this reader has
        been through every video without a clip (see `reader_samples`)."""
        src = self.source
        cut = PrepareConfig(size=src.size, frames=src.frames, stabilize=False)
        rng = random.Random(seed_of("offsets", src.seed, self.start_step, reader, readers))

        def read(video: Path) -> Iterator[np.ndarray]:
            # A random temporal offset per pass, so clips do not always start at the same frames.
            offset = randint(rng, src.frames) if src.cfg.random_offset else 0
            try:
                for clip in video_clips(video, cut, VideoStats(), offset=offset):
                    yield clip.frames
            except VideoDecodeError as e:  # clips cut before a mid-file error were used
                warn(f"skipped: {e}")

        def nothing(total: int, videos: int) -> DataError:
            return DataError(f"{src.source}: no clip of {src.frames} frames could be cut from the videos "
                             f"(see the warnings above)")

        yield from reader_samples(src.videos, reader, readers, ("videos", src.seed, self.start_step), read,
                                  lambda clip: True, nothing, mark_passes=src.cfg.shuffle_within_pass)

    def __iter__(self) -> Iterator[torch.Tensor]:
        reader, readers = reader_of(self.rank, self.world_size)
        src = self.source
        gen = torch.Generator().manual_seed(seed_of("augment", src.seed, self.start_step, reader, readers))
        buffer = min(MAX_DECODED_BUFFER, max(1, src.cfg.shuffle_buffer))
        clips = shuffled(self.clips(reader, readers), buffer,
                         random.Random(seed_of("buffer", src.seed, self.start_step, reader)))
        buffers = BatchBuffers((self.batch_size, 3, src.frames, src.size, src.size), self.slots)
        while True:
            batch = buffers.new()
            for j in range(self.batch_size):
                clip = torch.from_numpy(next(clips)).permute(3, 0, 1, 2)  # [3, T, S, S]
                batch[j] = maybe_hflip(clip, gen) if src.cfg.hflip else clip
            yield buffers.lend(batch)


class VideoClips:
    """Clips of raw videos: `batches(...)` -> uint8 [B, 3, frames, size, size], endlessly, decoded on the
    fly."""

    def __init__(self, inputs: list[str | os.PathLike], frames: int, size: int, seed: int = 0,
                 cfg: DataConfig | None = None):
        self.source = ", ".join(map(str, inputs))
        self.frames, self.size, self.seed, self.cfg = frames, size, seed, cfg or DataConfig()
        self.videos = find_videos(inputs)
        if not self.videos:
            raise DataError(f"{self.source}: no video files found")

    def batches(self, start_step: int, batch_size: int, rank: int = 0, world_size: int = 1,
                device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
        """This rank's batches (CPU uint8, pinned for CUDA). Reproducible per (seed, start_step, rank,
        workers); a resumed run starts a fresh stream seeded by its step rather than replaying the old one."""
        slots = loader_slots(self.cfg.workers)
        stream = _VideoStream(self, start_step, rank, world_size, batch_size, slots)
        yield from loader_batches(stream, self.cfg.workers, device, slots)
