"""Benchmarks that belong to the package (used by benchmarks/*.py and usable from a notebook)."""
from __future__ import annotations

import datetime
import io
import math
import os
import platform
import statistics
import time
from contextlib import nullcontext
from functools import partial

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .config import (
    AT_LEAST_0,
    AT_LEAST_1,
    FIELD_RANGES,
    Config,
    ConfigError,
    DataConfig,
    check_fields,
    check_number,
    validate,
)
from .data import make_source
from .data.shards import IMAGE_KEYS, decode_image, image_bytes, read_shard, resolve_shards
from .data.streaming import ShardClips
from .media import to_model_range
from .models import Discriminator, build_generator
from .ops.upsample import FastConvTranspose3d
from .training import distributed
from .training.diffaugment import ClipAugment, augment_generator
from .training.losses import discriminator_loss, generator_adversarial_loss
from .training.runtime import adam, check_options, clip_layout, configure_backends, prepare_networks
from .training.step import StepSetup, r1_due, train_step


def cpu_name() -> str:
    """The CPU's model name, for benchmark records."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def data_throughput(source: str, frames: int, size: int, batch_size: int = 64, workers: int = 2,
                    num_batches: int = 40, warmup: int = 4, shuffle_buffer: int = 2000,
                    fast_dct: bool = True) -> dict:
    """Clips per second that `ShardClips` (the real training path: tar reading, shuffle buffer, decoding,
    batching, DataLoader workers) delivers from prepared shards. The first `warmup` batches (worker start-up,
    filling the shuffle buffer) are timed separately as `startup_seconds`."""
    counts = {"frames": frames, "size": size, "batch_size": batch_size, "num_batches": num_batches}
    for name, value in counts.items():
        check_number(name, value, AT_LEAST_1, integer=True)
    check_number("warmup", warmup, AT_LEAST_0, integer=True)
    cfg = DataConfig(workers=workers, shuffle_buffer=shuffle_buffer, fast_dct=fast_dct)
    check_fields(cfg, "data", FIELD_RANGES)
    src = ShardClips(source, frames, size, seed=0, cfg=cfg)
    it = src.batches(0, batch_size)
    t0 = time.perf_counter()
    for _ in range(max(1, warmup)):
        next(it)
    t1 = time.perf_counter()
    for _ in range(num_batches):
        next(it)
    t2 = time.perf_counter()
    it.close()
    cps = num_batches * batch_size / (t2 - t1)
    first = next(read_shard(src.urls[0]))
    return {
        "clips_per_second": round(cps, 1),
        "clips_per_second_per_worker": round(cps / max(1, workers), 1),
        "workers": workers,
        "fast_dct": fast_dct,
        "batch_size": batch_size,
        "frames": frames,
        "size": size,
        "format": next(k for k in IMAGE_KEYS if k in first),
        "shards": len(src.urls),
        "num_batches": num_batches,
        "startup_seconds": round(t1 - t0, 3),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }


def decode_cost(source: str, n: int = 200, repeats: int = 3) -> dict:
    """Clips per second (one core) decoding the first `n` stacked images of `source`: with `decode_image`
    (what ShardClips uses: simplejpeg for JPEG), OpenCV's imdecode and PIL, all libjpeg-turbo / libpng
    underneath. Best of `repeats`."""
    urls = resolve_shards(source)
    blobs = []
    for sample in read_shard(urls[0]):
        blobs.append(image_bytes(sample))
        if len(blobs) >= n:
            break

    def pil(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))

    def opencv(data: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)

    out = {}
    for name, fn in (("decode_image", decode_image), ("cv2_imdecode", opencv), ("pil", pil)):
        best = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            for b in blobs:
                fn(b)
            best = max(best, len(blobs) / (time.perf_counter() - t))
        out[f"{name}_clips_per_second"] = round(best, 1)
    out["mean_bytes_per_clip"] = int(np.mean([len(b) for b in blobs]))
    return out


def matmul_peak_gflops(device: torch.device | str = "cpu", n: int = 4096, repeats: int = 3,
                       dtype: torch.dtype = torch.float32) -> float:
    """The machine's measured matrix-multiply rate (fp32 unless `dtype` says otherwise): the best of `repeats`
    timed torch.mm of two n x n matrices, with torch's current thread count (what the training step gets too).
    On CUDA, fp32 runs with TF32 as configured."""
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up (allocations, BLAS / cuBLAS start-up)
        _synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def _significant(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_upsample_impl(module: torch.nn.Module, impl: str) -> list[tuple[str, torch.nn.Module]]:
    """Set the kernel choice (auto, gemm, stock: see models/upsample.py) of every FastConvTranspose3d in
    `module`; returns those layers as (name, layer)."""
    layers = [(name, m) for name, m in module.named_modules() if isinstance(m, FastConvTranspose3d)]
    for _, m in layers:
        m.impl = impl
    return layers


class _TotalsOnly:
    """Stands in for FlopCounterMode's per-module tracker (torch 2.13), whose backward hooks make
    autograd.grad fail ("a leaf node was passed to _will_engine_execute_node"), as R1's double backward calls
    it. The total, all that is read here, needs no module breakdown: every FLOP goes to "Global"."""
    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _seeded_networks_and_batch(cfg: Config, ctx: distributed.DistributedContext
                               ) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    """G and D as seeded by train.seed, on ctx's device, and this rank's share of one real batch from
    data.source in the model's range and layout ([B / world size, C, T, H, W]): what the benches run on."""
    tc = cfg.train
    torch.manual_seed(tc.seed)
    generator = build_generator(cfg.model).to(ctx.device)
    discriminator = Discriminator(cfg.model).to(ctx.device)
    local_batch = tc.batch_size // ctx.world_size
    stream = make_source(cfg).batches(0, local_batch, ctx.rank, ctx.world_size, ctx.device)
    real = to_model_range(next(stream), ctx.device, clip_layout(tc))
    stream.close()
    return generator, discriminator, real


