import io
import json
import os
import tarfile
import zlib

import numpy as np
import pytest
import torch
from known_shards import S, T, cfg, clip_ids, make_clip, record, take, with_image, write_dataset

from videogan.data.decode import DataError, DataWarning
from videogan.data.shards import (
    EmptyTarError,
    TarError,
    decode_clip,
    decode_image,
    encode_clip,
    is_shard_source,
    read_shard,
    resolve_shards,
    tar_members,
    write_shard,
)
from videogan.data.streaming import ShardClips

# ----------------------------------------------------------------------------- writing / decoding


def test_png_round_trip_is_exact():
    clip = make_clip(3)
    sample = encode_clip("0000003_00000", clip, {"source": "a.mp4", "start_time": 1.5}, lossless=True)
    assert set(sample) == {"__key__", "png", "json"}
    meta = json.loads(sample["json"])
    assert meta == {"source": "a.mp4", "start_time": 1.5, "frames": T, "size": S,
                    "crc32": zlib.crc32(sample["png"])}
    out = decode_clip(sample)
    assert out.dtype == torch.uint8 and out.shape == (3, T, S, S)
    assert torch.equal(out, torch.from_numpy(clip).permute(3, 0, 1, 2))


def test_jpeg_round_trip_is_close():
    t, s = 4, 32
    yy, xx = np.mgrid[0:s, 0:s]
    clip = np.stack([np.stack([xx * 4 + f * 10, yy * 6 + 20, (xx + yy) * 3], -1)
                     for f in range(t)]).astype(np.uint8)
    sample = encode_clip("k", clip, {}, quality=95)
    assert "jpg" in sample and sample["jpg"][:2] == b"\xff\xd8"
    out = decode_clip(sample).permute(1, 2, 3, 0).numpy().astype(int)
    assert np.abs(out - clip).mean() < 3.0


def smooth_clip(t: int, s: int) -> np.ndarray:
    """Gradients and a moving square: image-like content (random noise would exaggerate JPEG's error)."""
    yy, xx = np.mgrid[0:s, 0:s]
    frames = []
    for f in range(t):
        frame = np.stack([xx * 4 + f * 10, yy * 6 + 20, (xx + yy) * 3], -1)
        frame[4 + f : 12 + f, 6:14] = (200, 30, 90)
        frames.append(frame)
    return np.stack(frames).astype(np.uint8)


def test_fast_dct_decodes_close_to_the_exact_dct():
    clip = smooth_clip(4, 32)
    data = encode_clip("k", clip, {}, quality=85)["jpg"]
    exact, fast = decode_image(data).astype(int), decode_image(data, fast_dct=True).astype(int)
    assert fast.shape == exact.shape == (4 * 32, 32, 3)
    assert 0 < np.abs(fast - exact).mean() < 2.0  # a different inverse DCT, not a different image
    source = clip.reshape(-1, 32, 3).astype(int)
    assert np.abs(fast - source).mean() < np.abs(exact - source).mean() + 0.5


@pytest.mark.parametrize("fast_dct", [False, True])
def test_shard_batches_decode_with_the_configured_dct(tmp_path, fast_dct):
    clip = smooth_clip(T, 16)
    sample = encode_clip("0000000_00000", clip, {}, quality=85)
    write_shard(tmp_path / "clips-000000.tar", [sample])
    batch = take(ShardClips(str(tmp_path), T, 16, cfg=cfg(fast_dct=fast_dct)), 1, 1)[0]
    expected = decode_image(sample["jpg"], fast_dct=fast_dct).reshape(T, 16, 16, 3)
    assert torch.equal(batch[0], torch.from_numpy(expected).permute(3, 0, 1, 2))


def test_decode_clip_rejects_wrong_shape_naming_the_key():
    sample = encode_clip("0000001_00002", make_clip(1), {}, lossless=True)
    sample["json"] = json.dumps({"frames": T + 1, "size": S}).encode()
    with pytest.raises(DataError, match="0000001_00002"):
        decode_clip(sample)
    with pytest.raises(DataError, match="does not decode"):
        decode_clip(with_image(sample, "png", b"not an image"))


def test_encode_clip_asserts_shape():
    with pytest.raises(AssertionError):
        encode_clip("k", np.zeros((4, 8, 9, 3), np.uint8), {})
    with pytest.raises(AssertionError):
        encode_clip("k", np.zeros((4, 8, 8, 3), np.float32), {})


def test_write_shard_is_atomic_and_readable(tmp_path):
    ids = write_dataset(tmp_path, shards=1, per=3)
    assert sorted(os.listdir(tmp_path)) == ["clips-000000.tar"]  # no temp file left behind
    samples = list(read_shard(str(tmp_path / "clips-000000.tar")))
    assert [s["__key__"] for s in samples] == [f"{i:07d}_{i:05d}" for i in ids]
    with tarfile.open(tmp_path / "clips-000000.tar") as tf:
        assert tf.getnames()[:2] == ["0000000_00000.json", "0000000_00000.png"]

    def failing():
        yield encode_clip("a", make_clip(0), {})
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_shard(tmp_path / "clips-000001.tar", failing())
    assert sorted(os.listdir(tmp_path)) == ["clips-000000.tar"]


