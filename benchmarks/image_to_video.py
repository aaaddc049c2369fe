r"""Image to video: does the first frame match the input, do the frames move, and does the noise matter?

    nice -n 5 python benchmarks/image_to_video.py --deterministic runs/i2v-det --stochastic runs/i2v-sto \
        --steps 600

Trains (or resumes, or reuses when already at --steps) the tiny conditional preset on the built-in synthetic
scenes, once deterministic (the paper's model) and once stochastic, then animates NUM held-out scenes' first
frames (another seed than training's) with each trained model and with untrained models of the same
architecture and seed. All numbers on the 0-255 pixel scale, means over the images:
- first_frame_mae: mean |first generated frame - input image|;
- motion: mean |frame t - frame 0| over t >= 1 (0 for a frozen copy of the input); the real clips' own motion
  is printed for scale;
- motion_spread (K futures per image from K noise vectors): mean over the K(K-1)/2 pairs of mean |d_i - d_j|,
  d_k = frame t - frame 0 of future k (metrics.measures.motion_spread); exactly 0 for the deterministic model;
- object_flow_spread (warping models only, in pixels, not levels): how far the input's objects
  (the scenes' own masks, split into connected parts) are from being copied at one offset per frame
  (metrics.measures.object_flow_spread); 0 for rigid motion, so read it beside motion.
Prints one JSON line per model. Results go into benchmarks/RESULTS.md.

    python benchmarks/image_to_video.py --evaluate runs/pretrained-animate runs/i2v-inbg   # trained runs only

measures the given runs (EMA and live weights) on the same held-out images, without training anything.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import fields
from pathlib import Path

import cv2
import torch

from videogan.bench import cpu_name
from videogan.config import preset
from videogan.data import SyntheticScenes
from videogan.generation.animate import animate, measures
from videogan.generation.loading import load_generator
from videogan.media import from_uint8, upscale, write_png
from videogan.metrics.measures import motion, object_flow_spread
from videogan.models import GeneratorOutput, build_generator
from videogan.training.checkpoint import list_checkpoints
from videogan.training.loop import train


def trained(run_dir: str, stochastic: bool, steps: int, threads: int) -> float:
    """Train the tiny conditional preset into run_dir up to `steps` (resuming a shorter run); seconds
    spent."""
    cfg = preset("tiny", "conditional")
    cfg.model.stochastic = stochastic
    cfg.train.steps, cfg.train.num_threads, cfg.train.device, cfg.data.workers = steps, threads, "cpu", 0
    found = list_checkpoints(run_dir)
    if found and int(found[-1].name.split("_")[1]) >= steps:
        return 0.0
    started = time.perf_counter()
    train(cfg, run_dir, resume=bool(found), progress=True)
    return time.perf_counter() - started


def input_objects(masks: torch.Tensor) -> torch.Tensor:
    """uint8 masks [N, H, W] (255 on a moving object) -> int64 [N, H, W]: 0 off the objects, 1..n per
    connected part."""
    return torch.stack([torch.from_numpy(cv2.connectedComponents((m > 127).numpy().astype("uint8"))[1]).long()
                        for m in masks])


def summary(generator: torch.nn.Module, images: torch.Tensor, samples: int, objects: torch.Tensor) -> dict:
    """Mean measures over the images of `samples` futures each (seed 0). The deterministic model takes no
    noise: its two "futures" are two calls with different seeds, whose spread is then exactly 0."""
    if generator.z_dim:
        out = animate(generator, images, samples, seed=0)
    else:
        samples = 2
        runs = [animate(generator, images, 1, seed=seed) for seed in range(samples)]
        out = GeneratorOutput(**{f.name: None if getattr(runs[0], f.name) is None
                                 else torch.cat([getattr(r, f.name) for r in runs])
                                 for f in fields(GeneratorOutput)})
    rows = measures(out, images, samples)
    result = {key: round(statistics.mean(r[key] for r in rows), 3) for key in rows[0]}
    if out.flow is not None:  # futures are ordered [K * N], as the objects repeated K times
        per_clip_objects = objects.repeat(len(out.flow) // len(objects), 1, 1)
        spread = object_flow_spread(out.flow, per_clip_objects)
        result["object_flow_spread"] = round(spread.nanmean().item(), 3)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deterministic", help="run directory of the deterministic model (trained if needed)")
    ap.add_argument("--stochastic", help="run directory of the stochastic model (trained if needed)")
    ap.add_argument("--evaluate", nargs="+", metavar="RUN",
                    help="only measure these trained runs (any conditional variant)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--num", type=int, default=64, help="held-out images")
    ap.add_argument("--samples", type=int, default=4, help="futures per image for the spread (K)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--example",
                    help="also write one held-out input here as a 128x128 PNG (the README's example)")
    ap.add_argument("--train-only", choices=["deterministic", "stochastic"],
                    help="train that model and stop (to train both at once)")
    args = ap.parse_args()
    if not args.evaluate and not (args.deterministic and args.stochastic):
        ap.error("give --deterministic and --stochastic, or --evaluate RUN...")
    torch.set_num_threads(args.threads)
    if args.train_only:
        run = args.deterministic if args.train_only == "deterministic" else args.stochastic
        print(json.dumps({"trained": run, "seconds": trained(run, args.train_only == "stochastic", args.steps,
                                                             args.threads)}))
        return

    cfg = preset("tiny", "conditional")
    scenes = SyntheticScenes(cfg.model.frames, cfg.model.size, seed=cfg.train.seed + 1000,
                             cfg=cfg.synthetic).batch(0, args.num)
    held_out = scenes.video
    images = held_out[:, :, 0]  # [N, 3, S, S] uint8
    objects = input_objects(scenes.mask[:, 0, 0])  # [N, S, S]: the first frame's objects
    if args.example:
        # nearest x4: area-resized back to 32x32 it is the same image
        write_png(Path(args.example), upscale(images[0], 4))
    real_motion = 127.5 * motion(from_uint8(held_out)).mean().item()
    if args.evaluate:
        print(json.dumps({"machine": cpu_name(), "torch": torch.__version__, "num": args.num,
                          "samples": args.samples, "real_clips_motion": round(real_motion, 3)}), flush=True)
        for run in args.evaluate:
            loaded = load_generator(run)
            for label, generator in ((f"{run}, {loaded.step} steps", loaded.generator),
                                     (f"{run}, {loaded.step} steps, live weights",
                                      load_generator(run, weights="live").generator)):
                print(json.dumps({"model": label, **summary(generator, images, args.samples, objects)}),
                      flush=True)
        return

    seconds = {"deterministic": trained(args.deterministic, False, args.steps, args.threads),
               "stochastic": trained(args.stochastic, True, args.steps, args.threads)}
    print(json.dumps({"machine": cpu_name(), "torch": torch.__version__, "steps": args.steps,
                      "train_seconds": seconds, "num": args.num, "samples": args.samples,
                      "real_clips_motion": round(real_motion, 3)}), flush=True)

    for name, run in (("deterministic", args.deterministic), ("stochastic", args.stochastic)):
        # EMA weights (the default), BatchNorm statistics re-estimated on the run's fixed inputs
        loaded = load_generator(run)
        torch.manual_seed(loaded.config.train.seed)
        untrained = build_generator(loaded.config.model).eval()
        # G as last trained (its running BatchNorm statistics)
        live = load_generator(run, weights="live").generator
        for label, generator in ((f"{name}, untrained", untrained),
                                 (f"{name}, trained {loaded.step} steps", loaded.generator),
                                 (f"{name}, trained {loaded.step} steps, live weights", live)):
            print(json.dumps({"model": label, **summary(generator, images, args.samples, objects)}),
                  flush=True)


if __name__ == "__main__":
    main()
