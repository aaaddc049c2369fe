"""Seconds per training step of the presets, and per-layer times of the generator's transposed convolutions.

    python benchmarks/step_time.py                        # paper at batch 8 and tiny at batch 32
    python benchmarks/step_time.py --preset tiny --batch-size 16 --steps 20
    python benchmarks/step_time.py --layers               # G's upsampling layers: stock kernel vs
                                                            FastConvTranspose3d
    python benchmarks/step_time.py --upsample stock       # the step with PyTorch's own
                                                            transposed convolutions
    python benchmarks/step_time.py --set train.num_threads=1 ...

The step is `videogan bench train` (videogan.bench.train_step_speed: the real train_step after warm-up,
FLOPs counted, fraction of the measured matmul peak); one JSON line per preset. `--layers` times each
FastConvTranspose3d of the preset's generator at its real input shape, forward and forward + backward (input,
weight and bias gradients), with PyTorch's kernel ("stock") and with the layer's automatic choice ("auto").
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from videogan.bench import set_upsample_impl, train_step_speed
from videogan.cli import build_config
from videogan.config import Config
from videogan.models import build_generator
from videogan.ops.upsample import use_gemm

# --cpu-time: time.thread_time, the CPU time of this thread (one thread, busy machine)
CLOCK = time.perf_counter


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN builds its kernels on the first call
    times = []
    for _ in range(repeats):
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return statistics.median(times)


def _forward_backward_seconds(layer: torch.nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    grad = torch.randn_like(layer(x))
    forward = _median_seconds(lambda: layer(x), repeats)
    both = _median_seconds(lambda: torch.autograd.grad(layer(x), (x, layer.weight, layer.bias), grad),
                           repeats)
    return forward, both - forward


def layer_times(cfg: Config, repeats: int) -> list[dict]:
    """Each FastConvTranspose3d of the generator, at the input shape and memory layout it gets inside the
    generator with each kernel choice (with "auto", upstream layers hand on channels-last activations):
    ms forward / backward."""
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    torch.manual_seed(0)
    G = build_generator(cfg.model)
    z = torch.randn(cfg.train.batch_size, cfg.model.z_dim)
    inputs: dict[tuple[str, str], torch.Tensor] = {}  # (layer, impl) -> an input like the one it sees
    for impl in ("stock", "auto"):
        hooks = []
        for name, m in set_upsample_impl(G, impl):
            # The video and mask heads run as one convolution (generator.video_and_mask), not through their
            # own modules: their input is the output of the 3-D stream.
            heads = name.endswith("_head.0")

            # returns None: returning something would replace out
            def hook(module, args, out, key=(name, impl), heads=heads) -> None:
                # same shape and strides
                inputs[key] = torch.randn_like(out if heads else args[0]).requires_grad_()
            hooks.append((G.foreground_stream if heads else m).register_forward_hook(hook))
        with torch.no_grad():
            G(z)
        for h in hooks:
            h.remove()
    rows = []
    for name, layer in set_upsample_impl(G, "stock"):
        x = inputs[(name, "auto")]
        # per input voxel: Cin * Cout * kT * kH * kW multiply-adds
        flops = 2 * x[:, 0].numel() * layer.weight.numel()
        row = {"layer": name, "input": list(x.shape[1:]), "out_channels": layer.out_channels,
               "kernel": list(layer.kernel_size), "stride": list(layer.stride),
               "gemm": use_gemm(x, layer.out_channels),
               "channels_last_input": (x.is_contiguous(memory_format=torch.channels_last_3d)
                                       and x.shape[1] > 1),
               "gflop_forward": round(flops / 1e9, 3)}
        for impl in ("stock", "auto"):
            layer.impl = impl
            forward, backward = _forward_backward_seconds(layer, inputs[(name, impl)], repeats)
            row[f"{impl}_forward_ms"], row[f"{impl}_backward_ms"] = (round(forward * 1e3, 1),
                                                                      round(backward * 1e3, 1))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append",
                        help="preset to time (repeatable); default: paper and tiny")
    parser.add_argument("--batch-size", type=int, help="default: 8 for paper, 32 for tiny")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--upsample", choices=["auto", "gemm", "stock"], default="auto",
                        help="G's transposed-conv kernel")
    parser.add_argument("--layers", action="store_true",
                        help="per-layer times of G's transposed convolutions instead")
    parser.add_argument("--repeats", type=int, default=5,
                        help="with --layers: timed calls per measurement (median)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="with --layers: time this thread's CPU time, not wall time (sets 1 thread; "
                             "for a machine shared with other jobs, where wall time is unreliable)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.cpu_time:
        global CLOCK
        CLOCK = time.thread_time
        args.set.append("train.num_threads=1")
    defaults = {"paper": 8, "tiny": 32}
    for name in args.preset or ["paper", "tiny"]:
        cfg = build_config(name, args.set, **{"train.batch_size": args.batch_size or defaults.get(name, 32),
                                              "train.device": args.device})
        if args.layers:
            for row in layer_times(cfg, args.repeats):
                print(json.dumps({"preset": name, "batch_size": cfg.train.batch_size,
                                  "threads": torch.get_num_threads(), **row}), flush=True)
        else:
            result = train_step_speed(cfg, steps=args.steps, warmup=args.warmup, upsample=args.upsample)
            print(json.dumps({"preset": name, "overrides": args.set, **result}), flush=True)


if __name__ == "__main__":
    main()
