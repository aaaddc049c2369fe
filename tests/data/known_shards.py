"""Shards of known clips for the tests of shards.py and streaming.py: each clip's first pixel carries its id
(exact in PNG), so a batch tells which clips it holds."""
import json
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from videogan.config import DataConfig
from videogan.data.decode import DataWarning
from videogan.data.shards import encode_clip, write_shard
from videogan.data.streaming import ShardClips

T, S = 6, 8


def make_clip(i: int, t: int = T, s: int = S) -> np.ndarray:
    """A random clip [t, s, s, 3] whose first pixel carries its id (exact in PNG)."""
    clip = np.random.default_rng(i).integers(0, 256, (t, s, s, 3), dtype=np.uint8)
    clip[0, 0, 0] = (i % 256, i // 256, 7)
    return clip


def clip_ids(batch: torch.Tensor) -> list[int]:
    px = batch[:, :, 0, 0, 0].long()  # [B, 3]
    assert (px[:, 2] == 7).all(), "a clip that is not one of ours (grey/zero?)"
    return (px[:, 0] + 256 * px[:, 1]).tolist()


def write_dataset(folder: Path, shards: int, per: int, lossless: bool = True, t: int = T,
                  s: int = S) -> list[int]:
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for k in range(shards):
        samples = []
        for j in range(per):
            i = k * per + j
            ids.append(i)
            samples.append(encode_clip(f"{i:07d}_{j:05d}", make_clip(i, t, s),
                                       {"source": f"v{i}.mp4", "fps": 25.0}, lossless=lossless))
        assert write_shard(folder / f"clips-{k:06d}.tar", samples) == per
    return ids


def with_image(sample: dict, ext: str, data: bytes) -> dict:
    """`sample` with other image bytes and a crc32 that matches them: damage done before the shard was
    written, which only decoding can find."""
    meta = {**json.loads(sample["json"]), "crc32": zlib.crc32(data)}
    return {**sample, ext: data, "json": json.dumps(meta).encode()}


def cfg(**kw) -> DataConfig:
    base = dict(workers=0, shuffle_buffer=1, hflip=False, random_offset=False)
    return DataConfig(**{**base, **kw})


def take(source: ShardClips, n: int, batch_size: int, **kw) -> list[torch.Tensor]:
    it = source.batches(kw.pop("start_step", 0), batch_size, **kw)
    return [next(it) for _ in range(n)]


def record(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(x.message) for x in w if issubclass(x.category, DataWarning)]
