"""What the streaming datasets share: warnings for skipped data, seeds, a shuffle buffer, batch memory, and
running a dataset through a DataLoader with errors that stay one line."""
from __future__ import annotations

import hashlib
import itertools
import random
import warnings
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from .decode import DataError

T = TypeVar("T")
S = TypeVar("S")


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
                   usable: Callable[[S], bool], nothing: Callable[[int, int], DataError]) -> Iterator[S]:
    """This reader's share of the samples `read(unit)` yields, pass after pass over `units` (split as
    `units_for_reader` does, with `seed_parts` and the pass number as seed; with fewer units than readers a
    counter that runs on across passes keeps every `readers`-th sample, so every reader is fed eventually).
    Samples `usable` rejects (it says why) are left out. Once this reader has been through every unit and none
    of the samples it was given was usable, it raises `nothing(samples read, units)` instead of looping forever;
    not before: other units, which other readers had so far, may still be fine."""
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
        # offered == 0 < total: so far the counter gave this reader none of the few samples; later passes will
        if valid == 0 and len(seen) == len(set(units)) and (offered > 0 or total == 0):
            raise nothing(total, len(seen))


def new_batch(shape: tuple[int, ...], shared: bool) -> torch.Tensor:
    """An uninitialised uint8 tensor; in shared memory when made in a DataLoader worker, so that handing it to
    the training process costs no copy (as torch's default_collate does)."""
    if not shared:
        # numpy's allocator reuses the freed heap memory of earlier batches, where torch.empty maps fresh pages
        # for each 25 MB batch; first-touching those cost ~0.5 ms a clip of decoding time here.
        return torch.from_numpy(np.empty(shape, np.uint8))
    storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, shape)


def shuffled(samples: Iterable[T], bufsize: int, rng: random.Random) -> Iterator[T]:
    """A shuffle buffer (as webdataset.shuffle, filled completely before the first sample comes out)."""
    buf: list[T] = []
    for sample in samples:
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
    is CUDA (so `.to(device, non_blocking=True)` overlaps the copy). Workers start on the first `next()`."""
    workers = max(0, workers)
    loader_options.setdefault("batch_size", None)  # the datasets yield whole batches unless told otherwise
    loader = DataLoader(dataset, num_workers=workers, pin_memory=torch.device(device).type == "cuda" and torch.cuda.is_available(),
                        prefetch_factor=4 if workers else None, **loader_options)
    yield from _unwrap_errors(loader)


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
