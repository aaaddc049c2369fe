"""How far an image-to-video model moves pixels, against FVD: its flow's reach scaled, beside the input moved
rigidly.

    python benchmarks/animate_reach.py runs/data-people-64-test pretrained:people-animate \\
        --scales 1,0.5,0.25,0.05,0 --shifts 0.5,1 --num 96 --frames 32

Rungs, each against REAL (N clips a side, the protocol of videogan.metrics.evaluate; the inputs are first
frames of REAL drawn with seed + 1, as `videogan evaluate --fake RUN` animates them):
- the model with its flow's reach (model.max_flow) times S, the same weights: every translation (or the free
  flow) scaled by S; S = 0 returns the input held still;
- the input moved P pixels to the right in frames 1 to T-1 (bilinear, border pixels repeated): motion with no
  content, which tells what interpolation blur costs (P = 0.5) from what a whole-frame move does (P = 1).
Beside each distance, the clips' motion (mean |frame t - frame 0|, 0-255 levels) and still share (pixels whose
mean change is below 4 levels; metrics.measures). Prints one JSON line per rung. Results go into
benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from quality_ladder import measured  # the ladder's motion and still share of clips as they pass to I3D
from torch import nn

from videogan.bench import cpu_name
from videogan.generation.loading import load_generator
from videogan.metrics.distances import fvd_from_features, kernel_distance
from videogan.metrics.evaluate import Protocol, animated_clips, i3d_features, real_features
from videogan.metrics.i3d import load_i3d, weights_sha256
from videogan.models.conditional import ImageToVideoGenerator, warp
from videogan.models.generator import GeneratorOutput


class RigidShift(nn.Module):
    """image [B, 3, H, W] -> the image moved `pixels` to the right in every frame but the first: the clip
    shape and the device of `like` (an image-to-video generator), which it does not run."""

    def __init__(self, like: ImageToVideoGenerator, pixels: float):
        super().__init__()
        self.like, self.pixels = like, pixels
        self.image_shape, self.z_dim = like.image_shape, like.z_dim

    def forward(self, image: torch.Tensor, z: torch.Tensor | None = None) -> GeneratorOutput:
        B, _, H, W = image.shape
        T = self.like.clip_shape[1]
        flow = image.new_zeros(B, 2, T, H, W)
        flow[:, 0, 1:] = -2 * self.pixels / W  # frame t at p samples the image at p - shift: it moves right
        video = warp(image, flow)
        return GeneratorOutput(video=video, foreground=video, mask=torch.ones_like(video[:, :1]),
                               background=image)


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("real", help="real data (as `videogan evaluate --real`); also the inputs' source")
    ap.add_argument("model", help="a warping image-to-video model: a run or pretrained:NAME")
    ap.add_argument("--scales", type=floats, default=[1.0, 0.5, 0.25, 0.05, 0.0],
                    help="reach scales S, comma-separated")
    ap.add_argument("--shifts", type=floats, default=[0.5, 1.0], help="rigid shifts P in pixels")
    ap.add_argument("--num", type=int, default=96)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    device = torch.device("cpu")
    loaded = load_generator(args.model, device=device)
    generator = loaded.generator
    if not (isinstance(generator, ImageToVideoGenerator) and generator.warp_foreground):
        ap.error(f"{args.model}: not an image-to-video model that warps its input (model.warp_foreground)")
    protocol = Protocol(num=args.num, frames=args.frames, size=loaded.config.model.size, seed=args.seed)
    print(json.dumps({"machine": cpu_name(), "real": args.real, "model": args.model, "step": loaded.step,
                      "protocol": vars(protocol)}), flush=True)
    i3d, weights = load_i3d(device), weights_sha256()
    started = time.perf_counter()
    real, _ = real_features(args.real, i3d, protocol, device, args.batch_size, weights, progress=False)
    reach = generator.flow_range

    def with_reach(scale: float) -> ImageToVideoGenerator:
        generator.flow_range = reach * scale  # every translation (or the free flow) times scale
        return generator

    rungs = [(f"reach x {s:g}", lambda s=s: with_reach(s)) for s in args.scales]
    rungs += [(f"input moved {p:g} px", lambda p=p: RigidShift(generator, p)) for p in args.shifts]
    for name, make in rungs:
        t, found = time.perf_counter(), []
        clips = animated_clips(make(), args.real, protocol, args.batch_size)
        fake = i3d_features(measured(clips, protocol, found), i3d, protocol, device, args.batch_size,
                            progress=False)
        motion_levels, still_fraction = torch.cat(found).mean(0).tolist()
        print(json.dumps({"rung": name, "fvd": round(fvd_from_features(real, fake), 2),
                          "kvd": round(kernel_distance(real, fake), 4), "motion": round(motion_levels, 2),
                          "still_share": round(still_fraction, 3),
                          "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    print(json.dumps({"total_seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
