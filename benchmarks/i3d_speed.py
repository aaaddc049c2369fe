"""Clips per second of the I3D forward pass (load_i3d(), fp32, inference), on this machine.

    python benchmarks/i3d_speed.py                          # batch 4 and 8, 16 frames of 224x224, 2 threads
    python benchmarks/i3d_speed.py --batch-sizes 1 4 --threads 1 --device cuda

Prints one JSON line per batch size: clips/s after a warm-up batch, and the process's peak RSS on CPU.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import date

import torch

from videogan.bench import cpu_name
from videogan.metrics.i3d import load_i3d


def clips_per_second(net, batch: int, frames: int, device: str, repeats: int) -> float:
    x = torch.rand(batch, 3, frames, 224, 224, device=device) * 2 - 1
    with torch.inference_mode():
        net(x)  # warm-up (allocator, kernel selection)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            net(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = load_i3d(args.device)
    for batch in args.batch_sizes:
        rate = clips_per_second(net, batch, args.frames, args.device, args.repeats)
        print(json.dumps({
            "batch": batch, "frames": args.frames, "clips_per_s": round(rate, 3), "device": args.device,
            "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "date": str(date.today()),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }), flush=True)


if __name__ == "__main__":
    main()
