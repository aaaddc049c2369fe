"""Command line: parses arguments and calls the package. No logic of its own."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from .config import (
    MAX_INT,
    PRESETS,
    Config,
    ConfigError,
    from_dict,
    override,
    parse_assignment,
    preset,
    validate,
)
from .errors import VideoGANError


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text!r}")
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
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if abs(value) > MAX_INT:  # no count, seed or step comes near it: a typo (config.MAX_INT)
        raise argparse.ArgumentTypeError(f"expected an integer of at most 2**53 in magnitude, got {text!r}")
    return value


def build_config(name: str | None, sets: list[str], base: Config | None = None, **fields) -> Config:
    """Preset (or `base`) + `--set section.field=value` overrides + the dedicated flags, validated as a whole
    (config.validate). `--model conditional` picks the preset's image-to-video variant
    (config.CONDITIONAL_PRESETS)."""
    cfg = base if base is not None else preset(name or "tiny", fields.get("model.kind"))
    for text in sets:
        override(cfg, *parse_assignment(text))
    for key, value in fields.items():
        if value is not None:
            override(cfg, key, value)
    return validate(cfg)


def cmd_info(args: argparse.Namespace) -> int:
    from .models import Discriminator, build_generator

    cfg = build_config(args.preset, args.set,
                       **{"model.kind": args.model, "model.stochastic": args.stochastic})
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
    from .training.loop import train

    base = None
    saved = Path(args.out) / "config.json"
    if args.resume and saved.is_file() and args.preset is None:
        try:
            base = from_dict(json.loads(saved.read_text()))
        except (json.JSONDecodeError, RecursionError, ConfigError) as e:
            raise ConfigError(f"{saved}: cannot read the run's config ({e})") from None
    cfg = build_config(
        args.preset, args.set, base,
        **{"train.steps": args.steps, "train.batch_size": args.batch_size, "train.seed": args.seed,
           "model.kind": args.model, "data.source": args.data, "data.root": args.root,
           "train.device": args.device, "train.eval_every": args.eval_every, "train.eval_num": args.eval_num,
           "model.stochastic": args.stochastic},
    )
    result = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if result.is_main:
        print(json.dumps({"run_dir": str(result.run_dir), "step": result.step,
                          "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                          **result.last_metrics}))
    if result.stopped_by_signal:
        # 128 + N, as a shell reports a process ended by signal N: schedulers tell a stop from a finished run.
        if result.is_main:
            print(f"videogan: stopped by {signal.Signals(result.stopped_by_signal).name} "
                  f"at step {result.step}; checkpoint {result.checkpoint}; continue with --resume",
                  file=sys.stderr)
        return 128 + result.stopped_by_signal
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from .generation.loading import load_generator
    from .generation.sample import sample, save_samples
    from .training.distributed import resolve_device

    loaded = load_generator(_generator_source(args.source, args.pretrained),
                            device=resolve_device(args.device), weights=args.weights)
    out = sample(loaded.generator, num=args.num, seed=args.seed, batchnorm=args.batchnorm)
    stats = save_samples(out, args.out, fps=args.fps, upscale=args.upscale)
    print(json.dumps({"checkpoint": str(loaded.path), "step": loaded.step, "weights": loaded.weights,
                      "out": args.out, **stats}))
    return 0


def cmd_animate(args: argparse.Namespace) -> int:
    from .generation.animate import animate_files
    from .training.distributed import resolve_device

    run, images = args.run, args.images
    if args.pretrained:  # no RUN_DIR: every positional is an image; none: the model's shipped examples
        from .generation.pretrained import PREFIX, examples

        images = [run, *images] if run is not None else [str(p) for p in examples(args.pretrained)]
        run = PREFIX + args.pretrained
    elif not images:
        raise ConfigError("give RUN_DIR and at least one IMAGE, or --pretrained NAME")
    s = animate_files(run, images, args.out, samples=args.samples, seed=args.seed,
                      device=resolve_device(args.device), weights=args.weights, fps=args.fps,
                      upscale=args.upscale, progress=not args.quiet)
    for line in s.errors:
        print(f"videogan: error: {line}", file=sys.stderr)
    print(json.dumps({"checkpoint": str(s.checkpoint), "step": s.step, "weights": s.weights, "out": args.out,
                      "animated": s.done, "failed": len(s.errors)}))
    return 2 if s.errors else 0


def cmd_import_t7(args: argparse.Namespace) -> int:
    from .interop.t7 import import_t7

    r = import_t7(args.net, args.out, discriminator=args.discriminator, progress=not args.quiet)
    m = r.config.model
    print(json.dumps({"run_dir": str(r.run_dir), "checkpoint": str(r.checkpoint), "step": r.step,
                      "clip_shape": r.config.clip_shape, "g_width": m.g_width,
                      "d_width": m.d_width if args.discriminator else None, "sources": r.sources}))
    return 0


def _generator_source(source: str | None, name: str | None) -> str:
    """A run/checkpoint path or --pretrained NAME (as "pretrained:NAME"), exactly one of them."""
    if (source is None) == (name is None):
        raise ConfigError("give either a run directory or --pretrained NAME (see `videogan pretrained`)")
    return source if name is None else f"pretrained:{name}"


def cmd_pretrained(args: argparse.Namespace) -> int:
    from .generation import pretrained

    names = [args.name] if args.name else pretrained.names()
    rows = [pretrained.summary(n) for n in names]
    print(json.dumps(rows, indent=2) if args.json else pretrained.table(rows))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data.decode import DataError
    from .data.prepare import PrepareConfig, finalize, parse_partition, prepare
    from .data.stabilize import StabilizeSettings
    from .data.storage import Folder

    if args.finalize is not None:
        if (args.inputs or args.out or args.partition or args.partitions or args.engine != "local"
                or args.address):
            raise DataError("prepare --finalize OUT takes no INPUT, --out, --partition, --partitions, "
                            "--engine or --address")
        args.out = args.finalize
        s = finalize(args.finalize)
    elif not args.inputs or not args.out:
        raise DataError("prepare: give INPUT... and --out (or --finalize OUT)")
    else:
        cfg = PrepareConfig(size=args.size, frames=args.frames, stride=args.stride or 0, fps=args.fps or 0.0,
                            stabilize=args.stabilize, min_motion=args.min_motion, lossless=args.lossless,
                            quality=args.quality, clips_per_shard=args.clips_per_shard,
                            stabilization=StabilizeSettings(method=args.features))
        if args.engine == "ray" and args.workers is not None:
            raise DataError("prepare: --workers is the local engine's; --engine ray runs each partition as "
                            "one task on one CPU (set the number with --partitions)")
        workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
        partition = parse_partition(args.partition) if args.partition else None
        s = prepare(args.inputs, args.out, cfg, workers=workers, progress=not args.quiet, partition=partition,
                    partitions=args.partitions, engine=args.engine, address=args.address)
    if not args.quiet:
        done = "already complete: " if s.already_complete else ""
        part = f"partition {s.partition}: " if s.partition else ""
        print(f"{part}{done}{s.videos_ok} videos ok, {s.videos_skipped} skipped; "
              f"{s.clips_written} clips in {s.shards} shards; "
              f"dropped {s.clips_dropped_unstable} by stabilisation, {s.clips_dropped_static} as static; "
              f"{s.frames_per_second:.0f} frames/s (details: {Folder(args.out) / 'report.json'})",
              file=sys.stderr)
    print(json.dumps(s.to_dict()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .media import write_json
    from .metrics.evaluate import Protocol, evaluate, run_config
    from .training.distributed import resolve_device

    fake_config = run_config(args.fake)
    size = args.size or (fake_config.model.size if fake_config is not None else 64)
    protocol = Protocol(num=args.num, frames=args.frames, size=size, seed=args.seed)
    result = evaluate(args.real, args.fake, protocol, batch_size=args.batch_size,
                      device=resolve_device(args.device), progress=not args.quiet, cache=not args.no_cache,
                      repeats=args.repeats)
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result))
    return 0


def _fraction(text: str) -> float:
    """A label fraction: 0.125 or 1/8, in (0, 1]."""
    try:
        num, _, den = text.partition("/")
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.125 or 1/8, got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def cmd_features(args: argparse.Namespace) -> int:
    from .representation.features import features
    from .training.distributed import resolve_device

    result = features(args.run, args.data, args.out, batchnorm=args.bn_stats, split=args.split,
                      root=args.root, test_list=args.test_list, device=resolve_device(args.device),
                      workers=args.workers, progress=not args.quiet)
    print(json.dumps(result))
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .representation.finetune import FinetuneSettings, finetune
    from .training.distributed import resolve_device

    if args.init != "random" and (args.preset or args.set):
        raise ConfigError("--preset and --set choose the architecture of --init random; a run brings its own")
    model = build_config(args.preset or "paper", args.set).model
    settings = FinetuneSettings(
        init=args.init, data=args.data, mode=args.mode, label_fraction=args.label_fraction, seed=args.seed,
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, bn_stats=args.bn_stats,
        eval_every=args.eval_every, split=args.split, root=args.root, test_list=args.test_list, model=model,
        device=str(resolve_device(args.device)), workers=args.workers)
    summary = finetune(settings, args.out, progress=not args.quiet)
    keys = ("test_accuracy", "mean_class_accuracy", "train_accuracy", "chance", "num_train", "num_test",
            "init", "init_step", "mode")
    print(json.dumps({"out": args.out, **{k: summary[k] for k in keys}}))
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from .bench import train_step_speed

    cfg = build_config(args.preset, args.set,
                       **{"train.batch_size": args.batch_size, "train.device": args.device})
    result = train_step_speed(cfg, steps=args.steps, warmup=args.warmup, peak_size=args.peak_size,
                              upsample=args.upsample, progress=not args.quiet)
    print(json.dumps({"preset": args.preset, "overrides": args.set, **result}))
    return 0


def cmd_bench_precision(args: argparse.Namespace) -> int:
    from .bench import precision_check

    cfg = build_config(args.preset, args.set,
                       **{"train.batch_size": args.batch_size, "train.device": args.device})
    print(json.dumps({"preset": args.preset, "overrides": args.set, **precision_check(cfg)}))
    return 0


def cmd_bench_data(args: argparse.Namespace) -> int:
    from .bench import data_throughput

    result = data_throughput(args.data, frames=args.frames, size=args.size, batch_size=args.batch_size,
                             workers=args.workers, num_batches=args.batches, fast_dct=not args.exact_dct)
    print(json.dumps(result))
    return 0


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return value


def cmd_study_create(args: argparse.Namespace) -> int:
    from .study.create import CreateSettings, create
    from .training.distributed import resolve_device

    settings = CreateSettings(pairs=args.pairs, catch=args.catch, seed=args.seed, frames=args.frames,
                              size=args.size, upscale=args.upscale, fps=args.fps, real=args.real,
                              label_a=args.label_a, label_b=args.label_b)
    study = create(args.a, args.b, args.out, settings, device=resolve_device(args.device),
                   progress=not args.quiet)
    catch = sum(p.kind == "catch" for p in study.pairs)
    print(json.dumps({"out": args.out, "pairs": len(study.pairs) - catch, "catch": catch,
                      "frames": study.frames, "size": study.size, "upscale": study.upscale,
                      "a": study.a.label, "b": study.b.label}))
    return 0


def cmd_study_serve(args: argparse.Namespace) -> int:
    from .study.server import serve

    serve(args.study, host=args.host, port=args.port, quiet=not args.verbose)
    return 0


def cmd_study_report(args: argparse.Namespace) -> int:
    from .study.report import report

    summary = report(args.study, out=args.out, exclude_failed_catch=args.exclude_failed_catch)
    print(json.dumps({k: v for k, v in summary.items() if k != "per_rater"}))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr (no usage dump), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Options that several commands share, each declared once below: the flag, its type and its usual default and
# help. A command passes its own default or help only where the option means something else there.
DEVICE_HELP = "auto (default: cuda if available), cpu, cuda or cuda:N"
CONFIG_DEVICE_HELP = "auto (default), cpu, cuda or cuda:N"  # left unset: the config's train.device decides
SET_HELP = "override any config field, e.g. --set model.g_width=64 (repeatable)"
UPSCALE_HELP = "nearest-neighbour zoom for viewing"
LABELED_HELP = ("labeled clips: synthetic-actions, a UCF101 folder (classInd.txt, "
                "trainlist0N/testlist0N.txt, videos in a folder per class), a 'path label' .txt list, "
                "or prepared shards whose json carries a label")
BN_STATS_HELP = ("BatchNorm statistics of the frozen D: re-estimated on the training clips (default) or the "
                 "checkpoint's")


def _add_device(p: argparse.ArgumentParser, default: str | None = "auto", help: str = DEVICE_HELP) -> None:
    p.add_argument("--device", default=default, help=help)


def _add_quiet(p: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    p.add_argument("--quiet", action="store_true", help=help)


def _add_seed(p: argparse.ArgumentParser, default: int | None = 0, help: str | None = None) -> None:
    p.add_argument("--seed", type=_int, default=default, help=help)


def _add_preset(p: argparse.ArgumentParser, default: str | None = None, help: str | None = None) -> None:
    p.add_argument("--preset", default=default, choices=sorted(PRESETS), help=help)


def _add_set(p: argparse.ArgumentParser, help: str = SET_HELP) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)


def _add_model(p: argparse.ArgumentParser) -> None:
    """--model and --stochastic: the generator's kind, on top of the preset."""
    p.add_argument("--model", choices=["two-stream", "one-stream", "conditional"],
                   help="conditional: image to video (with --preset, its conditional variant)")
    p.add_argument("--stochastic", action="store_true", default=None,
                   help="conditional model: also take noise z")


