"""The quality ladder: FVD and KVD of known-good, known-broken and trained sources against real data.

    python benchmarks/quality_ladder.py synthetic --demo runs/demo \\
        --one-stream runs/ladder-onestream-synthetic --num 256
    python benchmarks/quality_ladder.py 'runs/data-vtest-32/clips-000000.tar' \\
        --disjoint 'runs/data-vtest-32/clips-000001.tar' \\
        --demo runs/ladder-twostream-vtest --one-stream runs/ladder-onestream-vtest --num 96

Rungs (each against REAL, N clips a side, the first FRAMES frames, protocol of videogan.metrics.evaluate):
real vs disjoint real (the floor: another seed, or the --disjoint data); real with its frames shuffled in
time (is the metric sensitive to motion?); the first real frame repeated (a still video); an untrained
generator of the demo's architecture; the demo (two-stream) model; a one-stream model trained with the same
steps and seed. Prints one JSON line per rung. Results go into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import replace

import torch

from videogan.bench import cpu_name
from videogan.metrics.distances import fvd_from_features, kernel_distance
from videogan.metrics.evaluate import Protocol, clip_source, generator_clips, i3d_features, real_features
from videogan.metrics.i3d import load_i3d, weights_sha256
from videogan.models import build_generator
from videogan.training.checkpoint import checkpoint_config


def shuffled_in_time(clips: Iterator[torch.Tensor], seed: int) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    for batch in clips:
        yield torch.stack([c[:, torch.randperm(c.shape[1], generator=gen)] for c in batch])


def still(clips: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    for batch in clips:
        yield batch[:, :, :1].expand_as(batch).contiguous()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("real", help="real data (as `videogan evaluate --real`)")
    ap.add_argument("--disjoint",
                    help="disjoint real data for the floor (default: the same source, another seed)")
    ap.add_argument("--demo", required=True, help="run directory of the two-stream model")
    ap.add_argument("--one-stream", required=True, help="run directory of the one-stream model")
    ap.add_argument("--num", type=int, default=256)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    device = torch.device("cpu")
    model_cfg = checkpoint_config(args.demo)
    protocol = Protocol(num=args.num, frames=args.frames, size=model_cfg.model.size, seed=args.seed)
    i3d, weights = load_i3d(device), weights_sha256()
    started = time.perf_counter()
    scenes = model_cfg.synthetic  # for "synthetic": the scenes the models were trained on
    real, _ = real_features(args.real, i3d, protocol, device, args.batch_size, weights, synthetic=scenes)
    print(json.dumps({"machine": cpu_name(), "real": args.real, "protocol": vars(protocol)}), flush=True)

    other = replace(protocol, seed=args.seed + 1)
    disjoint = args.disjoint or args.real
    torch.manual_seed(args.seed)  # the untrained generator's initial weights
    untrained = build_generator(model_cfg.model).eval()
    rungs = {
        "real vs disjoint real (floor)": clip_source(disjoint, other, args.batch_size, device, scenes),
        "real, frames shuffled in time": shuffled_in_time(
            clip_source(disjoint, other, args.batch_size, device, scenes), args.seed),
        "real, first frame repeated (still)": still(
            clip_source(disjoint, other, args.batch_size, device, scenes)),
        "untrained generator": generator_clips(untrained, model_cfg.model.z_dim, protocol, args.batch_size),
        f"two-stream ({args.demo})": clip_source(args.demo, protocol, args.batch_size, device),
        f"one-stream ({args.one_stream})": clip_source(args.one_stream, protocol, args.batch_size, device),
    }
    for name, clips in rungs.items():
        t = time.perf_counter()
        fake = i3d_features(clips, i3d, protocol, device, args.batch_size, desc=name[:20])
        print(json.dumps({"rung": name, "fvd": round(fvd_from_features(real, fake), 2),
                          "kvd": round(kernel_distance(real, fake), 4),
                          "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    print(json.dumps({"total_seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
