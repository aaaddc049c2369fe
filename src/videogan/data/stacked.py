"""The original's data format: a list of stacked-frame JPEGs (Vondrick et al.'s golf.txt +
frames-stable-many/).

`--data LIST.txt --root FRAMES_DIR`: LIST.txt names one JPEG per line, relative to the root (the first
whitespace-separated token; blank lines ignored, later tokens such as a label too). Each JPEG holds a
video's frames stacked vertically, each frame as high as the image is wide (128 x 128 in the released data).

`load_stacked_clip` does what the original loader (cvondrick/videogan data/donkey_video2.lua) does: the
first `frames` frames, the last frame repeated when the video is shorter, each frame scaled to
size x size with Torch7's `image.scale(crop, 64, 64)` (default mode "bilinear"). Torch7's "bilinear"
is not a plain bilinear sampler: when shrinking, its scaleLinear_rowcol averages the source pixels each
destination pixel covers (a box filter with fractional edge weights), i.e. area resampling, which for
the released data (128 -> 64, an exact factor 2) is the mean of each 2x2 block, exactly what
F.interpolate(mode="area") computes. When enlarging, it interpolates linearly with the corners aligned,
with no antialiasing: F.interpolate(mode="bilinear", align_corners=True, antialias=False). The one
difference: the original kept float pixels; these clips are rounded back to uint8 (at most 0.5/255 off).
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler

from ..config import DataConfig
from .augment import maybe_hflip, resize_clip, window_start
from .decode import DataError, warn
from .shards import decode_image
from .streaming import loader_batches, seed_of


def read_list(list_file: str | os.PathLike, root: str | os.PathLike = "") -> list[str]:
    """Absolute paths of the videos a LIST.txt names (relative to `root`, or to the list's own folder)."""
    list_file = Path(list_file)
    try:
        lines = list_file.read_text(errors="replace").splitlines()
    except OSError as e:
        raise DataError(f"{list_file}: cannot read the list ({e.strerror or e})") from None
    base = Path(root) if str(root) else list_file.parent
    paths = [str(base / line.split()[0]) for line in lines if line.strip()]
    if not paths:
        raise DataError(f"{list_file}: the list names no videos")
    return paths


def _read_stack(path: str | os.PathLike) -> torch.Tensor:
    """The stacked JPEG as uint8 frames [count, W, W, 3] (a view of the decoded image)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    img = decode_image(data)
    if img is None:
        raise DataError(f"{path}: not a decodable image")
    height, width = img.shape[:2]
    count = height // width
    if count < 1:
        raise DataError(f"{path}: image {width}x{height} is shorter than one {width}x{width} frame")
    return torch.from_numpy(img[: count * width]).view(count, width, width, 3)


def _clip_from_stack(stack: torch.Tensor, frames: int, size: int, offset: int) -> torch.Tensor:
    count, width = stack.shape[0], stack.shape[1]
    index = torch.tensor([min(offset + i, count - 1) for i in range(frames)])
    clip = stack[index].permute(3, 0, 1, 2)  # [3, frames, W, W] (the indexing copies only the frames used)
    if width == size:
        return clip.contiguous()
    return resize_clip(clip, size, mode="area" if width > size else "bilinear")


def load_stacked_clip(path: str | os.PathLike, frames: int, size: int, offset: int = 0) -> torch.Tensor:
    """One stacked-frame JPEG -> uint8 clip [3, frames, size, size], as the original loader: frames offset,
    offset+1, ... (offset 0: the first ones), the last frame repeated past the end, each frame resized (area
    when shrinking, bilinear with aligned corners when enlarging: Torch7's image.scale). DataError if the file
    cannot be read or decoded or holds no full frame."""
    stack = _read_stack(path)
    return _clip_from_stack(stack, frames, size, offset)


class _Draws(Sampler):
    """Draw numbers for steps start_step, start_step + 1, ...: rank r's B draws of step s are
    ((s * world_size + r) * B + j), so ranks partition one global sequence and a resumed run draws what an
    uninterrupted one would have."""

    def __init__(self, start_step: int, batch_size: int, rank: int, world_size: int):
        self.start_step, self.batch_size = start_step, batch_size
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            first = (step * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)
            step += 1


class _StackedDataset(Dataset):
    """Item n (a draw number) is a random video (with replacement, like the original's sampler), seeded by
    (seed, n): the same in any worker. An unreadable video is skipped with a warning and another drawn."""

    def __init__(self, paths: list[str], list_file: str, frames: int, size: int, seed: int, cfg: DataConfig):
        self.paths, self.list_file, self.frames, self.size = paths, list_file, frames, size
        self.seed, self.cfg = seed, cfg
        self.bad: set[int] = set()  # per process: known-unreadable videos are not retried

    def __len__(self) -> int:  # only for DataLoader's bookkeeping; draws are unbounded
        return len(self.paths)

    def __getitem__(self, n: int) -> torch.Tensor:
        rng = random.Random(seed_of("stacked", self.seed, n))
        while len(self.bad) < len(self.paths):
            i = rng.randrange(len(self.paths))
            if i in self.bad:
                continue
            try:
                clip = self._load(self.paths[i], rng)
            except DataError as e:
                self.bad.add(i)
                warn(f"skipped: {e}")
                continue
            return clip
        raise DataError(f"{self.list_file}: none of the {len(self.paths)} listed videos could be read (see "
                        "the warnings)")

    def _load(self, path: str, rng: random.Random) -> torch.Tensor:
        stack = _read_stack(path)
        count = stack.shape[0]
        # The original always took the first frames; data.random_offset picks a random window
        # in longer videos.
        offset = window_start(count, self.frames, rng, self.cfg.random_offset) if count > self.frames else 0
        clip = _clip_from_stack(stack, self.frames, self.size, offset)
        return maybe_hflip(clip, rng) if self.cfg.hflip else clip


class StackedList:
    """The original's LIST.txt of stacked-frame JPEGs: `batches(...)` -> uint8 [B, 3, frames, size, size],
    endlessly."""

    def __init__(self, list_file: str | os.PathLike, root: str | os.PathLike, frames: int, size: int,
                 seed: int = 0, cfg: DataConfig | None = None):
        self.list_file, self.frames, self.size, self.seed = str(list_file), frames, size, seed
        self.cfg = cfg or DataConfig()
        self.paths = read_list(list_file, root)

    def __len__(self) -> int:
        return len(self.paths)

    def dataset(self) -> _StackedDataset:
        return _StackedDataset(self.paths, self.list_file, self.frames, self.size, self.seed, self.cfg)

    def batches(self, start_step: int, batch_size: int, rank: int = 0, world_size: int = 1,
                device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
        """This rank's batches from `start_step` on (CPU uint8, pinned when `device` is CUDA). Batch k is the
        same whatever the number of workers, and a run resumed at step s gets exactly the batches it would
        have had."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        yield from loader_batches(self.dataset(), self.cfg.workers, device, batch_size=batch_size,
                                  sampler=_Draws(start_step, batch_size, rank, world_size))
