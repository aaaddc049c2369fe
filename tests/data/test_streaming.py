"""What the streaming datasets share (videogan.data.streaming): batch memory (BatchBuffers, Lent, loader_batches) and
the shuffle buffer."""
import itertools
import random

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from videogan.data.streaming import PASS_END, BatchBuffers, Lent, ReturnSlots, loader_batches, shuffled


def test_memory_is_reused_only_once_nothing_refers_to_it():
    buffers = BatchBuffers((2, 3))
    a = buffers.new()
    a.fill_(7)
    b = buffers.new()  # `a` is still held: fresh memory
    b.fill_(9)
    assert a.data_ptr() != b.data_ptr() and bool((a == 7).all())
    pointer = a.data_ptr()
    view = a.t()  # a view keeps the memory alive after the batch itself is dropped
    del a
    c = buffers.new()
    assert c.data_ptr() not in (pointer, b.data_ptr())
    del view
    assert buffers.new().data_ptr() == pointer  # nothing refers to it now
    assert buffers.lend(b) is b  # in process nothing is lent


def test_at_most_keep_buffers_are_kept_and_consumers_never_see_their_batch_overwritten():
    buffers = BatchBuffers((4,), keep=2)
    held = []
    for value in range(5):
        batch = buffers.new()
        batch.fill_(value)
        held.append(batch)
    assert [int(b[0]) for b in held] == [0, 1, 2, 3, 4]
    assert len({b.data_ptr() for b in held}) == 5
    assert len(buffers._arrays) == 2


class _Counting(IterableDataset):
    """Batch i of worker w is filled with 100 * w + i, except element [0, 0, 0]: the slot its buffer had."""

    return_slots = None

    def __init__(self, slots: bool = True):
        super().__init__()
        self.slots = slots

    def __iter__(self):
        worker = get_worker_info().id
        buffers = BatchBuffers((2, 3, 4), self.return_slots if self.slots else None)
        for i in range(15):
            batch = buffers.new()  # [2, 3, 4] memory, yielded as a [2, 4, 3] view, as the shard reader does
            assert batch.is_shared()
            batch.fill_(100 * worker + i)
            batch[0, 0, 0] = buffers._slot
            yield buffers.lend(batch.permute(0, 2, 1))


def test_workers_refill_their_shared_buffers_only_after_the_batch_was_copied_out():
    batches = list(loader_batches(_Counting(), workers=2, device="cpu"))  # all held at once
    assert len(batches) == 30
    values = sorted(int(b[0, 1, 1]) for b in batches)
    assert values == sorted(100 * w + i for w in range(2) for i in range(15))  # none overwritten
    for b in batches:
        assert b.shape == (2, 4, 3) and b.stride() == (12, 1, 4) and not b.is_shared()  # a copy, same layout
        assert bool((b.flatten()[1:] == b[0, 1, 1]).all())
    slots = [int(b[0, 0, 0]) for b in batches]
    assert all(0 <= s < 6 for s in slots) and len(slots) > 2 * len(set(slots))  # 6 buffers a worker, reused


def test_without_slots_workers_yield_plain_batches_in_fresh_shared_memory():
    items = list(DataLoader(_Counting(slots=False), batch_size=None, num_workers=1))
    assert not any(isinstance(x, Lent) for x in items) and all(x.is_shared() for x in items)
    assert sorted(int(x[1, 1, 1]) for x in items) == list(range(15))


def test_giving_back_frees_the_slot():
    slots = ReturnSlots(workers=2, capacity=3)
    slots.busy[1, 2] = 1
    slots.give_back(Lent(torch.zeros(1), worker=1, slot=2))
    slots.give_back(Lent(torch.zeros(1), worker=0, slot=-1))  # a fresh buffer: nothing to give back
    assert int(slots.busy.sum()) == 0


def passes(n: int, count: int):
    for _ in range(count):
        yield from range(n)
        yield PASS_END


def test_a_buffer_larger_than_a_pass_gives_each_sample_once_per_pass_only_with_pass_marks():
    rng = random.Random(0)
    out = list(itertools.islice(shuffled(passes(7, 10), 50, rng), 21))
    assert [sorted(out[i:i + 7]) for i in (0, 7, 14)] == [list(range(7))] * 3  # each pass whole, in its own order
    assert out[:7] != list(range(7)) and out[:7] != out[7:14]  # and shuffled
    # without the marks the buffer holds ~7 copies of each sample: the first 7 out repeat some
    unmarked = (s for s in passes(7, 10) if s is not PASS_END)
    assert len(set(itertools.islice(shuffled(unmarked, 50, random.Random(0)), 7))) < 7


def test_a_pass_larger_than_the_buffer_still_comes_out_whole_before_the_next():
    out = list(itertools.islice(shuffled(passes(20, 3), 4, random.Random(1)), 40))
    assert sorted(out[:20]) == sorted(out[20:]) == list(range(20)) and out[:20] != out[20:]
