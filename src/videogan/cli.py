"""Command line: parses arguments and calls the package. No logic of its own."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import PRESETS, Config, ConfigError, from_dict, override, parse_assignment, preset


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def build_config(name: str | None, sets: list[str], base: Config | None = None, **fields) -> Config:
    """Preset (or `base`) + `--set section.field=value` overrides + the dedicated flags."""
    cfg = base if base is not None else preset(name or "tiny")
    for text in sets:
        override(cfg, *parse_assignment(text))
    for key, value in fields.items():
        if value is not None:
            override(cfg, key, value)
    return cfg


def cmd_info(args: argparse.Namespace) -> int:
    from .models import Discriminator, build_generator

    cfg = build_config(args.preset, args.set, **{"model.kind": args.model})
    generator, discriminator = build_generator(cfg.model), Discriminator(cfg.model)
    info = {
        "preset": args.preset,
        "generator": type(generator).__name__,
        "generator_params": sum(p.numel() for p in generator.parameters()),
        "discriminator_params": sum(p.numel() for p in discriminator.parameters()),
        "clip_shape": cfg.clip_shape,
        "config": cfg.to_dict(),
    }
    print(json.dumps(info, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    base = None
    saved = Path(args.out) / "config.json"
    if args.resume and saved.is_file() and args.preset is None:
        try:
            base = from_dict(json.loads(saved.read_text()))
        except (json.JSONDecodeError, ConfigError) as e:
            raise ConfigError(f"{saved}: cannot read the run's config ({e})") from None
    cfg = build_config(
        args.preset, args.set, base,
        **{"train.steps": args.steps, "train.batch_size": args.batch_size, "train.seed": args.seed,
           "model.kind": args.model, "data.source": args.data, "data.root": args.root, "train.device": args.device,
           "train.eval_every": args.eval_every, "train.eval_num": args.eval_num},
    )
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if result.is_main:
        print(json.dumps({"run_dir": str(result.run_dir), "step": result.step,
                          "checkpoint": str(result.checkpoint) if result.checkpoint else None, **result.last_metrics}))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .distributed import resolve_device
    from .sample import load_generator, sample, save_samples

    loaded = load_generator(args.source, device=resolve_device(args.device), weights=args.weights)
    out = sample(loaded.generator, num=args.num, seed=args.seed, batchnorm=args.batchnorm)
    stats = save_samples(out, args.out, fps=args.fps, upscale=args.upscale)
    print(json.dumps({"checkpoint": str(loaded.path), "step": loaded.step, "weights": loaded.weights, "out": args.out, **stats}))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data.prepare import PrepareConfig, prepare
    from .data.stabilize import StabilizeSettings

    cfg = PrepareConfig(size=args.size, frames=args.frames, stride=args.stride or 0, fps=args.fps or 0.0, stabilize=args.stabilize,
                        min_motion=args.min_motion, lossless=args.lossless, clips_per_shard=args.clips_per_shard,
                        stabilization=StabilizeSettings(method=args.features))
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    s = prepare(args.inputs, args.out, cfg, workers=workers, progress=not args.quiet)
    if not args.quiet:
        done = "already complete: " if s.already_complete else ""
        print(f"{done}{s.videos_ok} videos ok, {s.videos_skipped} skipped; {s.clips_written} clips in {s.shards} shards; "
              f"dropped {s.clips_dropped_unstable} by stabilisation, {s.clips_dropped_static} as static; "
              f"{s.frames_per_second:.0f} frames/s (details: {Path(args.out) / 'report.json'})", file=sys.stderr)
    print(json.dumps(s.to_dict()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .distributed import resolve_device
    from .media import write_json
    from .metrics.evaluate import Protocol, evaluate, run_config

    fake_config = run_config(args.fake)
    size = args.size or (fake_config.model.size if fake_config is not None else 64)
    protocol = Protocol(num=args.num, frames=args.frames, size=size, seed=args.seed)
    result = evaluate(args.real, args.fake, protocol, batch_size=args.batch_size, device=resolve_device(args.device),
                      progress=not args.quiet, cache=not args.no_cache)
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result))
    return 0


def cmd_bench_data(args: argparse.Namespace) -> int:
    from .benchmarks import data_throughput

    result = data_throughput(args.data, frames=args.frames, size=args.size, batch_size=args.batch_size,
                             workers=args.workers, num_batches=args.batches)
    print(json.dumps(result))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (no usage dump), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="videogan", description="Generating Videos with Scene Dynamics (Vondrick et al. 2016) in PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    presets = sorted(PRESETS)
    set_help = "override any config field, e.g. --set model.g_width=64 (repeatable)"

    p = sub.add_parser("info", help="parameter counts, clip shape and resolved config of a preset, as JSON")
    p.add_argument("--preset", default="paper", choices=presets)
    p.add_argument("--model", choices=["two-stream", "one-stream"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train a generator and discriminator")
    p.add_argument("--preset", choices=presets, help="named config (default: tiny; on --resume: the run's own)")
    p.add_argument("--out", required=True, help="run directory (config, checkpoints, metrics, samples)")
    p.add_argument("--steps", type=_positive_int, help="total iterations (one D step + one G step each)")
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--seed", type=_int)
    p.add_argument("--model", choices=["two-stream", "one-stream"])
    p.add_argument("--data", help="'synthetic' (default); prepared shards (folder, brace pattern, URL, pipe:); "
                                  "the original's LIST.txt (with --root); or a folder of raw videos")
    p.add_argument("--root", help="folder the paths in a LIST.txt are relative to (default: the list's folder)")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--eval-every", type=_int, help="FVD/KVD against the training data every K steps (0: never)")
    p.add_argument("--eval-num", type=_positive_int, help="clips per side for --eval-every (default 256)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="sample clips from a trained generator and write GIF/MP4/PNG")
    p.add_argument("source", help="run directory (uses its latest checkpoint) or checkpoint folder")
    p.add_argument("--num", type=_positive_int, default=16)
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--fps", type=_positive_int, default=8)
    p.add_argument("--upscale", type=_positive_int, default=1, help="nearest-neighbour zoom for viewing")
    p.add_argument("--batchnorm", choices=["running", "batch"], default="running",
                   help="BatchNorm statistics: running averages from training (default) or this batch's")
    p.add_argument("--weights", choices=["ema", "live"],
                   help="G's moving-average weights (default, where the run kept them) or its last trained weights")
    p.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("prepare", help="videos -> stabilised clips in WebDataset shards (resumes when re-run)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders (searched recursively) or .txt lists of paths")
    p.add_argument("--out", required=True, help="output folder: clips-NNNNNN.tar, manifest.json, report.json")
    p.add_argument("--size", type=_positive_int, default=64, help="output frame size (square), default 64")
    p.add_argument("--frames", type=_positive_int, default=32, help="frames per clip, default 32")
    p.add_argument("--stride", type=_positive_int, help="frames between clip starts within a shot (default: --frames)")
    p.add_argument("--fps", type=_positive_float, help="resample every video to this frame rate first (default: keep)")
    p.add_argument("--stabilize", action=argparse.BooleanOptionalAction, default=True,
                   help="remove camera motion with a RANSAC homography per frame (default: on)")
    p.add_argument("--features", choices=["sift", "orb"], default="sift",
                   help="features matched for stabilisation: sift (default; the paper's, most accurate) or orb (~5x faster)")
    p.add_argument("--min-motion", type=_non_negative_float, default=0.0,
                   help="drop clips whose mean |frame difference| (0-255) is below this (default 0: keep all)")
    p.add_argument("--lossless", action="store_true", help="store frames as PNG instead of JPEG (quality 95)")
    p.add_argument("--clips-per-shard", type=_positive_int, default=1000)
    p.add_argument("--workers", type=_positive_int, help="processes decoding videos in parallel (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("evaluate", help="FVD and KVD (I3D features) of a generator or data set against real data, as JSON")
    p.add_argument("--real", required=True, help="real data: synthetic, prepared shards, a LIST.txt or a folder of videos")
    p.add_argument("--fake", required=True, help="a run directory (samples its generator) or data as for --real")
    p.add_argument("--num", type=_positive_int, default=2048, help="clips per side (default 2048)")
    p.add_argument("--frames", type=_positive_int, default=16, help="the first frames of each clip (default 16)")
    p.add_argument("--size", type=_positive_int, help="read real data at this size (default: the run's, else 64)")
    p.add_argument("--seed", type=_int, default=0)
    p.add_argument("--batch-size", type=_positive_int, help="clips per I3D batch (default: what fits the GPU's free memory; CPU 8)")
    p.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu, cuda or cuda:N")
    p.add_argument("--no-cache", action="store_true", help="recompute the real features even when cached")
    p.add_argument("--out", help="also write the JSON result here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="measure speed, print JSON")
    bench = p.add_subparsers(dest="target", required=True, parser_class=_Parser)
    b = bench.add_parser("data", help="clips per second read from prepared shards through the training loader")
    b.add_argument("data", help="prepared shards: folder, brace pattern or URL")
    b.add_argument("--frames", type=_positive_int, default=32)
    b.add_argument("--size", type=_positive_int, default=64)
    b.add_argument("--batch-size", type=_positive_int, default=64)
    b.add_argument("--workers", type=_int, default=0, help="DataLoader worker processes (0: in this process)")
    b.add_argument("--batches", type=_positive_int, default=50, help="batches to time (after warm-up)")
    b.set_defaults(func=cmd_bench_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from .checkpoint import CheckpointError
    from .data.decode import DataError
    from .metrics.i3d import I3DWeightsError
    from .models import ArchitectureError
    from .train import TrainingError

    user_errors = (ConfigError, ArchitectureError, CheckpointError, DataError, TrainingError, I3DWeightsError, FileNotFoundError)
    try:
        return args.func(args)
    except user_errors as e:
        print(f"videogan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("videogan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
