"""videogan.data.streaming: what the streaming datasets share (batch memory: BatchBuffers, Lent,
loader_batches; the shuffle buffer) and ShardClips, the shard reader loop."""
import hashlib
import itertools
import json
import os
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from known_shards import S, T, cfg, clip_ids, make_clip, record, take, with_image, write_dataset
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from videogan.data.decode import DataError
from videogan.data.shards import encode_clip, read_shard, write_shard
from videogan.data.streaming import (
    PASS_END,
    BatchBuffers,
    Lent,
    ReturnSlots,
    ShardClips,
    loader_batches,
    loader_slots,
    shuffled,
)


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

    def __init__(self, slots: ReturnSlots | None):
        super().__init__()
        self.slots = slots

    def __iter__(self):
        worker = get_worker_info().id
        buffers = BatchBuffers((2, 3, 4), self.slots)
        for i in range(15):
            batch = buffers.new()  # [2, 3, 4] memory, yielded as a [2, 4, 3] view, as the shard reader does
            assert batch.is_shared()
            batch.fill_(100 * worker + i)
            batch[0, 0, 0] = buffers._slot
            yield buffers.lend(batch.permute(0, 2, 1))


def test_workers_refill_their_shared_buffers_only_after_the_batch_was_copied_out():
    slots = loader_slots(2)
    batches = list(loader_batches(_Counting(slots), workers=2, device="cpu", slots=slots))  # all held at once
    assert len(batches) == 30
    values = sorted(int(b[0, 1, 1]) for b in batches)
    assert values == sorted(100 * w + i for w in range(2) for i in range(15))  # none overwritten
    for b in batches:
        assert b.shape == (2, 4, 3) and b.stride() == (12, 1, 4) and not b.is_shared()  # a copy, same layout
        assert bool((b.flatten()[1:] == b[0, 1, 1]).all())
    slots = [int(b[0, 0, 0]) for b in batches]
    assert all(0 <= s < 6 for s in slots) and len(slots) > 2 * len(set(slots))  # 6 buffers a worker, reused


def test_without_slots_workers_yield_plain_batches_in_fresh_shared_memory():
    items = list(DataLoader(_Counting(None), batch_size=None, num_workers=1))
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
    # each pass whole, in its own order
    assert [sorted(out[i:i + 7]) for i in (0, 7, 14)] == [list(range(7))] * 3
    assert out[:7] != list(range(7)) and out[:7] != out[7:14]  # and shuffled
    # without the marks the buffer holds ~7 copies of each sample: the first 7 out repeat some
    unmarked = (s for s in passes(7, 10) if s is not PASS_END)
    assert len(set(itertools.islice(shuffled(unmarked, 50, random.Random(0)), 7))) < 7


def test_a_pass_larger_than_the_buffer_still_comes_out_whole_before_the_next():
    out = list(itertools.islice(shuffled(passes(20, 3), 4, random.Random(1)), 40))
    assert sorted(out[:20]) == sorted(out[20:]) == list(range(20)) and out[:20] != out[20:]


# --------------------------------------------------------------------- ShardClips: the shard reader loop


def test_batches_shape_and_all_clips(tmp_path):
    ids = write_dataset(tmp_path, shards=2, per=4)
    src = ShardClips(str(tmp_path), T, S, seed=0, cfg=cfg(shuffle_buffer=3))
    batches = take(src, 4, 4)
    assert all(b.shape == (4, 3, T, S, S) and b.dtype == torch.uint8 for b in batches)
    # channels-last memory ([B, T, S, S, 3], decoded in place); training makes it contiguous on the device
    assert all(b.permute(0, 2, 3, 4, 1).is_contiguous() for b in batches)
    first_pass = sorted(clip_ids(torch.cat(batches))[:6])
    assert set(first_pass) <= set(ids)
    got = clip_ids(torch.cat(batches))
    assert set(got) == set(ids)  # 16 clips drawn from 8: both passes together cover everything
    # the content is the stored clip, exactly (PNG)
    b = batches[0][0]
    i = clip_ids(batches[0][:1])[0]
    assert torch.equal(b, torch.from_numpy(make_clip(i)).permute(3, 0, 1, 2))


