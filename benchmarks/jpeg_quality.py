"""What the shards' JPEG quality costs and buys: error against the source clip and decoding speed.

    python benchmarks/jpeg_quality.py                  # vtest.avi + box.mp4 from ../shared/data/videos
    python benchmarks/jpeg_quality.py VIDEO... --clips 24

Cuts real clips exactly as `videogan prepare` does (without stabilisation, which does not change the
trade-off), encodes each at several qualities and losslessly, and prints one JSON line per setting: mean bytes
per clip, mean absolute error (0-255) and PSNR against the uncompressed clip, and clips decoded per second on
one core by `decode_image` (what the training loader uses), best of 5 by process CPU time (steadier than wall
time on a shared machine). Each JPEG quality is decoded twice: with the exact DCT and with libjpeg-turbo's
fast one (the training loader's default, data.fast_dct).
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from sample_data import sample_videos_dir

from videogan.data.prepare import PrepareConfig, VideoStats, video_clips
from videogan.data.shards import decode_image, encode_clip

DEFAULT_VIDEOS = sample_videos_dir()


def source_clips(videos: list[Path], per_video: int, cfg: PrepareConfig) -> list[np.ndarray]:
    clips = []
    for path in videos:
        clips += [c.frames for c in itertools.islice(video_clips(path, cfg, VideoStats()), per_video)]
    return clips


def decode_rate(blobs: list[bytes], fast_dct: bool, repeats: int = 5) -> float:
    out = np.empty((len(blobs) and decode_image(blobs[0]).shape) or (1,), np.uint8)
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        for b in blobs:
            decode_image(b, out, fast_dct=fast_dct)
        best = min(best, time.process_time() - t)
    return len(blobs) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("videos", nargs="*", type=Path,
                    default=[DEFAULT_VIDEOS / "vtest.avi", DEFAULT_VIDEOS / "box.mp4"])
    ap.add_argument("--clips", type=int, default=12, help="clips per video")
    ap.add_argument("--qualities", default="75,85,90,95")
    args = ap.parse_args()
    cfg = PrepareConfig(stabilize=False)
    clips = source_clips(args.videos, args.clips, cfg)
    settings = ([("jpg", int(q), fast) for q in args.qualities.split(",") for fast in (False, True)]
                + [("png", None, False)])
    for kind, quality, fast_dct in settings:
        blobs = [encode_clip("k", c, {}, lossless=kind == "png", quality=quality or 0)[kind] for c in clips]
        errors = np.stack([decode_image(b, fast_dct=fast_dct).astype(np.float64) - c.reshape(-1, *c.shape[2:])
                           for b, c in zip(blobs, clips, strict=True)])
        mse = float((errors ** 2).mean())
        print(json.dumps({
            "format": kind, "quality": quality, "fast_dct": fast_dct, "clips": len(clips),
            "bytes_per_clip": int(np.mean([len(b) for b in blobs])),
            "mean_abs_error": round(float(np.abs(errors).mean()), 2),
            "psnr_db": round(10 * np.log10(255 ** 2 / mse), 1) if mse else None,
            "decode_clips_per_second": round(decode_rate(blobs, fast_dct), 1),
        }))


if __name__ == "__main__":
    main()