def train_step_speed(cfg: Config, steps: int = 5, warmup: int = 1, peak_size: int = 4096,
                     upsample: str = "auto", progress: bool = True) -> dict:
    """Seconds per training step of `cfg` (its model, train.batch_size, device, threads and speed options),
    and how much of the machine's matrix-multiply peak it reaches.

    Builds the networks, optimisers and options as `train` does and runs `training.step.train_step` on one
    fixed real batch drawn from `data.source` (data loading is not timed: `bench data` measures it). FLOPs are
    counted by torch.utils.flop_counter.FlopCounterMode over one real step (G forward, D on real and fake,
    both backward passes; convolutions and matrix multiplies, which are nearly all of the work) and that step
    also warms up; then `warmup` more untimed steps and `steps` timed ones (median). With train.r1_weight > 0
    each of those is one lazy-R1 interval (train.r1_every steps, the first with the penalty), reported per
    step. `upsample` sets the kernel of G's FastConvTranspose3d layers (auto, gemm, stock: see
    models/upsample.py), for before/after comparisons."""
    from torch.utils.flop_counter import FlopCounterMode

    validate(cfg)
    check_number("steps", steps, AT_LEAST_1, integer=True)
    check_number("warmup", warmup, AT_LEAST_0, integer=True)
    check_number("peak_size", peak_size, AT_LEAST_1, integer=True)
    if upsample not in ("auto", "gemm", "stock"):
        raise ConfigError(f"upsample={upsample!r}: must be auto, gemm or stock")
    tc = cfg.train
    ctx = distributed.setup(tc.device)
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    check_options(tc, ctx)
    configure_backends(tc, ctx.device)
    generator, discriminator, real = _seeded_networks_and_batch(cfg, ctx)
    local_batch = real.shape[0]
    set_upsample_impl(generator, upsample)
    G, D = prepare_networks(generator, discriminator, tc, ctx)  # before the optimisers, as in train()
    opt_g, opt_d = adam(generator.parameters(), tc.lr_g, tc), adam(discriminator.parameters(), tc.lr_d, tc)
    setup = StepSetup(G, D, opt_g, opt_d, tc, ctx, conditional=cfg.model.kind == "conditional")
    augment = ClipAugment.parse(tc.augment)

    # With the lazy R1 penalty on, one in train.r1_every steps is dearer: each measurement (the FLOP count,
    # every timing) then covers one whole R1 interval and is divided by its length, so the figures are per
    # average step.
    interval = tc.r1_every if tc.r1_weight > 0 else 1

    def steps_from(first: int) -> None:
        for i in range(first, first + interval):
            z = torch.randn(local_batch, generator.z_dim,
                            generator=torch.Generator().manual_seed(tc.seed + i)).to(ctx.device)
            seen = partial(augment, generator=augment_generator(tc.seed, ctx.rank, i)) if augment else None
            train_step(setup, real, z, augment=seen, r1=r1_due(tc, i))
        _synchronize(ctx.device)

    counter = FlopCounterMode(display=False)
    if interval > 1:
        counter.mod_tracker = _TotalsOnly()
    with counter:
        steps_from(0)
    flops = counter.get_total_flops() // interval
    for i in range(warmup):
        steps_from((1 + i) * interval)
    times = []
    for i in tqdm(range(steps), desc="bench train", unit="step", disable=not progress, leave=False):
        start = time.perf_counter()
        steps_from((1 + warmup + i) * interval)
        times.append((time.perf_counter() - start) / interval)
    ctx.close()
    seconds = statistics.median(times)
    achieved = flops / seconds / 1e9
    peak = matmul_peak_gflops(ctx.device, n=peak_size)
    # bf16 autocast runs the convolutions in bf16: its utilisation is measured against the bf16 matmul rate
    # too (an H100/H200 does several times its TF32 rate in bf16), beside the fp32 peak the issue asks for.
    bf16 = {}
    if tc.precision == "bf16":
        bf16_peak = matmul_peak_gflops(ctx.device, n=peak_size, dtype=torch.bfloat16)
        bf16 = {"bf16_matmul_peak_gflops": _significant(bf16_peak),
                "fraction_of_bf16_peak": _significant(achieved / bf16_peak)}
    return {
        "step_seconds": _significant(seconds),
        "step_seconds_min": _significant(min(times)),
        "clips_per_second": _significant(tc.batch_size / seconds),
        "flops_per_step": flops,
        "achieved_gflops": _significant(achieved),
        "matmul_peak_gflops": _significant(peak),
        "fraction_of_peak": _significant(achieved / peak),
        **bf16,
        "hours_per_100k_steps": _significant(seconds * 100_000 / 3600),
        "batch_size": tc.batch_size,
        "upsample": upsample,
        "precision": tc.precision, "compile": tc.compile, "tf32": tc.tf32, "channels_last": tc.channels_last,
        "r1_weight": tc.r1_weight, "r1_every": interval,
        "steps_timed": steps,
        "warmup": warmup,
        "device": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else str(ctx.device),
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "date": str(datetime.date.today()),
    }