@pytest.mark.parametrize("shards,per", [(4, 3), (1, 8)])  # shard-level split, then fewer shards than readers
def test_ranks_and_workers_see_disjoint_clips_covering_the_data(tmp_path, shards, per):
    ids = write_dataset(tmp_path, shards=shards, per=per)
    readers = 4  # 2 ranks x 2 workers
    per_reader = len(ids) // readers
    seen = []
    for rank in range(2):
        src = ShardClips(str(tmp_path), T, S, seed=5, cfg=cfg(workers=2))
        # DataLoader takes batches from workers 0, 1, 0, 1, ...: the first two batches are one pass of each.
        batches = take(src, 2, per_reader, rank=rank, world_size=2)
        for b in batches:
            seen.append(clip_ids(b))
    flat = [i for b in seen for i in b]
    assert len(flat) == len(ids) and sorted(flat) == ids, seen


@pytest.mark.parametrize("workers", [0, 2])
def test_shuffle_within_pass_draws_every_clip_once_before_any_twice(tmp_path, workers):
    ids = write_dataset(tmp_path, shards=2, per=5)
    within = clip_ids(torch.cat(take(ShardClips(str(tmp_path), T, S,
                                                cfg=cfg(shuffle_buffer=64, workers=workers,
                                                        shuffle_within_pass=True)), 2, 5)))
    assert sorted(within) == ids  # 10 clips of 10: all different, though the buffer could hold six passes
    mixed = clip_ids(torch.cat(take(ShardClips(str(tmp_path), T, S, cfg=cfg(shuffle_buffer=64)), 2, 5)))
    assert len(set(mixed)) < len(ids)  # the default mixes passes: repeats come first


def test_ranks_without_workers_are_disjoint(tmp_path):
    ids = write_dataset(tmp_path, shards=4, per=2)
    got = []
    for rank in range(2):
        got.append(clip_ids(take(ShardClips(str(tmp_path), T, S, cfg=cfg()), 1, 4,
                                 rank=rank, world_size=2)[0]))
    assert not set(got[0]) & set(got[1]) and sorted(got[0] + got[1]) == ids


def test_reproducible_for_the_same_seed_and_step(tmp_path):
    write_dataset(tmp_path, shards=3, per=4)
    c = cfg(shuffle_buffer=5, hflip=True, random_offset=True)
    a = take(ShardClips(str(tmp_path), 4, S, seed=1, cfg=c), 3, 4, start_step=7)
    b = take(ShardClips(str(tmp_path), 4, S, seed=1, cfg=c), 3, 4, start_step=7)
    other = take(ShardClips(str(tmp_path), 4, S, seed=1, cfg=c), 3, 4, start_step=8)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a, other, strict=True))


