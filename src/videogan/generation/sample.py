"""Sampling API: draw clips with a seed from a generator (loaded by loading.py), save them.

    from videogan import load_generator, sample, save_samples
    loaded = load_generator("runs/demo")
    out = sample(loaded.generator, num=16, seed=0)   # GeneratorOutput of CPU tensors
    out.video, out.foreground, out.mask, out.background
    save_samples(out, "samples/")                    # GIF/MP4/PNG grids + one MP4 per clip
"""
from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from .. import media
from ..metrics.measures import mask_statistics
from ..models import GeneratorOutput
from .noise import BatchNormMode, generate_from_noise, noise


def sample(generator: nn.Module, num: int, seed: int,
           batchnorm: BatchNormMode = "running") -> GeneratorOutput:
    """`num` clips from seed `seed`, as CPU tensors. The same seed gives the same clips."""
    if num < 1:
        raise ValueError(f"num must be at least 1, got {num}")
    out = generate_from_noise(generator, noise(num, generator.z_dim, seed), batchnorm)
    return out.apply(lambda t: t.float().cpu())


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
        media.write_gif(out_dir / "masked_foreground.gif",
                        big(media.to_uint8(out.mask * out.foreground)), fps)
        media.write_gif(out_dir / "mask.gif", big(media.to_uint8(out.mask, 0.0, 1.0)), fps)
        background = media.to_uint8(out.background)[:, :, None]  # [N, 3, 1, H, W]
        media.write_png(out_dir / "background.png", big(background)[:, 0])
    for i, clip in enumerate(video):
        media.write_mp4(out_dir / "clips" / f"clip_{i:03d}.mp4", media.upscale(clip, upscale), fps)
    stats = {"num_clips": len(video), **mask_statistics(out)}
    media.write_json(out_dir / "stats.json", stats)
    return stats
