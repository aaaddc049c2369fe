"""Streaming clips to training. `ShardClips` streams prepared shards through one reader loop, which calls
shards.py's functions to find, read and decode them one sample at a time. The other streaming datasets
(videos.py, stacked.py) share the rest with it: seeds, the shuffle buffer, batch memory, and running a dataset
through a DataLoader with errors that stay one line.

`ShardClips` splits the data between distributed ranks and DataLoader workers ("readers"):

* Every pass over the data ("epoch") shuffles the shard list with a seed shared by all readers.
  With at least as many shards as readers, reader r of R reads shards r, r+R, r+2R, ... of that
  order (each shard is read by exactly one reader per pass). With fewer shards than readers, every
  reader reads all shards and keeps every R-th sample (a counter that runs on across passes, so
  even a data set with fewer clips than readers feeds every reader).
* Each reader shuffles its samples through a buffer of `data.shuffle_buffer` encoded clips (the
  buffer holds compressed bytes, about 50 KB for a 32x64x64 JPEG clip, not decoded frames). With
  `data.shuffle_within_pass` the buffer empties at the end of each pass, so no clip repeats before every
  clip of this reader's share has come out once.
* The stream is infinite and reproducible for a given (seed, start_step, rank, world_size, workers).
  A resumed run re-seeds everything from its start_step: it does not replay the exact clip order
  an uninterrupted run would have seen (which would need the positions of every reader's shard
  and buffer), it starts a fresh, equally random, deterministic stream.

Corrupt data never stops training and never reaches the model: a shard that cannot be opened, is empty
or is truncated, and a clip whose image is missing, does not match its crc32, does not decode or has the
wrong shape, are skipped with a one-line warning naming the shard and the key. If a reader finds nothing
usable in the whole data set, it raises DataError instead of looping forever.
"""
from __future__ import annotations

import hashlib
import itertools
import random
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from ..config import DataConfig
from .augment import coin, resize_clip, window_start
from .decode import DataError, warn
from .shards import decode_image, image_bytes, read_shard, resolve_shards, sample_name, sample_shape

T = TypeVar("T")
S = TypeVar("S")


class _PassEnd:
    def __repr__(self) -> str:
        return "PASS_END"


PASS_END = _PassEnd()  # what reader_samples(mark_passes=True) yields where a pass over the data ends


