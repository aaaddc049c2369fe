"""Sampling API: load a generator from a run or checkpoint, draw clips with a seed, save them.

    from videogan import load_generator, sample, save_samples
    loaded = load_generator("runs/demo")
    out = sample(loaded.generator, num=16, seed=0)   # GeneratorOutput of CPU tensors
    out.video, out.foreground, out.mask, out.background
    save_samples(out, "samples/")                    # GIF/MP4/PNG grids + one MP4 per clip
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import torch
from torch import nn

from .. import media
from ..training.checkpoint import CheckpointError, load_checkpoint, load_state_dict
from ..config import Config, ConfigError
from ..models import GeneratorOutput, ImageToVideoGenerator, build_generator

BatchNormMode = Literal["running", "batch"]
Weights = Literal["ema", "live"]


@dataclass
class LoadedGenerator:
    generator: nn.Module  # in eval mode, on the requested device
    config: Config
    step: int
    path: Path  # the checkpoint folder it came from
    weights: Weights  # "ema": the moving average of G's weights; "live": G as last trained


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", weights: Weights | None = None) -> LoadedGenerator:
    """A run directory (its latest checkpoint) or a checkpoint folder -> generator with its config.

    weights: "ema" (the default where the checkpoint has them) or "live".
    "pretrained:NAME" loads a model shipped with the package (videogan.generation.pretrained).
    """
    from .pretrained import strip_prefix

    if (name := strip_prefix(str(path))) is not None:
        from .pretrained import load

        return load(name, device=device, weights=weights)
    ckpt = load_checkpoint(path, generator_only=True)
    weights = weights or ("ema" if ckpt.generator_ema is not None else "live")
    if weights == "ema" and ckpt.generator_ema is None:
        raise CheckpointError(f"{ckpt.path}: has no EMA weights (trained with train.ema_decay 0); use live weights")
    generator = build_generator(ckpt.config.model)
    tensors, name = (ckpt.generator_ema, "generator_ema") if weights == "ema" else (ckpt.generator, "generator")
    load_state_dict(generator, tensors, ckpt.path / f"{name}.safetensors")
    return LoadedGenerator(generator.to(device).eval(), ckpt.config, ckpt.step, ckpt.path, weights)


@contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Run BatchNorm layers on the batch's own statistics, leaving running statistics untouched."""
    was_training = module.training
    buffers = {name: b.clone() for name, b in module.named_buffers()}
    module.train()
    try:
        yield
    finally:
        with torch.no_grad():
            for name, b in module.named_buffers():
                b.copy_(buffers[name])
        module.train(was_training)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run the module in eval mode (BatchNorm from running statistics), restoring its training flag after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def noise(num: int, z_dim: int, seed: int) -> torch.Tensor:
    """z ~ N(0, 1), [num, z_dim], reproducible from the seed alone (drawn on the CPU, whatever the device)."""
    return torch.randn(num, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate_from_noise(generator: nn.Module, z: torch.Tensor, batchnorm: BatchNormMode = "running") -> GeneratorOutput:
    """G(z) on the generator's device; BatchNorm from running statistics or from this batch."""
    if isinstance(generator, ImageToVideoGenerator):
        raise ConfigError("this is an image-to-video (conditional) model: it animates images, see `videogan animate`")
    device = next(generator.parameters()).device
    if batchnorm == "batch":
        with batch_statistics(generator):
            return generator(z.to(device))
    with eval_mode(generator):
        return generator(z.to(device))


def sample(generator: nn.Module, num: int, seed: int, batchnorm: BatchNormMode = "running") -> GeneratorOutput:
    """`num` clips from seed `seed`, as CPU tensors. The same seed gives the same clips."""
    if num < 1:
        raise ValueError(f"num must be at least 1, got {num}")
    out = generate_from_noise(generator, noise(num, generator.z_dim, seed), batchnorm)
    return out.apply(lambda t: t.float().cpu())


def mask_statistics(out: GeneratorOutput) -> dict[str, float | None]:
    """How well the model separated foreground from background.

    mask_mean: mean of m (0 = all background, 1 = all foreground).
    motion_in_mask: share of frame-to-frame change |x[t+1] - x[t]| that falls where m > 0.5
    (in either frame); near 1 means the motion is explained by the foreground stream.
    """
    if out.mask is None:
        return {"mask_mean": None, "motion_in_mask": None}
    change = (out.video[:, :, 1:] - out.video[:, :, :-1]).abs().sum(1)  # [B, T-1, H, W]
    inside = ((out.mask[:, 0, 1:] > 0.5) | (out.mask[:, 0, :-1] > 0.5)).float()
    total = change.sum()
    share = (change * inside).sum() / total if total > 0 else torch.tensor(float("nan"))
    return {"mask_mean": out.mask.mean().item(), "motion_in_mask": share.item()}


def save_samples(out: GeneratorOutput, out_dir: str | os.PathLike, fps: int = 8, upscale: int = 1) -> dict:
    """Write grids (composite.gif/.mp4, foreground.gif, masked_foreground.gif, mask.gif, background.png)
    and clips/clip_XXX.mp4; returns the mask statistics (also written to stats.json)."""
    out_dir = Path(out_dir)
    big = lambda clips: media.upscale(media.grid(clips), upscale)  # noqa: E731
    video = media.to_uint8(out.video)  # [N, 3, T, H, W]
    media.write_gif(out_dir / "composite.gif", big(video), fps)
    media.write_mp4(out_dir / "composite.mp4", big(video), fps)
    if out.mask is not None:
        media.write_gif(out_dir / "foreground.gif", big(media.to_uint8(out.foreground)), fps)
        media.write_gif(out_dir / "masked_foreground.gif", big(media.to_uint8(out.mask * out.foreground)), fps)
        media.write_gif(out_dir / "mask.gif", big(media.to_uint8(out.mask, 0.0, 1.0)), fps)
        background = media.to_uint8(out.background)[:, :, None]  # [N, 3, 1, H, W]
        media.write_png(out_dir / "background.png", big(background)[:, 0])
    for i, clip in enumerate(video):
        media.write_mp4(out_dir / "clips" / f"clip_{i:03d}.mp4", media.upscale(clip, upscale), fps)
    stats = {"num_clips": len(video), **mask_statistics(out)}
    media.write_json(out_dir / "stats.json", stats)
    return stats


def save_progress_grid(out: GeneratorOutput, prefix: Path, fps: int = 8) -> None:
    """Training-time snapshot: PREFIX.gif (composite grid) and, for two-stream, PREFIX_mask.gif."""
    media.write_gif(prefix.with_suffix(".gif"), media.grid(media.to_uint8(out.video)), fps)
    if out.mask is not None:
        media.write_gif(prefix.parent / f"{prefix.name}_mask.gif", media.grid(media.to_uint8(out.mask, 0.0, 1.0)), fps)