# ----------------------------------------------------------------------------- resolving


def test_resolve_shards(tmp_path):
    write_dataset(tmp_path / "d", shards=3, per=1)
    (tmp_path / "d" / "manifest.json").write_text("{}")
    folder = [str(tmp_path / "d" / f"clips-{k:06d}.tar") for k in range(3)]
    assert resolve_shards(str(tmp_path / "d")) == folder
    assert resolve_shards(str(tmp_path / "d" / "clips-{000000..000002}.tar")) == folder
    assert resolve_shards(folder[1]) == [folder[1]]
    assert resolve_shards(f"{folder[0]}::{folder[2]}") == [folder[0], folder[2]]
    with pytest.warns(DataWarning, match="1 of 4 shards do not exist"):
        assert resolve_shards(str(tmp_path / "d" / "clips-{000000..000003}.tar")) == folder
    assert resolve_shards("https://example.com/clips-{000000..000001}.tar") == [
        "https://example.com/clips-000000.tar", "https://example.com/clips-000001.tar"]
    assert resolve_shards("pipe:cat /data/a.tar") == ["pipe:cat /data/a.tar"]
    with pytest.raises(DataError, match="nowhere"):
        resolve_shards(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no .tar shards"):
        resolve_shards(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="none of the 2 shards"):
        resolve_shards(str(tmp_path / "x-{0..1}.tar"))


# ----------------------------------------------------------------------------- reading


def flipped_but_decodable(jpeg: bytes) -> bytes:
    """`jpeg` with one bit of its compressed data flipped such that it still decodes, into another image."""
    original = decode_image(jpeg)
    for position in range(jpeg.find(b"\xff\xda") + 20, len(jpeg) - 2):  # after the start-of-scan header
        damaged = bytearray(jpeg)
        damaged[position] ^= 0x10
        image = decode_image(bytes(damaged))
        if image is not None and image.shape == original.shape and not np.array_equal(image, original):
            return bytes(damaged)
    raise AssertionError("no bit flip of this JPEG decodes")


def test_flipped_bytes_in_a_clip_are_caught_by_its_crc32_and_skipped(tmp_path):
    good = [encode_clip(f"{i:07d}_00000", make_clip(i), {}, quality=90) for i in range(3)]
    corrupt = encode_clip("0000009_00000", make_clip(9), {}, quality=90)
    corrupt["jpg"] = flipped_but_decodable(corrupt["jpg"])  # silent damage: nothing but the crc32 tells
    write_shard(tmp_path / "clips-000000.tar", [good[0], corrupt, *good[1:]])
    source = ShardClips(str(tmp_path), T, S, cfg=cfg(shuffle_buffer=4, fast_dct=False))
    batches, messages = record(lambda: take(source, 3, 4))
    decoded = torch.cat(batches).permute(0, 2, 3, 4, 1)  # [N, T, S, S, 3]
    expected = [torch.from_numpy(decode_image(s["jpg"]).reshape(T, S, S, 3)) for s in good]
    assert all(any(torch.equal(clip, e) for e in expected) for clip in decoded)  # never the damaged clip
    assert {i for i, e in enumerate(expected) if any(torch.equal(clip, e) for clip in decoded)} == {0, 1, 2}
    assert {m for m in messages if "corrupt" in m} == {  # once a pass
        f"skipped: {tmp_path / 'clips-000000.tar'}: clip 0000009_00000: corrupt: the image's bytes do not "
        "match the crc32 in its json"}
    shard = str(tmp_path / "clips-000000.tar")
    sample = next(s for s in read_shard(shard) if s["__key__"] == "0000009_00000")
    with pytest.raises(DataError, match="0000009_00000: corrupt"):
        decode_clip(sample)
    # Shards written before the crc32 field existed still load, unchecked.
    old = dict(sample, json=json.dumps({"frames": T, "size": S}).encode())
    assert decode_clip(old).shape == (3, T, S, S)


def test_a_zero_byte_shard_is_reported_as_empty(tmp_path):
    write_dataset(tmp_path, shards=1, per=2)
    (tmp_path / "clips-000001.tar").write_bytes(b"")
    with pytest.raises(EmptyTarError, match="empty"):
        list(tar_members(io.BytesIO(b"")))
    samples, messages = record(lambda: list(read_shard(str(tmp_path / "clips-000001.tar"))))
    assert samples == []
    assert messages == [f"{tmp_path / 'clips-000001.tar'}: skipped: the shard is empty (0 bytes)"]
    cut = (tmp_path / "clips-000000.tar").read_bytes()[:1024]
    (tmp_path / "clips-000002.tar").write_bytes(cut)  # one whole member, then nothing: truncated, not empty
    messages = record(lambda: list(read_shard(str(tmp_path / "clips-000002.tar"))))[1]
    assert messages == [f"{tmp_path / 'clips-000002.tar'}: skipped the rest of this shard "
                        "(TarError: truncated (no end-of-archive marker))"]
    batches, messages = record(lambda: take(ShardClips(str(tmp_path), T, S, cfg=cfg()), 1, 2))
    assert sorted(clip_ids(batches[0])) == [0, 1]


def test_a_prepared_folder_is_read_as_its_manifest_lists_it(tmp_path):
    write_dataset(tmp_path, shards=3, per=1)
    # What a prepare killed mid-shard leaves: the temporary file of the shard it was writing.
    (tmp_path / ".clips-000003.k2x9_q7a.tar").write_bytes((tmp_path / "clips-000000.tar").read_bytes())
    shards = [str(tmp_path / f"clips-{k:06d}.tar") for k in range(3)]
    assert resolve_shards(str(tmp_path)) == shards  # no manifest (yet): the visible .tar files
    (tmp_path / "manifest.json").write_text(json.dumps({"shards": ["clips-000000.tar", "clips-000002.tar"]}))
    assert resolve_shards(str(tmp_path)) == [shards[0], shards[2]]  # others in the folder are not part of it
    (tmp_path / "manifest.json").write_text(json.dumps({"shards": ["clips-000002.tar", "clips-000007.tar"]}))
    found, messages = record(lambda: resolve_shards(str(tmp_path)))
    assert found == [shards[2]]
    assert messages == [f"{tmp_path}: 1 of 2 shards do not exist (first: {tmp_path / 'clips-000007.tar'}); "
                        "reading the other 1"]
    (tmp_path / "manifest.json").write_text(json.dumps({"shards": ["clips-000009.tar"]}))
    with pytest.raises(DataError, match="none of the 1 shards manifest.json lists exist"):
        resolve_shards(str(tmp_path))
    (tmp_path / "manifest.json").write_text('{"shards": ["clips-0000')  # cut short
    found, messages = record(lambda: resolve_shards(str(tmp_path)))
    assert found == shards and messages == [f"{tmp_path / 'manifest.json'}: unreadable (JSONDecodeError); "
                                            "reading the folder's visible .tar files instead"]
    hidden_only = tmp_path / "hidden"
    hidden_only.mkdir()
    (hidden_only / ".clips-000000.abcdefgh.tar").write_bytes(b"partial")
    assert not is_shard_source(str(hidden_only)) and is_shard_source(str(tmp_path))


def test_tar_written_by_plain_tarfile_is_read(tmp_path):
    # shards from other tools (e.g. `tar cf`): members in any order within a sample, no json
    clip = make_clip(9)
    sample = encode_clip("x", clip, {}, lossless=True)
    with tarfile.open(tmp_path / "a.tar", "w") as tf:
        info = tarfile.TarInfo("0000009_00000.png")
        info.size = len(sample["png"])
        tf.addfile(info, io.BytesIO(sample["png"]))
    batch = take(ShardClips(str(tmp_path / "a.tar"), T, S, cfg=cfg()), 1, 1)[0]
    assert clip_ids(batch) == [9]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_reader_matches_python_tarfile(tmp_path, fmt):
    """Our tar reader against Python's: long names (ustar prefix, GNU 'L', pax 'path'), folders, empty
    files."""
    members = {"a/b.jpg": b"x" * 700, "a/b.json": b"{}", "c.txt": b"",
               ("d" * 90) + "/" + ("e" * 60) + ".png": b"\x01" * 513}
    if fmt != tarfile.USTAR_FORMAT:
        members["f" * 120 + "/g" * 40 + ".json"] = b"[]"  # longer than ustar's prefix + name fields
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w", format=fmt) as tf:
        folder = tarfile.TarInfo("a")
        folder.type = tarfile.DIRTYPE
        tf.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with open(path, "rb") as f:
        assert dict(tar_members(f)) == members
    damaged = path.read_bytes()
    with tarfile.open(path) as tf:
        last = tf.getmembers()[-1]
    end_of_data = last.offset_data + -(-last.size // 512) * 512  # where the end-of-archive blocks begin
    for cut, reason in [(end_of_data, "no end-of-archive marker"), (700, "truncated")]:
        with pytest.raises(TarError, match=reason):
            list(tar_members(io.BytesIO(damaged[:cut])))
    flipped = bytearray(damaged)
    flipped[600] ^= 0xFF  # inside the second header
    with pytest.raises(TarError, match="checksum"):
        list(tar_members(io.BytesIO(bytes(flipped))))
