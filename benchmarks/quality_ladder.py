"""The quality ladder: FVD and KVD of known-good, known-broken and trained sources against real data.

    python benchmarks/quality_ladder.py synthetic --demo runs/demo \\
        --one-stream runs/ladder-onestream-synthetic --num 256
    python benchmarks/quality_ladder.py 'runs/data-vtest-32/clips-000000.tar' \\
        --disjoint 'runs/data-vtest-32/clips-000001.tar' \\
        --demo runs/ladder-twostream-vtest --one-stream runs/ladder-onestream-vtest --num 96
    python benchmarks/quality_ladder.py runs/data-people-64-test --disjoint runs/data-people-64-train \\
        --demo pretrained:people-64 --one-stream runs/people-64-onestream --num 96 --frames 32 --repeats 3

Rungs (each against REAL, N clips a side, the first FRAMES frames, protocol of videogan.metrics.evaluate):
real vs disjoint real (the floor: another seed, or the --disjoint data); real with its frames shuffled in
time (is the metric sensitive to motion?); the first real frame repeated (a still video); an untrained
generator of the demo's architecture (or --preset's); the demo (two-stream) model; a one-stream model trained
with the same steps and seed (the model rungs only where their runs are given). With --held-still, each model
also gets a rung of its own first frames repeated: beside the still rung of real frames it splits a model's
distance into its frames' appearance and its motion. Beside each distance, the clips' own motion (mean
|frame t - frame 0|, 0-255 levels) and still share (pixels whose mean change is below 4 levels), as
benchmarks/image_to_video.py measures them (metrics.measures). With --repeats K, each rung is
drawn K times (repeat k: seed + 2k on both sides, as `videogan evaluate --repeats`) and reported as mean,
standard deviation and 95% interval. Prints one JSON line per rung. Results go into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import replace

import torch

from videogan.bench import cpu_name
from videogan.config import preset
from videogan.metrics.distances import fvd_from_features, kernel_distance
from videogan.metrics.evaluate import (
    REPEAT_SEED_STEP,
    Protocol,
    clip_source,
    generator_clips,
    generator_config,
    i3d_features,
    real_features,
    repeat_summary,
)
from videogan.metrics.i3d import load_i3d, weights_sha256
from videogan.metrics.measures import STILL_LEVELS, motion, still_share
from videogan.models import build_generator


def shuffled_in_time(clips: Iterator[torch.Tensor], seed: int) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    for batch in clips:
        yield torch.stack([c[:, torch.randperm(c.shape[1], generator=gen)] for c in batch])


def still(clips: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    for batch in clips:
        yield batch[:, :, :1].expand_as(batch).contiguous()


def measured(clips: Iterator[torch.Tensor], protocol: Protocol,
             found: list[torch.Tensor]) -> Iterator[torch.Tensor]:
    """The clips as they pass to I3D; the first protocol.num clips' motion and still share over their first
    protocol.frames frames, in 0-255 levels, appended to `found` as [b, 2]."""
    seen = 0
    for batch in clips:
        levels = batch[: protocol.num - seen, :, : protocol.frames].float()  # uint8 [b, 3, T, S, S]
        if len(levels):
            found.append(torch.stack([motion(levels), still_share(levels, STILL_LEVELS)], dim=1))
        seen += len(levels)
        yield batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("real", help="real data (as `videogan evaluate --real`)")
    ap.add_argument("--disjoint",
                    help="disjoint real data for the floor (default: the same source, another seed)")
    ap.add_argument("--demo", help="the two-stream model: a run directory or pretrained:NAME")
    ap.add_argument("--one-stream", help="run directory of the one-stream model")
    ap.add_argument("--preset", help="without --demo: the preset whose architecture the untrained rung uses")
    ap.add_argument("--held-still", action="store_true",
                    help="also each model's own first frames repeated (its appearance without its motion)")
    ap.add_argument("--num", type=int, default=256)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (args.demo or args.preset):
        ap.error("give --demo RUN or --preset NAME (the untrained rung's architecture)")
    device = torch.device("cpu")
    model_cfg = generator_config(args.demo) if args.demo else preset(args.preset)
    i3d, weights = load_i3d(device), weights_sha256()
    started = time.perf_counter()
    scenes = model_cfg.synthetic  # for "synthetic": the scenes the models were trained on
    base = Protocol(num=args.num, frames=args.frames, size=model_cfg.model.size, seed=args.seed)
    print(json.dumps({"machine": cpu_name(), "real": args.real, "protocol": vars(base),
                      "repeats": args.repeats}), flush=True)
    torch.manual_seed(args.seed)  # the untrained generator's initial weights
    untrained, z_dim = build_generator(model_cfg.model).eval(), model_cfg.model.z_dim
    disjoint = args.disjoint or args.real

    def rungs(protocol: Protocol) -> dict[str, Iterator[torch.Tensor]]:
        other = replace(protocol, seed=protocol.seed + 1)
        found = {
            "real vs disjoint real (floor)": clip_source(disjoint, other, args.batch_size, device, scenes),
            "real, frames shuffled in time": shuffled_in_time(
                clip_source(disjoint, other, args.batch_size, device, scenes), protocol.seed),
            "real, first frame repeated (still)": still(
                clip_source(disjoint, other, args.batch_size, device, scenes)),
            "untrained generator": generator_clips(untrained, z_dim, protocol, args.batch_size),
        }
        models = {f"two-stream ({args.demo})": args.demo, f"one-stream ({args.one_stream})": args.one_stream}
        for name, run in models.items():
            if run:
                found[name] = clip_source(run, protocol, args.batch_size, device)
                if args.held_still:
                    found[f"{name}, first frame repeated"] = still(
                        clip_source(run, protocol, args.batch_size, device))
        return found

    draws: dict[str, list[dict]] = {}
    for k in range(args.repeats):
        protocol = replace(base, seed=args.seed + REPEAT_SEED_STEP * k)
        real, _ = real_features(args.real, i3d, protocol, device, args.batch_size, weights, synthetic=scenes)
        for name, clips in rungs(protocol).items():
            t, clip_measures = time.perf_counter(), []
            fake = i3d_features(measured(clips, protocol, clip_measures), i3d, protocol, device,
                                args.batch_size, desc=name[:20])
            motion_levels, still_fraction = torch.cat(clip_measures).mean(0).tolist()
            draw = {"seed": protocol.seed, "fvd": round(fvd_from_features(real, fake), 2),
                    "kvd": round(kernel_distance(real, fake), 4), "motion": round(motion_levels, 2),
                    "still_share": round(still_fraction, 3), "seconds": round(time.perf_counter() - t, 1)}
            draws.setdefault(name, []).append(draw)
            if args.repeats == 1:
                print(json.dumps({"rung": name, **draw}), flush=True)
    if args.repeats > 1:
        for name, values in draws.items():
            summary = {k: round(v, 2) if isinstance(v, float) else [round(x, 2) for x in v]
                       for k, v in repeat_summary(values).items()}
            summary |= {key: round(sum(v[key] for v in values) / len(values), 3)
                        for key in ("motion", "still_share")}
            print(json.dumps({"rung": name, **summary, "repeats": values}), flush=True)
    print(json.dumps({"total_seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
