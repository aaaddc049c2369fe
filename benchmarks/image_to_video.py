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
- still_share: the fraction of pixels whose mean |frame t - frame 0| over t >= 1 is below 4 levels
  (metrics.measures.still_share), over all futures: whether the background stays put while something moves;
  the real clips' own share is printed for scale;
- object_flow_spread (warping models only, in pixels, not levels): how far the input's objects
  (the scenes' own masks, split into connected parts) are from being copied at one offset per frame
  (metrics.measures.object_flow_spread); 0 for rigid motion, so read it beside motion.
Prints one JSON line per model. Results go into benchmarks/RESULTS.md.

    python benchmarks/image_to_video.py --evaluate runs/pretrained-animate runs/i2v-inbg   # trained runs only

measures the given runs or "pretrained:NAME" models (EMA weights, and live weights where a run kept both) on
the same held-out images, without training anything.

    python benchmarks/image_to_video.py --evaluate runs/people-animate --data runs/data-people-64-test \
        --num 64

measures them on real held-out clips instead: NUM clips of any source `train --data` takes, drawn as FVD draws
its real side (metrics.evaluate.data_clips) at the models' frames and size (all models given must share them),
with the first model's training seed + 1000; their first frames are the inputs. Real footage has no object
masks, so object_flow_spread is left out there.
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
from videogan.config import Config, ConfigError, preset
from videogan.data import SyntheticScenes
from videogan.generation.animate import animate, check_image_to_video, measures
from videogan.generation.loading import load_generator
from videogan.generation.pretrained import strip_prefix
from videogan.media import from_uint8, upscale, write_png
from videogan.metrics.evaluate import Protocol, data_clips, generator_config
from videogan.metrics.measures import STILL_LEVELS, motion, object_flow_spread, still_share
from videogan.models import GeneratorOutput, build_generator
from videogan.training.checkpoint import list_checkpoints
from videogan.training.loop import train

HELD_OUT_SEED_OFFSET = 1000  # held-out scenes or clips are drawn with the training seed + this
TO_PIXELS = 127.5  # model units ([-1, 1]) -> 0-255 levels


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


def real_measures(clips: torch.Tensor) -> dict:
    """The held-out clips' own motion and still_share (uint8 [N, 3, T, S, S]), the scale to read the models'
    by."""
    video = from_uint8(clips)
    return {"real_clips_motion": round(TO_PIXELS * motion(video).mean().item(), 3),
            "real_clips_still_share": round(still_share(video, STILL_LEVELS / TO_PIXELS).mean().item(), 3)}


def real_clips(source: str, cfg: Config, num: int) -> torch.Tensor:
    """`num` clips of a data source at the model's frames and size, uint8 [N, 3, T, S, S], drawn with its
    training seed + HELD_OUT_SEED_OFFSET (metrics.evaluate.data_clips: first frames, no flips)."""
    protocol = Protocol(num=num, frames=cfg.model.frames, size=cfg.model.size,
                        seed=cfg.train.seed + HELD_OUT_SEED_OFFSET)
    stream = data_clips(source, protocol, cfg.synthetic)
    batches, drawn = [], 0
    try:
        for batch in stream:
            batches.append(batch)
            drawn += len(batch)
            if drawn >= num:
                break
    finally:
        stream.close()
    return torch.cat(batches)[:num]


def summary(generator: torch.nn.Module, images: torch.Tensor, samples: int,
            objects: torch.Tensor | None) -> dict:
    """Mean measures over the images of `samples` futures each (seed 0). The deterministic model takes no
    noise: its two "futures" are two calls with different seeds, whose spread is then exactly 0. `objects`:
    the inputs' object masks (input_objects), None where there are none (real clips): no
    object_flow_spread."""
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
    result["still_share"] = round(still_share(out.video, STILL_LEVELS / TO_PIXELS).mean().item(), 3)
    if out.flow is not None and objects is not None:  # futures are [K * N], as the objects repeated K times
        per_clip_objects = objects.repeat(len(out.flow) // len(objects), 1, 1)
        spread = object_flow_spread(out.flow, per_clip_objects)
        result["object_flow_spread"] = round(spread.nanmean().item(), 3)
    return result


def evaluate_runs(runs: list[str], images: torch.Tensor, samples: int, objects: torch.Tensor | None) -> None:
    """One JSON line per model: each run's EMA weights (the default) and, where it kept both, its live weights
    (G as last trained); a pretrained model ships one set."""
    for run in runs:
        loaded = load_generator(run)
        variants = [(f"{run}, {loaded.step} steps", loaded.generator)]
        if strip_prefix(run) is None and loaded.weights == "ema":
            variants.append((f"{run}, {loaded.step} steps, live weights",
                             load_generator(run, weights="live").generator))
        for label, generator in variants:
            check_image_to_video(generator, run)
            print(json.dumps({"model": label, **summary(generator, images, samples, objects)}), flush=True)


def evaluate_on_data(runs: list[str], source: str, num: int, samples: int) -> torch.Tensor:
    """Measure the runs on `num` real clips of `source` (see the module's docstring); returns the inputs."""
    first, *others = [generator_config(run) for run in runs]
    for run, cfg in zip(runs[1:], others, strict=True):
        if (cfg.model.frames, cfg.model.size) != (first.model.frames, first.model.size):
            raise ConfigError(f"{run}: makes {cfg.model.frames} frames of {cfg.model.size}x{cfg.model.size}, "
                              f"{runs[0]} {first.model.frames} of {first.model.size}x{first.model.size}: "
                              "measure models of one shape together")
    clips = real_clips(source, first, num)
    print(json.dumps({"machine": cpu_name(), "torch": torch.__version__, "data": source,
                      "seed": first.train.seed + HELD_OUT_SEED_OFFSET, "frames": first.model.frames,
                      "size": first.model.size, "num": len(clips), "samples": samples,
                      **real_measures(clips)}), flush=True)
    images = clips[:, :, 0].contiguous()  # [N, 3, S, S] uint8
    evaluate_runs(runs, images, samples, objects=None)
    return images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deterministic", help="run directory of the deterministic model (trained if needed)")
    ap.add_argument("--stochastic", help="run directory of the stochastic model (trained if needed)")
    ap.add_argument("--evaluate", nargs="+", metavar="RUN",
                    help="only measure these trained runs or pretrained:NAME models (conditional)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--data", default="synthetic", metavar="SOURCE",
                    help="with --evaluate: held-out clips of this data source (any `train --data` takes) "
                         "instead of the built-in synthetic scenes")
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
    if args.data != "synthetic" and not args.evaluate:
        ap.error("--data needs --evaluate RUN...: the models are trained on the synthetic scenes")
    torch.set_num_threads(args.threads)
    if args.train_only:
        run = args.deterministic if args.train_only == "deterministic" else args.stochastic
        print(json.dumps({"trained": run, "seconds": trained(run, args.train_only == "stochastic", args.steps,
                                                             args.threads)}))
        return
    if args.evaluate and args.data != "synthetic":
        images = evaluate_on_data(args.evaluate, args.data, args.num, args.samples)
        if args.example:
            write_png(Path(args.example), upscale(images[0], 4))
        return

    cfg = preset("tiny", "conditional")
    scenes = SyntheticScenes(cfg.model.frames, cfg.model.size, seed=cfg.train.seed + HELD_OUT_SEED_OFFSET,
                             cfg=cfg.synthetic).batch(0, args.num)
    held_out = scenes.video
    images = held_out[:, :, 0]  # [N, 3, S, S] uint8
    objects = input_objects(scenes.mask[:, 0, 0])  # [N, S, S]: the first frame's objects
    if args.example:
        # nearest x4: area-resized back to 32x32 it is the same image
        write_png(Path(args.example), upscale(images[0], 4))
    if args.evaluate:
        print(json.dumps({"machine": cpu_name(), "torch": torch.__version__, "num": args.num,
                          "samples": args.samples, **real_measures(held_out)}), flush=True)
        evaluate_runs(args.evaluate, images, args.samples, objects)
        return

    seconds = {"deterministic": trained(args.deterministic, False, args.steps, args.threads),
               "stochastic": trained(args.stochastic, True, args.steps, args.threads)}
    print(json.dumps({"machine": cpu_name(), "torch": torch.__version__, "steps": args.steps,
                      "train_seconds": seconds, "num": args.num, "samples": args.samples,
                      **real_measures(held_out)}), flush=True)

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