def test_offset_window_and_resize(tmp_path):
    # 10 frames; frame f is constant 20 * f
    clip = np.stack([np.full((S, S, 3), 20 * f, np.uint8) for f in range(10)])
    clip[0, 0, 0] = (0, 0, 7)
    write_shard(tmp_path / "clips-000000.tar", [encode_clip("k", clip, {}, lossless=True)])
    first = take(ShardClips(str(tmp_path), 4, S, cfg=cfg(random_offset=False)), 1, 3)[0]
    assert first[:, 0, 1:].unique().tolist() == [20, 40, 60] and first[:, 0, 0, 1, 1].tolist() == [0, 0, 0]
    rand = take(ShardClips(str(tmp_path), 4, S, cfg=cfg(random_offset=True)), 4, 16)
    starts = torch.cat(rand)[:, 0, :, 4, 4].long() // 20  # [N, 4] frame numbers
    assert (starts[:, 1:] - starts[:, :-1] == 1).all()  # consecutive frames
    assert set(starts[:, 0].tolist()) == set(range(7))  # every window 0..6 drawn
    small = take(ShardClips(str(tmp_path), 4, S // 2, cfg=cfg()), 1, 1)[0]
    assert small.shape == (1, 3, 4, 4, 4)
    expected = torch.from_numpy(clip[:4]).permute(3, 0, 1, 2).float()
    expected = expected.reshape(3, 4, 4, 2, 4, 2).mean((3, 5)).round().to(torch.uint8)
    assert torch.equal(small[0], expected)


def test_hflip_flips_about_half(tmp_path):
    clip = np.zeros((T, S, S, 3), np.uint8)
    clip[:, :, S // 2 :] = 200
    write_shard(tmp_path / "clips-000000.tar", [encode_clip("k", clip, {}, lossless=True)])
    batch = take(ShardClips(str(tmp_path), T, S, cfg=cfg(hflip=True)), 1, 64)[0]
    ref = torch.from_numpy(clip).permute(3, 0, 1, 2)
    flipped = [bool(torch.equal(c, ref.flip(-1))) for c in batch]
    assert all(f or torch.equal(c, ref) for f, c in zip(flipped, batch, strict=True))
    assert 16 < sum(flipped) < 48


def test_corrupt_shards_and_clips_are_skipped_with_warnings(tmp_path):
    ids = write_dataset(tmp_path, shards=2, per=4)  # clips 0..3 and 4..7
    # a truncated shard: cut in the middle of its members
    trunc = tmp_path / "clips-000001.tar"
    with tarfile.open(trunc) as tf:
        cut = tf.getmembers()[5].offset_data + 10  # inside the third clip's image
    trunc.write_bytes(trunc.read_bytes()[:cut])
    survivors = record(lambda: list(read_shard(str(trunc))))[0]
    # the cut-off clip is dropped
    assert [s["__key__"] for s in survivors] == ["0000004_00000", "0000005_00001"]
    # a garbage "shard"
    (tmp_path / "clips-000002.tar").write_bytes(os.urandom(3000))
    # a shard with a clip that does not decode and one whose image does not match its json
    bad_img = with_image(encode_clip("0000100_00000", make_clip(100), {}, lossless=True), "png",
                         b"\x89PNG garbage")
    wrong = encode_clip("0000101_00001", make_clip(101), {}, lossless=True)
    wrong["json"] = json.dumps({"frames": T, "size": S // 2}).encode()
    short = encode_clip("0000102_00002", make_clip(102, t=T - 2), {}, lossless=True)
    no_image = {"__key__": "0000104_00004", "json": b"{}"}
    write_shard(tmp_path / "clips-000003.tar",
                [bad_img, wrong, short, no_image,
                 encode_clip("0000103_00003", make_clip(103), {}, lossless=True)])
    src = ShardClips(str(tmp_path), T, S, cfg=cfg(shuffle_buffer=4))
    batches, messages = record(lambda: take(src, 6, 4))
    got = set(clip_ids(torch.cat(batches)))  # asserts no grey/foreign clip
    expected = set(ids[:4]) | {4, 5, 103}
    assert got == expected
    text = "\n".join(messages)
    assert "clips-000001.tar: skipped the rest of this shard" in text
    assert "clips-000002.tar: skipped the rest of this shard" in text
    assert "clips-000003.tar: clip 0000100_00000" in text and "does not decode" in text
    assert "0000101_00001" in text and "0000102_00002" in text and "fewer than the 6 wanted" in text
    assert "clip 0000104_00004: no .jpg or .png image" in text
    assert all("\n" not in m for m in messages)


def test_nothing_readable_raises(tmp_path):
    (tmp_path / "clips-000000.tar").write_bytes(b"garbage" * 500)
    (tmp_path / "clips-000001.tar").write_bytes(b"")
    src = ShardClips(str(tmp_path), T, S, cfg=cfg())
    with pytest.raises(DataError, match=f"{tmp_path}: no readable shard"):
        record(lambda: take(src, 1, 2))


def test_all_clips_too_short_raises_from_a_worker_with_a_clean_message(tmp_path):
    write_dataset(tmp_path, shards=1, per=2, t=3)
    src = ShardClips(str(tmp_path), T, S, cfg=cfg(workers=1))
    with pytest.raises(DataError) as e:
        take(src, 1, 2)
    assert str(e.value) == (f"{tmp_path}: no usable clip of at least {T} frames "
                            "(read all 1 shards; see the warnings above)")


def test_undecodable_images_with_valid_json_raise(tmp_path):
    samples = [with_image(encode_clip(f"k{i}", make_clip(i), {}, lossless=True), "png", b"junk")
               for i in range(3)]
    write_shard(tmp_path / "clips-000000.tar", samples)
    src = ShardClips(str(tmp_path), T, S, cfg=cfg(shuffle_buffer=2))
    with pytest.raises(DataError, match="none of the first"):
        record(lambda: take(src, 1, 1))


def test_jpeg_shards_stream(tmp_path):
    write_dataset(tmp_path, shards=2, per=3, lossless=False, s=16)
    batch = take(ShardClips(str(tmp_path), T, 16, cfg=cfg(shuffle_buffer=4)), 1, 5)[0]
    assert batch.shape == (5, 3, T, 16, 16)
    ref = torch.from_numpy(make_clip(0, s=16)).permute(3, 0, 1, 2)
    assert batch.float().std() > 30 and ref.shape == batch[0].shape


# Checksums of the batches each reader setup streams, recorded before the shard reader loop moved from
# shards.py into streaming.py (issue 29): the same clips, augmented the same way, in the same order, for
# each case. PNG only: decoded PNG pixels are exact, JPEG's depend on the encoder's version.
PINNED_STREAMS = {
    "one_process": "48518a3b26467926",
    "window_and_resize": "b4a809a4764ad152",
    "two_workers_rank_1_of_2": "cbeb74cac28ef1ea",
    "within_pass_two_workers": "5af872d4361afdde",
    "fewer_shards_than_readers": "311d4cda3401d312",
}


def stream_checksums(tmp_path: Path) -> dict[str, str]:
    write_dataset(tmp_path / "png", shards=3, per=5)
    write_dataset(tmp_path / "one", shards=1, per=6)
    aug = dict(hflip=True, random_offset=True)
    cases = {
        "one_process": (ShardClips(str(tmp_path / "png"), T, S, seed=3,
                                   cfg=cfg(shuffle_buffer=4, **aug)), {}),
        "window_and_resize": (ShardClips(str(tmp_path / "png"), 4, S // 2, seed=4,
                                         cfg=cfg(shuffle_buffer=6, **aug)),
                              {"start_step": 11}),
        "two_workers_rank_1_of_2": (ShardClips(str(tmp_path / "png"), 4, S, seed=5,
                                               cfg=cfg(workers=2, **aug)),
                                    {"rank": 1, "world_size": 2}),
        "within_pass_two_workers": (ShardClips(str(tmp_path / "png"), T, S, seed=6,
                                               cfg=cfg(workers=2, shuffle_buffer=64,
                                                       shuffle_within_pass=True)), {}),
        "fewer_shards_than_readers": (ShardClips(str(tmp_path / "one"), T, S, seed=7,
                                                 cfg=cfg(workers=2, **aug)),
                                      {"rank": 0, "world_size": 2}),
    }
    out = {}
    for name, (source, kw) in cases.items():
        digest = hashlib.sha256()
        for batch in take(source, 4, 3, **kw):
            digest.update(batch.contiguous().numpy().tobytes())
        out[name] = digest.hexdigest()[:16]
    return out


def test_streams_are_unchanged_clip_for_clip(tmp_path):
    assert stream_checksums(tmp_path) == PINNED_STREAMS
