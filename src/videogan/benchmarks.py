"""Benchmarks that belong to the package (used by benchmarks/*.py and usable from a notebook)."""
from __future__ import annotations

import io
import os
import platform
import time

import cv2
import numpy as np
from PIL import Image

from .config import DataConfig
from .data.shards import IMAGE_KEYS, ShardClips, _image_bytes, decode_image, read_shard, resolve_shards


def cpu_name() -> str:
    """The CPU's model name, for benchmark records."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def data_throughput(source: str, frames: int, size: int, batch_size: int = 64, workers: int = 2,
                    num_batches: int = 40, warmup: int = 4, shuffle_buffer: int = 2000) -> dict:
    """Clips per second that `ShardClips` (the real training path: tar reading, shuffle buffer, decoding,
    batching, DataLoader workers) delivers from prepared shards. The first `warmup` batches (worker start-up,
    filling the shuffle buffer) are timed separately as `startup_seconds`."""
    cfg = DataConfig(workers=workers, shuffle_buffer=shuffle_buffer)
    src = ShardClips(source, frames, size, seed=0, cfg=cfg)
    it = src.batches(0, batch_size)
    t0 = time.perf_counter()
    for _ in range(max(1, warmup)):
        next(it)
    t1 = time.perf_counter()
    for _ in range(num_batches):
        next(it)
    t2 = time.perf_counter()
    it.close()
    cps = num_batches * batch_size / (t2 - t1)
    first = next(read_shard(src.urls[0]))
    return {
        "clips_per_second": round(cps, 1),
        "clips_per_second_per_worker": round(cps / max(1, workers), 1),
        "workers": workers,
        "batch_size": batch_size,
        "frames": frames,
        "size": size,
        "format": next(k for k in IMAGE_KEYS if k in first),
        "shards": len(src.urls),
        "num_batches": num_batches,
        "startup_seconds": round(t1 - t0, 3),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def decode_cost(source: str, n: int = 200, repeats: int = 3) -> dict:
    """Clips per second (one core) decoding the first `n` stacked images of `source`: with `decode_image` (what
    ShardClips uses: simplejpeg for JPEG), OpenCV's imdecode and PIL, all libjpeg-turbo / libpng underneath.
    Best of `repeats`."""
    urls = resolve_shards(source)
    blobs = []
    for sample in read_shard(urls[0]):
        blobs.append(_image_bytes(sample))
        if len(blobs) >= n:
            break

    def pil(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    def opencv(data: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)

    out = {}
    for name, fn in (("decode_image", decode_image), ("cv2_imdecode", opencv), ("pil", pil)):
        best = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            for b in blobs:
                fn(b)
            best = max(best, len(blobs) / (time.perf_counter() - t))
        out[f"{name}_clips_per_second"] = round(best, 1)
    out["mean_bytes_per_clip"] = int(np.mean([len(b) for b in blobs]))
    return out