def _add_pretrained(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--pretrained", metavar="NAME", help=help)


def _add_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", choices=["ema", "live"],
                   help="G's moving-average weights (default, where the run kept them) or its last trained "
                        "weights")


def _add_fps(p: argparse.ArgumentParser) -> None:
    """The frame rate written clips play at (prepare's --fps, a rate to resample to, is another option)."""
    p.add_argument("--fps", type=_positive_int, default=8)


def _add_upscale(p: argparse.ArgumentParser, default: int | None = 1, help: str = UPSCALE_HELP) -> None:
    p.add_argument("--upscale", type=_positive_int, default=default, help=help)


def _add_batch_size(p: argparse.ArgumentParser, default: int | None = None, help: str | None = None) -> None:
    p.add_argument("--batch-size", type=_positive_int, default=default, help=help)


def _add_workers(p: argparse.ArgumentParser, default: int | None, help: str, type=_non_negative_int) -> None:
    p.add_argument("--workers", type=type, default=default, help=help)


def _add_labeled_options(p: argparse.ArgumentParser) -> None:
    """What `features` and `finetune` share: how labeled clips are split and read, and where D runs."""
    p.add_argument("--split", type=_positive_int, default=1,
                   help="UCF101: use trainlist0N/testlist0N (default 1)")
    p.add_argument("--root",
                   help="'path label' list: folder its paths are relative to (default: the list's folder)")
    p.add_argument("--test-list",
                   help="'path label' list of the test clips "
                        "(default: a fixed 20%% of each class is held out)")
    p.add_argument("--bn-stats", choices=["data", "checkpoint"], default="data", help=BN_STATS_HELP)
    _add_workers(p, 2, "processes decoding videos (default 2)")
    _add_device(p)
    _add_quiet(p, "no progress bars")


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="videogan",
                     description="Generating Videos with Scene Dynamics (Vondrick et al. 2016) in PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("info", help="parameter counts, clip shape and resolved config of a preset, as JSON")
    _add_preset(p, default="paper")
    _add_model(p)
    _add_set(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train a generator and discriminator")
    _add_preset(p, help="named config (default: tiny; on --resume: the run's own)")
    p.add_argument("--out", required=True, help="run directory (config, checkpoints, metrics, samples)")
    p.add_argument("--steps", type=_positive_int, help="total iterations (one D step + one G step each)")
    _add_batch_size(p)
    _add_seed(p, default=None)
    _add_model(p)
    p.add_argument("--data",
                   help="'synthetic' (default); prepared shards (folder, brace pattern, URL, pipe:); "
                        "the original's LIST.txt (with --root); or a folder of raw videos")
    p.add_argument("--root",
                   help="folder the paths in a LIST.txt are relative to (default: the list's folder)")
    _add_device(p, default=None, help=CONFIG_DEVICE_HELP)
    p.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    _add_quiet(p)
    p.add_argument("--eval-every", type=_non_negative_int,
                   help="FVD/KVD against the training data every K steps (0: never)")
    p.add_argument("--eval-num", type=_positive_int, help="clips per side for --eval-every (default 256)")
    _add_set(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("generate", help="sample clips from a trained generator and write GIF/MP4/PNG")
    p.add_argument("source", nargs="?",
                   help="run directory (uses its latest checkpoint) or checkpoint folder")
    _add_pretrained(p, "a model shipped with the package instead (see `videogan pretrained`)")
    p.add_argument("--num", type=_positive_int, default=16)
    _add_seed(p)
    p.add_argument("--out", required=True, help="output folder")
    _add_fps(p)
    _add_upscale(p)
    p.add_argument("--batchnorm", choices=["running", "batch"], default="running",
                   help="BatchNorm statistics: running averages from training (default) or this batch's")
    _add_weights(p)
    _add_device(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("import-t7",
                       help="convert the original authors' Torch7 models (iterN_net.t7) into a run directory")
    p.add_argument("net", help="the generator: main.lua's iterN_net.t7")
    p.add_argument("--discriminator", metavar="NETD.t7", help="the discriminator: iterN_netD.t7 (optional)")
    p.add_argument("--out", required=True, help="run directory to create (generate / evaluate read it)")
    _add_quiet(p)
    p.set_defaults(func=cmd_import_t7)

    p = sub.add_parser("animate",
                       help="image to video: "
                            "animate still images with a run trained with --model conditional")
    p.add_argument("run", metavar="RUN_DIR", nargs="?",
                   help="run directory (uses its latest checkpoint) or checkpoint folder; "
                        "left out with --pretrained")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files of any size and format Pillow reads")
    _add_pretrained(p, "a shipped image-to-video model instead of RUN_DIR "
                       "(without IMAGEs: its example images)")
    p.add_argument("--out", required=True, help="output folder: one subfolder per image")
    p.add_argument("--samples", type=_positive_int, default=1, help="futures per image (stochastic models)")
    _add_seed(p)
    _add_fps(p)
    _add_upscale(p)
    _add_weights(p)
    _add_device(p)
    _add_quiet(p)
    p.set_defaults(func=cmd_animate)

    p = sub.add_parser("pretrained",
                       help="the models shipped with the package: "
                            "data, preset, steps, time, FVD/KVD, command")
    p.add_argument("name", nargs="?", help="only this model")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=cmd_pretrained)

    p = sub.add_parser("prepare",
                       help="videos -> stabilised clips in WebDataset shards (resumes when re-run)")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="video files, folders (searched recursively), .txt lists of paths, manifests "
                        "(.csv/.jsonl/.parquet with a path or url column, optional start/end seconds) or "
                        "fsspec URLs (http(s)://, s3://, ...)")
    p.add_argument("--out", help="output folder: clips-pIIIII-NNNNNN.tar, manifest.json, report.json")
    p.add_argument("--partition", metavar="I/N",
                   help="prepare only partition I of N (0 <= I < N) of the sorted inputs, e.g. one Slurm "
                        "array task each; then `prepare --finalize OUT` once all are done")
    p.add_argument("--finalize", metavar="OUT",
                   help="check that every partition in OUT is complete, then write its manifest.json and "
                        "the merged report.json (names any missing partition)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="how every partition is run: local (default), in turn on this machine's --workers "
                        "processes; ray, each as a task of one CPU on a Ray cluster (pip install "
                        "'videogan[ray]'; OUT and the inputs on a file system every node shares)")
    p.add_argument("--address", metavar="auto|HOST:PORT",
                   help="with --engine ray: the cluster started with `ray start` (auto: the one this "
                        "machine belongs to; HOST:PORT: its head node); default: a Ray instance of its own")
    p.add_argument("--partitions", type=_positive_int, metavar="N",
                   help="how many partitions the engine splits the sorted inputs into (default: local 1, ray "
                        "one per video, at most 10000); part of the preparation: resuming needs the same N")
    p.add_argument("--size", type=_positive_int, default=64, help="output frame size (square), default 64")
    p.add_argument("--frames", type=_positive_int, default=32, help="frames per clip, default 32")
    p.add_argument("--stride", type=_positive_int,
                   help="frames between clip starts within a shot (default: --frames)")
    p.add_argument("--fps", type=_positive_float,
                   help="resample every video to this frame rate first (default: keep)")
    p.add_argument("--stabilize", action=argparse.BooleanOptionalAction, default=True,
                   help="remove camera motion with a RANSAC homography per frame (default: on)")
    p.add_argument("--features", choices=["lk", "sift", "orb"], default="lk",
                   help="how stabilisation follows the background: lk (default; corners tracked by "
                        "pyramidal Lucas-Kanade, ~6x faster than sift, as accurate), sift (the paper's "
                        "matched features) or orb (matched, less accurate)")
    p.add_argument("--min-motion", type=_non_negative_float, default=0.0,
                   help="drop clips whose mean |frame difference| (0-255) is below this "
                        "(default 0: keep all)")
    p.add_argument("--lossless", action="store_true",
                   help="store frames as PNG instead of JPEG (~4x larger, ~3x slower to read)")
    p.add_argument("--quality", type=_positive_int, default=85,
                   help="JPEG quality 1-100 "
                        "(default 85: fast to decode; 95 for ~1.4 fewer grey levels of error)")
    p.add_argument("--clips-per-shard", type=_positive_int, default=1000)
    _add_workers(p, None, "processes decoding videos in parallel (default: all cores)", type=_positive_int)
    _add_quiet(p, "no progress bars")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("evaluate",
                       help="FVD and KVD (I3D features) of a generator or data set "
                            "against real data, as JSON")
    p.add_argument("--real", required=True,
                   help="real data: synthetic, prepared shards, a LIST.txt or a folder of videos")
    p.add_argument("--fake", required=True,
                   help="a run directory or pretrained:NAME (samples its generator; an "
                        "image-to-video one animates first frames of --real) or data as for --real")
    p.add_argument("--num", type=_positive_int, default=2048, help="clips per side (default 2048)")
    p.add_argument("--frames", type=_positive_int, default=16,
                   help="the first frames of each clip (default 16)")
    p.add_argument("--size", type=_positive_int,
                   help="read real data at this size (default: the run's, else 64)")
    _add_seed(p)
    p.add_argument("--repeats", type=_positive_int, default=1,
                   help="independent draws of both sides, repeat k with seed + 2k: FVD and KVD become "
                        "their mean, with std, a 95%% interval and each draw (default 1)")
    _add_batch_size(p, help="clips per I3D batch (default: what fits the GPU's free memory; CPU 8)")
    _add_device(p)
    p.add_argument("--no-cache", action="store_true", help="recompute the real features even when cached")
    p.add_argument("--out", help="also write the JSON result here")
    _add_quiet(p, "no progress bars")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("features",
                       help="discriminator features (the last map before its real/fake layer) of labeled "
                            "clips, as .npz")
    p.add_argument("run", metavar="RUN_DIR",
                   help="run directory (its latest checkpoint) or checkpoint folder")
    p.add_argument("data", metavar="DATA", help=LABELED_HELP)
    p.add_argument("--out", required=True,
                   help="the .npz file: flat and pooled features, ids, labels, split, classes")
    _add_labeled_options(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("finetune",
                       help="action recognition with the discriminator: linear probe or fine-tuning, "
                            "scored on the test split")
    p.add_argument("--init", required=True,
                   help="run directory or checkpoint folder (its D), or 'random' (the baseline)")
    p.add_argument("--data", required=True, help=LABELED_HELP)
    p.add_argument("--mode", choices=["linear", "finetune"], default="finetune",
                   help="linear: train only the new head on frozen features; "
                        "finetune (default): train every layer")
    p.add_argument("--label-fraction", type=_fraction, default=1.0,
                   help="train on this class-balanced share of the labels (e.g. 1/8)")
    _add_seed(p, help="label subset, random init, head init, dropout, batch order")
    p.add_argument("--steps", type=_positive_int, default=1000, help="optimiser steps (default 1000)")
    _add_batch_size(p, default=32)
    p.add_argument("--lr", type=_positive_float, default=2e-4,
                   help="Adam learning rate (default 2e-4; beta1 0.5, as the original)")
    p.add_argument("--eval-every", type=_non_negative_int, default=0,
                   help="also score the test split every K steps, into the summary's history")
    _add_preset(p, help="--init random: the architecture (default: paper)")
    _add_set(p, "--init random: override a model field")
    p.add_argument("--out", required=True,
                   help="output folder: summary.json, confusion.png, predictions.csv, classifier.safetensors")
    _add_labeled_options(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("bench", help="measure speed, print JSON")
    bench = p.add_subparsers(dest="target", required=True, parser_class=_Parser)
    b = bench.add_parser("data",
                         help="clips per second read from prepared shards through the training loader")
    b.add_argument("data", help="prepared shards: folder, brace pattern or URL")
    b.add_argument("--frames", type=_positive_int, default=32)
    b.add_argument("--size", type=_positive_int, default=64)
    _add_batch_size(b, default=64)
    _add_workers(b, 0, "DataLoader worker processes (0: in this process)")
    b.add_argument("--batches", type=_positive_int, default=50, help="batches to time (after warm-up)")
    b.add_argument("--exact-dct", action="store_true",
                   help="decode JPEG with the exact DCT (data.fast_dct=false)")
    b.set_defaults(func=cmd_bench_data)
    b = bench.add_parser("train",
                         help="seconds per training step, FLOPs counted, fraction of the matmul peak reached")
    _add_preset(b, default="paper")
    _add_batch_size(b, help="default: the preset's train.batch_size")
    b.add_argument("--steps", type=_positive_int, default=5, help="timed steps (median), after warm-up")
    b.add_argument("--warmup", type=_non_negative_int, default=1,
                   help="untimed steps after the FLOP-counting one (default 1)")
    _add_device(b, default=None, help=CONFIG_DEVICE_HELP)
    b.add_argument("--peak-size", type=_positive_int, default=4096,
                   help="N of the N x N fp32 matmul timed for the peak")
    b.add_argument("--upsample", choices=["auto", "gemm", "stock"], default="auto",
                   help="kernel of G's transposed 3-D convolutions "
                        "(default auto; stock: PyTorch's own, for comparison)")
    _add_quiet(b)
    _add_set(b)
    b.set_defaults(func=cmd_bench_train)
    b = bench.add_parser("precision",
                         help="relative error of TF32 and bf16 against fp32 in one forward and backward pass "
                              "of G and D")
    _add_preset(b, default="paper")
    _add_batch_size(b, help="default: the preset's train.batch_size")
    _add_device(b, default=None, help=CONFIG_DEVICE_HELP)
    _add_set(b)
    b.set_defaults(func=cmd_bench_precision)

    p = sub.add_parser("study",
                       help="the paper's realism study: 'which video is more realistic?' as a local web app")
    study = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    s = study.add_parser("create",
                         help="draw clips from two sources and write a study (clips, pairs, catch trials)")
    s.add_argument("--a", required=True,
                   help="side A: real data (as for train --data) or a run directory to sample")
    s.add_argument("--b", required=True, help="side B: likewise")
    s.add_argument("--out", required=True, help="the study directory to write")
    s.add_argument("--pairs", type=_positive_int, default=20, help="A-against-B pairs (default 20)")
    s.add_argument("--catch", type=_int,
                   help="catch trials: real against broken (default: one per 10 pairs, at least 1)")
    s.add_argument("--real",
                   help="real data for the catch trials (default: the data side, else run A's training data)")
    _add_seed(s)
    s.add_argument("--frames", type=_positive_int, help="frames per clip (default: the runs', else 32)")
    s.add_argument("--size", type=_positive_int, help="clip size (default: the runs', else 64)")
    _add_upscale(s, default=None, help=UPSCALE_HELP + " (default: even, to ~256 px)")
    _add_fps(s)
    s.add_argument("--label-a",
                   help="name of side A in the report (default: the run's folder or the data source)")
    s.add_argument("--label-b", help="name of side B in the report")
    _add_device(s, help="for sampling runs: auto (default), cpu, cuda or cuda:N")
    _add_quiet(s)
    s.set_defaults(func=cmd_study_create)
    s = study.add_parser("serve", help="serve the study page; answers go to STUDY/answers.sqlite")
    s.add_argument("study", help="a study directory (from study create)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=_port, default=8000, help="default 8000 (0: any free port)")
    s.add_argument("--verbose", action="store_true", help="log every request")
    s.set_defaults(func=cmd_study_serve)
    s = study.add_parser("report",
                         help="share preferring A over B (95%% CI), raters, catch failures; CSV and PNG")
    s.add_argument("study", help="a study directory")
    s.add_argument("--exclude-failed-catch", action="store_true",
                   help="leave out raters who preferred a broken clip")
    s.add_argument("--out",
                   help="folder for summary.json, answers.csv, raters.csv, chart.png (default STUDY/report)")
    s.set_defaults(func=cmd_study_report)
    return parser


def is_out_of_memory(error: BaseException) -> bool:
    """An allocation that failed (host or device memory), as opposed to a bug."""
    text = str(error)
    return (isinstance(error, MemoryError) or "out of memory" in text.lower()
            or "can't allocate memory" in text)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    # FileNotFoundError: a missing input; its message names the path (data.decode words its own)
    except (VideoGANError, FileNotFoundError) as e:
        print(f"videogan: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path that is a file, a folder without permission, ...: the system names it
        if e.filename is None:
            raise
        print(f"videogan: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        if not is_out_of_memory(e):
            raise
        print(f"videogan: error: out of memory ({str(e).splitlines()[0][:200]}); "
              "try a smaller batch or model", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("videogan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
