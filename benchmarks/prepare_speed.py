"""Preparation speed in source frames per second, with and without stabilisation.

    python benchmarks/prepare_speed.py [VIDEOS_DIR] [--workers N]

Runs `videogan prepare` (the library call) on every video in VIDEOS_DIR (default: the project's
shared sample videos, ../shared/data/videos or $VIDEOGAN_SAMPLE_VIDEOS) into a temporary folder and
prints one JSON line per setting. Results go into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from sample_data import sample_videos_dir

from videogan.bench import cpu_name
from videogan.data.prepare import PrepareConfig, prepare
from videogan.data.stabilize import StabilizeSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="?", type=Path, default=sample_videos_dir())
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--features", nargs="+", default=["sift"], choices=["sift", "orb"],
                        help="stabilisation features to time (each is one more run)")
    args = parser.parse_args()
    if not args.videos.is_dir():
        raise SystemExit(f"{args.videos}: no such folder (pass the videos folder or set "
                         "VIDEOGAN_SAMPLE_VIDEOS)")
    settings = [("none", PrepareConfig(stabilize=False))] + [
        (f, PrepareConfig(stabilization=StabilizeSettings(method=f))) for f in args.features]
    for features, cfg in settings:
        with tempfile.TemporaryDirectory() as out:
            summary = prepare([args.videos], out, cfg, workers=args.workers, progress=False)
            report = json.loads((Path(out) / "report.json").read_text())["videos"]
        print(json.dumps({
            "stabilization": features, "workers": args.workers, "cpus": os.cpu_count(), "machine": cpu_name(),
            "videos_ok": summary.videos_ok, "videos_skipped": summary.videos_skipped,
            "frames": summary.frames, "clips_written": summary.clips_written,
            "clips_dropped_unstable": summary.clips_dropped_unstable, "seconds": round(summary.seconds, 2),
            "frames_per_second": round(summary.frames_per_second, 1),
            "per_video": {Path(e["path"]).name: {k: e[k]
                                                 for k in ("frames", "clips", "dropped_unstable", "seconds")
                                                if k in e} for e in report},
        }))


if __name__ == "__main__":
    main()