def relative_error(x: torch.Tensor, reference: torch.Tensor) -> float | None:
    """||x - reference|| / ||reference||, in float64; None where it is not finite (JSON has no nan)."""
    x, reference = x.double(), reference.double()
    error = (torch.linalg.vector_norm(x - reference) / torch.linalg.vector_norm(reference)).item()
    return _significant(error) if math.isfinite(error) else None


def _flat(grads: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
    """One fp32 vector of the gradients that exist (a parameter outside the graph has None)."""
    return torch.cat([g.flatten().float() for g in grads if g is not None])


def precision_check(cfg: Config) -> dict:
    """How far TF32 and bf16 autocast move one forward and backward pass of the networks from plain fp32.

    From the same seeded weights, real batch (`data.source`) and noise, each mode computes G's clips, D's
    logits on the real and the generated clips, the gradient of D's loss for D's parameters and of G's
    adversarial loss for G's, as a training step does; each is reported as its relative error against fp32's
    (see relative_error). TF32 is a CUDA setting: elsewhere it runs as fp32 and its errors are 0. The networks
    are in training mode (BatchNorm on each batch's own statistics, D's real and fake passes separate),
    without DiffAugment or R1."""
    validate(cfg)
    if cfg.model.kind == "conditional":
        raise ConfigError("the precision check runs the unconditional models (noise to clips) only")
    tc = cfg.train
    ctx = distributed.setup(tc.device)
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    G, D, real = _seeded_networks_and_batch(cfg, ctx)  # fresh modules: in training mode
    z = torch.randn(real.shape[0], G.z_dim, generator=torch.Generator().manual_seed(tc.seed)).to(ctx.device)
    cuda = ctx.device.type == "cuda"
    tf32_before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)

    def one_pass(tf32: bool, bf16: bool) -> dict[str, torch.Tensor]:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16) if bf16 else nullcontext():
            video = G(z).video
            # as in training: D's loss on the generated clips held fixed, G's through a second pass of D
            real_logits, fake_logits = D(real), D(video.detach())
            d_loss = discriminator_loss(real_logits, fake_logits)
            g_loss = generator_adversarial_loss(D(video))
        d_grads = torch.autograd.grad(d_loss, list(D.parameters()), allow_unused=True)
        g_grads = torch.autograd.grad(g_loss, list(G.parameters()), allow_unused=True)
        return {"video": video.detach().float(), "real_logits": real_logits.detach().float(),
                "fake_logits": fake_logits.detach().float(),
                "d_grad": _flat(d_grads), "g_grad": _flat(g_grads)}

    try:
        reference = one_pass(tf32=False, bf16=False)
        errors = {mode: {name: relative_error(value, reference[name])
                         for name, value in one_pass(tf32=True, bf16=mode == "bf16").items()}
                  for mode in ("tf32", "bf16")}
    finally:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32_before
        ctx.close()
    return {
        "relative_error_vs_fp32": errors,
        "batch_size": tc.batch_size,
        "device": torch.cuda.get_device_name(ctx.device) if cuda else str(ctx.device),
        "torch": torch.__version__,
        "date": str(datetime.date.today()),
    }
