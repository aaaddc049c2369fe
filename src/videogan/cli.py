"""Command line: parses arguments and calls the package. No logic of its own."""
from __future__ import annotations

import argparse
import json
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
           "model.kind": args.model, "train.data": args.data, "train.device": args.device},
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
    p.add_argument("--data", help="'synthetic' (default) or a video file or folder of videos")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from .checkpoint import CheckpointError
    from .data.decode import DataError
    from .models import ArchitectureError
    from .train import TrainingError

    user_errors = (ConfigError, ArchitectureError, CheckpointError, DataError, TrainingError, FileNotFoundError)
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
