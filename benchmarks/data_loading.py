"""Data-loading throughput from prepared WebDataset shards (the real ShardClips training path).

    python benchmarks/data_loading.py                # 4 shards x 500 clips of 32x64x64, JPEG and PNG
    python benchmarks/data_loading.py --clips 200    # quicker

Writes the shards (synthetic scenes: textured backgrounds with moving objects, encoded exactly as
`videogan prepare` does) to a temporary folder, then prints one JSON line per (format, workers) with
clips/s, plus the raw cost of decoding a stacked 32x64x64 clip with OpenCV and with PIL.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from datetime import date
from pathlib import Path

import torch

from videogan.bench import cpu_name, data_throughput, decode_cost
from videogan.data import SyntheticScenes
from videogan.data.shards import encode_clip, write_shard


def make_shards(folder: Path, shards: int, clips: int, frames: int, size: int, lossless: bool) -> None:
    scenes = SyntheticScenes(frames, size, seed=123)
    for k in range(shards):
        video = scenes.clips(k, clips).permute(0, 2, 3, 4, 1).contiguous().numpy()  # [N, T, S, S, 3]
        write_shard(folder / f"clips-{k:06d}.tar",
                    (encode_clip(f"{k:07d}_{i:05d}", video[i], {"source": "synthetic", "frames": frames},
                                 lossless=lossless) for i in range(clips)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--clips", type=int, default=500, help="clips per shard")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(json.dumps({"machine": cpu_name(), "torch": torch.__version__, "date": str(date.today())}))
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("jpg", "png"):
            folder = Path(tmp) / fmt
            folder.mkdir()
            make_shards(folder, args.shards, args.clips, args.frames, args.size, lossless=fmt == "png")
            print(json.dumps({"format": fmt, **decode_cost(str(folder))}))
            for w in args.workers:
                print(json.dumps(data_throughput(str(folder), args.frames, args.size, args.batch_size,
                                                 workers=w, num_batches=args.batches)), flush=True)


if __name__ == "__main__":
    main()