def seed_of(*parts: Any) -> int:
    """A 63-bit seed that depends on every part (stable across processes and Python versions)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def reader_of(rank: int, world_size: int) -> tuple[int, int]:
    """(this reader, number of readers): a reader is one DataLoader worker (or the process itself) of one
    rank."""
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * workers + worker, world_size * workers


def units_for_reader(units: list[T], reader: int, readers: int, *seed_parts: Any) -> tuple[list[T], bool]:
    """(this reader's units for one pass, whether they are its own). The units (shards, videos) are shuffled
    with a seed every reader shares (`seed_parts`, the pass number last); with at least as many units as
    readers, reader r takes units r, r + readers, ... (True); otherwise it gets all of them (False) and must
    keep only every `readers`-th sample itself."""
    order = list(units)
    random.Random(seed_of(*seed_parts)).shuffle(order)
    return (order[reader::readers], True) if len(order) >= readers else (order, False)


def reader_samples(units: list[T], reader: int, readers: int, seed_parts: tuple,
                   read: Callable[[T], Iterable[S]], usable: Callable[[S], bool],
                   nothing: Callable[[int, int], DataError],
                   mark_passes: bool = False) -> Iterator[S]:
    """This reader's share of the samples `read(unit)` yields, pass after pass over `units` (split as
    `units_for_reader` does, with `seed_parts` and the pass number as seed; with fewer units than readers a
    counter that runs on across passes keeps every `readers`-th sample, so every reader is fed eventually).
    Samples `usable` rejects (it says why) are left out. Once this reader has been through every unit and none
    of the samples it was given was usable, it raises `nothing(samples read, units)` instead of looping
    forever; not before: other units, which other readers had so far, may still be fine. `mark_passes`: yield
    PASS_END after each pass (for `shuffled`, which then never mixes two passes)."""
    seen: set = set()
    counter = valid = offered = total = 0
    for epoch in itertools.count():
        mine, own = units_for_reader(units, reader, readers, *seed_parts, epoch)
        for unit in mine:
            seen.add(unit)
            for sample in read(unit):
                total += 1
                if not own:
                    counter += 1
                    if (counter - 1) % readers != reader:
                        continue
                offered += 1
                if usable(sample):
                    valid += 1
                    yield sample
        if mark_passes:
            yield PASS_END
        # offered == 0 < total: so far the counter gave this reader none of the few samples; later passes will
        if valid == 0 and len(seen) == len(set(units)) and (offered > 0 or total == 0):
            raise nothing(total, len(seen))


def _refs(arrays: list[np.ndarray], i: int) -> int:
    return sys.getrefcount(arrays[i])


# the count of an array only its list holds, measured as `_refs` counts
_UNREFERENCED = _refs([np.empty(0)], 0)


class Lent(NamedTuple):
    """What a dataset yields from a DataLoader worker when its batch lies in one of the worker's reusable
    shared buffers: `loader_batches` copies the batch out and gives the slot back (`ReturnSlots`)."""

    batch: torch.Tensor
    worker: int
    slot: int


class ReturnSlots:
    """One flag per shared batch buffer of each DataLoader worker, itself in shared memory: 1 while the
    buffer's batch is with the training process, 0 once that process has copied it out and the worker may
    refill it."""

    def __init__(self, workers: int, capacity: int):
        self.capacity = capacity
        self.busy = torch.zeros(workers, capacity, dtype=torch.uint8).share_memory_()

    def give_back(self, lent: Lent) -> None:
        if lent.slot >= 0:
            self.busy[lent.worker, lent.slot] = 0


class BatchBuffers:
    """Uninitialised uint8 batches of one shape for a dataset's `__iter__` to fill, with memory used again
    where that is safe. Fresh memory costs the page faults of first touching it, as much as decoding the clip
    (benchmarks/RESULTS.md, "Data loading").

    - In the process itself, a batch's memory is used again once nothing refers to it any more (the consumer
      has dropped the batch and every view of it). A batch still referenced anywhere is never written again.
    - In a DataLoader worker, batches are shared memory, so that handing one to the training process costs no
      copy (as torch's default_collate does). With `slots` (from `loader_slots`) each worker keeps up to
      `slots.capacity` such buffers and refills one only after the training process has copied its batch out
      (`lend` wraps the batch as `Lent`); without, each batch is fresh shared memory.
    """

    def __init__(self, shape: tuple[int, ...], slots: ReturnSlots | None = None, keep: int = 4):
        info = get_worker_info()
        self.worker = None if info is None else info.id
        self.shape, self.slots, self.keep = shape, slots, keep
        # in process: at most `keep`, reused when only this list refers to them
        self._arrays: list[np.ndarray] = []
        self._shared: list[torch.Tensor] = []  # in a worker with slots: buffer k is slot k
        self._slot = -1  # the slot of the latest batch from new()

    def new(self) -> torch.Tensor:
        if self.worker is None:
            for i in range(len(self._arrays)):
                # from_numpy's tensors and their views hold a reference
                if _refs(self._arrays, i) == _UNREFERENCED:
                    return torch.from_numpy(self._arrays[i])
            array = np.empty(self.shape, np.uint8)
            if len(self._arrays) < self.keep:
                self._arrays.append(array)
            return torch.from_numpy(array)
        self._slot = -1
        if self.slots is not None:
            busy = self.slots.busy[self.worker]
            for k, buffer in enumerate(self._shared):
                if busy[k] == 0:
                    busy[k], self._slot = 1, k
                    return buffer
        storage = torch.UntypedStorage._new_shared(int(np.prod(self.shape)))
        buffer = torch.empty(0, dtype=torch.uint8).set_(storage, 0, self.shape)
        if self.slots is not None and len(self._shared) < self.slots.capacity:
            self._slot = len(self._shared)
            self.slots.busy[self.worker, self._slot] = 1
            self._shared.append(buffer)
        return buffer

    def lend(self, batch: torch.Tensor) -> torch.Tensor | Lent:
        """What the dataset yields for `batch` (made from the latest `new()`): itself, or Lent in a reusable
        slot."""
        return batch if self._slot < 0 else Lent(batch, self.worker, self._slot)


def copy_of(batch: torch.Tensor, buffers: dict[tuple, BatchBuffers]) -> torch.Tensor:
    """A copy of `batch` with its strides (a permuted view stays one), in memory from `buffers` (by shape)."""
    order = sorted(range(batch.ndim), key=lambda d: -batch.stride(d))  # dims in memory order, outermost first
    shape = tuple(batch.shape[d] for d in order)
    if shape not in buffers:
        buffers[shape] = BatchBuffers(shape)
    raw = buffers[shape].new()
    return raw.permute(*sorted(range(batch.ndim), key=order.__getitem__)).copy_(batch)


def shuffled(samples: Iterable[T], bufsize: int, rng: random.Random) -> Iterator[T]:
    """A shuffle buffer (as webdataset.shuffle, filled completely before the first sample comes out). At a
    PASS_END in `samples` it empties, in random order, before taking the next pass: a pass smaller than the
    buffer then comes out whole, each sample once, before any sample of the next pass (drawing without
    replacement); without the marks, a buffer larger than a pass holds several copies of each sample."""
    buf: list[T] = []
    for sample in samples:
        if sample is PASS_END:
            while buf:
                yield buf.pop(rng.randrange(len(buf)))
            continue
        if len(buf) < bufsize:
            buf.append(sample)
            continue
        k = rng.randrange(bufsize)
        buf[k], sample = sample, buf[k]
        yield sample
    while buf:  # pragma: no cover - the raw stream is infinite
        yield buf.pop(rng.randrange(len(buf)))


PREFETCH = 4  # batches loader_batches has each DataLoader worker make ahead


def loader_slots(workers: int) -> ReturnSlots | None:
    """The ReturnSlots for `loader_batches` with `workers` workers and for the dataset it runs (None without
    workers: batches are then made in this process)."""
    # in flight per worker: PREFETCH queued, one being filled, one being copied out by loader_batches
    return ReturnSlots(workers, PREFETCH + 2) if workers > 0 else None


def loader_batches(dataset: Dataset, workers: int, device: torch.device | str,
                   slots: ReturnSlots | None = None, **loader_options) -> Iterator[torch.Tensor]:
    """Batches of `dataset` through a DataLoader with `workers` processes (0: in this one), pinned when
    `device` is CUDA (so `.to(device, non_blocking=True)` overlaps the copy). Workers start on the first
    `next()`.

    With `slots` (from `loader_slots(workers)`, given to the dataset too) the dataset's workers may yield Lent
    batches in reusable shared buffers, which are copied out here (the pinning thread's copy serves where
    there is one) before their slot is given back, so the caller never holds memory a worker will write
    again."""
    workers = max(0, workers)
    pin = torch.device(device).type == "cuda" and torch.cuda.is_available()
    loader_options.setdefault("batch_size", None)  # the datasets yield whole batches unless told otherwise
    loader = DataLoader(dataset, num_workers=workers, pin_memory=pin,
                        prefetch_factor=PREFETCH if workers else None, **loader_options)
    buffers: dict[tuple, BatchBuffers] = {}
    received: dict[tuple[int, int], torch.Tensor] = {}  # kept mapped: a slot sent again needs no new mapping
    for item in _unwrap_errors(loader):
        if not isinstance(item, Lent):
            yield item
            continue
        batch = item.batch if pin else copy_of(item.batch, buffers)
        if not pin:
            received[item.worker, item.slot] = item.batch
        slots.give_back(item)
        del item
        yield batch


def _unwrap_errors(loader: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Re-raise a worker's DataError with its own one-line message (DataLoader adds the worker traceback)."""
    it = iter(loader)
    try:
        yield from it
    except DataError as e:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:  # now, not when the traceback holding this frame is collected
            shutdown()
        lines = [ln for ln in str(e).splitlines() if ln.strip()]
        last = lines[-1] if lines else ""
        if "DataError: " in last and "Traceback" in str(e):
            raise DataError(last.split("DataError: ", 1)[1]) from None
        raise


class _ShardStream(IterableDataset):
    """One rank's clips (uint8 [3, frames, size, size]), split between the DataLoader workers it runs in."""

    def __init__(self, urls: list[str], source: str, frames: int, size: int, seed: int, cfg: DataConfig,
                 start_step: int, rank: int, world_size: int, batch_size: int,
                 slots: ReturnSlots | None = None):
        super().__init__()
        self.batch_size, self.slots = batch_size, slots  # slots: workers' batches in reusable shared buffers
        self.urls, self.source, self.frames, self.size, self.seed = urls, source, frames, size, seed
        self.cfg, self.start_step, self.rank, self.world_size = cfg, start_step, rank, world_size

    def raw(self, reader: int, readers: int) -> Iterator[dict]:
        """This reader's share of the samples, pass after pass, header-checked (too short: skipped)."""

        def usable(sample: dict) -> bool:
            try:
                t, s = sample_shape(sample)
            except DataError as e:
                warn(f"skipped: {e}")
                return False
            if t < self.frames:
                warn(f"skipped: {sample_name(sample)}: {t} frames, fewer than the {self.frames} wanted")
                return False
            sample["__shape__"] = (t, s)
            return True

        def nothing(total: int, shards: int) -> DataError:
            what = "no readable shard" if total == 0 else f"no usable clip of at least {self.frames} frames"
            return DataError(f"{self.source}: {what} (read all {shards} shards; see the warnings above)")

        seed_parts = ("shards", self.seed, self.start_step)
        return reader_samples(self.urls, reader, readers, seed_parts, read_shard, usable, nothing,
                              mark_passes=self.cfg.shuffle_within_pass)

    def shuffled(self, reader: int, readers: int, bufsize: int) -> Iterator[dict]:
        """This reader's samples through a shuffle buffer of `bufsize` (still encoded)."""
        buf_rng = random.Random(seed_of("buffer", self.seed, self.start_step, reader, readers))
        return shuffled(self.raw(reader, readers), bufsize, buf_rng)

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Batches uint8 [batch_size, 3, frames, size, size]: a channels-last view of [B, T, S, S, 3] memory
        (in shared memory in a worker), into which each clip is decoded directly: no copy, no de-interleaving.
        Undecodable clips are skipped with a warning. With `slots` (from loader_slots), a worker's batches
        come as Lent, in buffers it reuses (see BatchBuffers)."""
        reader, readers = reader_of(self.rank, self.world_size)
        cfg, frames, size, bufsize = self.cfg, self.frames, self.size, max(1, self.cfg.shuffle_buffer)
        gen = torch.Generator().manual_seed(seed_of("augment", self.seed, self.start_step, reader, readers))
        samples = self.shuffled(reader, readers, bufsize)
        good = failed = 0
        buffers = BatchBuffers((self.batch_size, frames, size, size, 3), self.slots)
        while True:
            batch = buffers.new()
            j = 0
            while j < self.batch_size:
                sample = next(samples)
                t, s = sample["__shape__"]
                target = batch[j].numpy().reshape(frames * size, size, 3)
                direct = (t, s) == (frames, size)  # the common case: decode straight into the batch
                img = decode_image(image_bytes(sample), out=target if direct else None, fast_dct=cfg.fast_dct)
                if img is None or img.shape != (t * s, s, 3):
                    got = "it does not decode" if img is None else f"decoded shape {list(img.shape)}"
                    warn(f"skipped: {sample_name(sample)}: {got} (header: {t} frames of {s}x{s})")
                    failed += 1
                    if good == 0 and failed > 2 * bufsize + 100:
                        raise DataError(f"{self.source}: none of the first {failed} clips decoded "
                                        "(see the warnings)")
                    continue
                good += 1
                if not direct:
                    start = window_start(t, frames, gen, cfg.random_offset)
                    clip = torch.from_numpy(img[start * s : (start + frames) * s]).view(frames, s, s, 3)
                    if s != size:
                        clip = resize_clip(clip.permute(3, 0, 1, 2), size, mode="area").permute(1, 2, 3, 0)
                    batch[j] = clip
                if cfg.hflip and coin(gen):
                    batch[j] = batch[j].flip(2)  # [T, S, S, 3]: dim 2 is width
                j += 1
            yield buffers.lend(batch.permute(0, 4, 1, 2, 3))


class ShardClips:
    """Clips streamed from WebDataset shards: `batches(...)` -> uint8 [B, 3, frames, size, size],
    endlessly."""

    def __init__(self, source: str, frames: int, size: int, seed: int = 0, cfg: DataConfig | None = None):
        self.source, self.frames, self.size, self.seed = source, frames, size, seed
        self.cfg = cfg or DataConfig()
        self.urls = resolve_shards(source)

    def __len__(self) -> int:
        """Number of shards."""
        return len(self.urls)

    def stream(self, start_step: int = 0, batch_size: int = 1, rank: int = 0, world_size: int = 1,
               slots: ReturnSlots | None = None) -> _ShardStream:
        """The IterableDataset behind `batches`: yields whole batches (use it with
        DataLoader(batch_size=None)), or with `slots` Lent ones (for loader_batches with the same slots)."""
        return _ShardStream(self.urls, self.source, self.frames, self.size, self.seed, self.cfg,
                            start_step, rank, world_size, batch_size, slots)

    def batches(self, start_step: int, batch_size: int, rank: int = 0, world_size: int = 1,
                device: torch.device | str = "cpu") -> Iterator[torch.Tensor]:
        """This rank's batches from `start_step` on: CPU uint8 tensors, in pinned memory when `device` is CUDA
        (so `.to(device, non_blocking=True)` overlaps the copy). Workers start on the first `next()`."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        slots = loader_slots(self.cfg.workers)
        stream = self.stream(start_step, batch_size, rank, world_size, slots)
        yield from loader_batches(stream, self.cfg.workers, device, slots)


__all__ = ["PASS_END", "BatchBuffers", "Lent", "ReturnSlots", "ShardClips", "copy_of",
           "loader_batches", "loader_slots", "reader_of", "reader_samples", "seed_of", "shuffled",
           "units_for_reader", "warn"]
