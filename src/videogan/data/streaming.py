"""What the streaming datasets share: warnings for skipped data, seeds, a shuffle buffer, batch memory, and
running a dataset through a DataLoader with errors that stay one line."""
from __future__ import annotations

import hashlib
import itertools
import random
import sys
import warnings
from typing import Any, Callable, Iterable, Iterator, NamedTuple, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from .decode import DataError

T = TypeVar("T")
S = TypeVar("S")


class _PassEnd:
    def __repr__(self) -> str:
        return "PASS_END"


PASS_END = _PassEnd()  # what reader_samples(mark_passes=True) yields where a pass over the data ends


class DataWarning(UserWarning):
    """A skipped shard or clip; the message names it."""


_REGISTRY: dict = {}  # the same message is shown once per process (not again on every pass)


def warn(message: str) -> None:
    """One line on stderr (through `warnings`, so tests and users can filter or record it)."""
    warnings.warn_explicit(message, DataWarning, "videogan-data", 0, module="videogan.data", registry=_REGISTRY)


def seed_of(*parts: Any) -> int:
    """A 63-bit seed that depends on every part (stable across processes and Python versions)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def reader_of(rank: int, world_size: int) -> tuple[int, int]:
    """(this reader, number of readers): a reader is one DataLoader worker (or the process itself) of one rank."""
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


def reader_samples(units: list[T], reader: int, readers: int, seed_parts: tuple, read: Callable[[T], Iterable[S]],
                   usable: Callable[[S], bool], nothing: Callable[[int, int], DataError],
                   mark_passes: bool = False) -> Iterator[S]:
    """This reader's share of the samples `read(unit)` yields, pass after pass over `units` (split as
    `units_for_reader` does, with `seed_parts` and the pass number as seed; with fewer units than readers a
    counter that runs on across passes keeps every `readers`-th sample, so every reader is fed eventually).
    Samples `usable` rejects (it says why) are left out. Once this reader has been through every unit and none
    of the samples it was given was usable, it raises `nothing(samples read, units)` instead of looping forever;
    not before: other units, which other readers had so far, may still be fine. `mark_passes`: yield PASS_END
    after each pass (for `shuffled`, which then never mixes two passes)."""
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


_UNREFERENCED = _refs([np.empty(0)], 0)  # the count of an array only its list holds, measured as `_refs` counts


class Lent(NamedTuple):
    """What a dataset yields from a DataLoader worker when its batch lies in one of the worker's reusable shared
    buffers: `loader_batches` copies the batch out and gives the slot back (`ReturnSlots`)."""

    batch: torch.Tensor
    worker: int
    slot: int


class ReturnSlots:
    """One flag per shared batch buffer of each DataLoader worker, itself in shared memory: 1 while the buffer's
    batch is with the training process, 0 once that process has copied it out and the worker may refill it."""

    def __init__(self, workers: int, capacity: int):
        self.capacity = capacity
        self.busy = torch.zeros(workers, capacity, dtype=torch.uint8).share_memory_()

    def give_back(self, lent: Lent) -> None:
        if lent.slot >= 0:
            self.busy[lent.worker, lent.slot] = 0


class BatchBuffers:
    """Uninitialised uint8 batches of one shape for a dataset's `__iter__` to fill, with memory used again where
    that is safe. Fresh memory costs the page faults of first touching it: ~0.4 ms a clip for a 25 MB batch of
    64 clips of 32x64x64 here, as much as decoding the clip (benchmarks/RESULTS.md).

    - In the process itself, a batch's memory is used again once nothing refers to it any more (the consumer has
      dropped the batch and every view of it). A batch still referenced anywhere is never written again.
    - In a DataLoader worker, batches are shared memory, so that handing one to the training process costs no
      copy (as torch's default_collate does). With `slots` (given by `loader_batches`) each worker keeps up to
      `slots.capacity` such buffers and refills one only after the training process has copied its batch out
      (`lend` wraps the batch as `Lent`); without, each batch is fresh shared memory.
    """

    def __init__(self, shape: tuple[int, ...], slots: ReturnSlots | None = None, keep: int = 4):
        info = get_worker_info()
        self.worker = None if info is None else info.id
        self.shape, self.slots, self.keep = shape, slots, keep
        self._arrays: list[np.ndarray] = []  # in process: at most `keep`, reused when only this list refers to them
        self._shared: list[torch.Tensor] = []  # in a worker with slots: buffer k is slot k
        self._slot = -1  # the slot of the latest batch from new()

    def new(self) -> torch.Tensor:
        if self.worker is None:
            for i in range(len(self._arrays)):
                if _refs(self._arrays, i) == _UNREFERENCED:  # from_numpy's tensors and their views hold a reference
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
        """What the dataset yields for `batch` (made from the latest `new()`): itself, or Lent in a reusable slot."""
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


def loader_batches(dataset: Dataset, workers: int, device: torch.device | str, **loader_options) -> Iterator[torch.Tensor]:
    """Batches of `dataset` through a DataLoader with `workers` processes (0: in this one), pinned when `device`
    is CUDA (so `.to(device, non_blocking=True)` overlaps the copy). Workers start on the first `next()`.

    A dataset with a `return_slots` attribute gets ReturnSlots: its workers may then yield Lent batches in
    reusable shared buffers, which are copied out here (the pinning thread's copy serves where there is one)
    before their slot is given back, so the caller never holds memory a worker will write again."""
    workers = max(0, workers)
    pin = torch.device(device).type == "cuda" and torch.cuda.is_available()
    prefetch = 4
    loader_options.setdefault("batch_size", None)  # the datasets yield whole batches unless told otherwise
    slots = None
    if workers and hasattr(dataset, "return_slots"):
        # in flight per worker: `prefetch` queued, one being filled, one being copied out here
        slots = dataset.return_slots = ReturnSlots(workers, prefetch + 2)
    loader = DataLoader(dataset, num_workers=workers, pin_memory=pin, prefetch_factor=prefetch if workers else None,
                        **loader_options)
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
