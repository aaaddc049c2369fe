"""Animate still images with a trained image-to-video model (`videogan animate`).

    from videogan.generation.animate import animate, load_image
    from videogan.generation.loading import load_generator
    loaded = load_generator("runs/cond")                     # a run trained with --model conditional
    image = load_image("photo.jpg", loaded.config.model.size)  # uint8 [3, S, S]
    out = animate(loaded.generator, image[None], samples=1, seed=0)  # GeneratorOutput [K * N, ...] on the CPU

Inputs: any image Pillow reads, any size. It is made upright (EXIF orientation), flattened onto white where it
has transparency, and cut to its centred square (side min(H, W)), which is resized to the model's size by area
averaging (bilinear where it is enlarged): the crop and resize `videogan prepare` applies to video frames
(data.prepare.crop_resize), so stills look like the training clips' first frames.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from .. import media
from ..config import ConfigError
from ..data.decode import DataError
from ..data.prepare import crop_resize
from ..metrics.measures import motion, motion_spread
from ..models import GeneratorOutput, ImageToVideoGenerator
from ..training.losses import first_frame_l1
from .loading import load_generator
from .noise import eval_mode, noise

STRIP_FRAMES = 5  # frames of each future shown in side_by_side.png: 0, T/4, T/2, 3T/4, T-1


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """An image file -> uint8 [3, size, size] (see the module's docstring); DataError naming the file
    otherwise."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)  # also reads the first frame of an animated image
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))
            rgb = np.asarray(im.convert("RGB"))  # [H, W, 3] uint8
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        # Pillow's "cannot identify" is an OSError
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{path}: not an image Pillow can read ({reason})") from None
    square = crop_resize(rgb[None], size)[0]  # [size, size, 3]
    # a copy: Pillow's arrays are read-only
    return torch.from_numpy(np.array(square)).permute(2, 0, 1).contiguous()


def check_image_to_video(generator: torch.nn.Module, source: str | os.PathLike) -> ImageToVideoGenerator:
    if not isinstance(generator, ImageToVideoGenerator):
        raise ConfigError(f"{source}: not an image-to-video model ({type(generator).__name__}); "
                          "train one with `videogan train --model conditional`")
    return generator


@torch.no_grad()
def animate(generator: ImageToVideoGenerator, images: torch.Tensor, samples: int = 1,
            seed: int = 0) -> GeneratorOutput:
    """uint8 images [N, 3, S, S] -> `samples` futures each, as CPU tensors ordered [K * N] (future k of image
    i at k * N + i). Future k uses z row k of `noise(samples, z_dim, seed)` for every image, and BatchNorm's
    running statistics, so an image's futures depend on the image and the seed only. The deterministic model
    has one."""
    assert images.ndim == 4 and images.dtype == torch.uint8, \
        f"expected uint8 [N, 3, S, S], got {images.dtype} {list(images.shape)}"
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if samples > 1 and generator.z_dim == 0:
        raise ConfigError("the model is deterministic (one future per image): "
                          "--samples > 1 needs one trained with --stochastic")
    device = next(generator.parameters()).device
    n = len(images)
    x = media.from_uint8(images.to(device))  # [N, 3, S, S] in [-1, 1]
    z = noise(samples, generator.z_dim, seed).repeat_interleave(n, dim=0).to(device)  # [K * N, Z]
    with eval_mode(generator):
        out = generator(x.repeat(samples, 1, 1, 1), z)
    return out.apply(lambda t: t.float().cpu())


def measures(out: GeneratorOutput, images: torch.Tensor, samples: int) -> list[dict[str, float | None]]:
    """Per input image: first_frame_mae (mean |first frame - input|, 0-255 pixel scale),
    motion (mean |frame t - frame 0|, 0-255, over its futures) and motion_spread
    (metrics.measures.motion_spread, 0-255; None for K = 1)."""
    n = len(images)
    x = media.from_uint8(images)
    video = out.video.reshape(samples, n, *out.video.shape[1:])  # [K, N, 3, T, H, W]
    to_pixels = 127.5  # model units ([-1, 1]) -> 0-255 levels
    rows = []
    for i in range(n):
        rows.append({
            "first_frame_mae": to_pixels * first_frame_l1(video[:, i],
                                                          x[i].expand(samples, -1, -1, -1)).item(),
            "motion": to_pixels * motion(video[:, i]).mean().item(),
            "motion_spread": to_pixels * motion_spread(video[:, i : i + 1]).item() if samples > 1 else None,
        })
    return rows


def save_animation(out: GeneratorOutput, image: torch.Tensor, out_dir: Path, fps: int = 8,
                   upscale: int = 1) -> None:
    """One image's K futures (out: [K, ...]) -> OUT_DIR/video.gif, video.mp4 (the futures in a row),
    foreground.gif, mask.gif (white = foreground), background.png, side_by_side.gif (input | futures) and
    side_by_side.png (per future: input, then frames 0, T/4, T/2, 3T/4, T-1)."""
    k, _, t, _, _ = out.video.shape
    row = lambda clips: media.upscale(media.grid(clips, columns=k), upscale)  # noqa: E731
    video = media.to_uint8(out.video)  # [K, 3, T, H, W]
    futures = row(video)
    media.write_gif(out_dir / "video.gif", futures, fps)
    media.write_mp4(out_dir / "video.mp4", futures, fps)
    media.write_gif(out_dir / "foreground.gif", row(media.to_uint8(out.foreground)), fps)
    media.write_gif(out_dir / "mask.gif", row(media.to_uint8(out.mask, 0.0, 1.0)), fps)
    # [1, 3, 1, H, W]: z does not reach b, the K are equal
    background = media.to_uint8(out.background)[:1, :, None]
    media.write_png(out_dir / "background.png", media.upscale(media.grid(background), upscale)[:, 0])
    still = image[None, :, None].expand(1, -1, t, -1, -1)  # the input held for T frames: [1, 3, T, H, W]
    media.write_gif(out_dir / "side_by_side.gif",
                    media.upscale(media.grid(torch.cat([still, video]), columns=k + 1), upscale), fps)
    picks = torch.linspace(0, t - 1, STRIP_FRAMES).round().long()
    inputs = image[None, None].expand(k, 1, -1, -1, -1)  # [K, 1, 3, H, W]
    panels = torch.cat([inputs, video[:, :, picks].transpose(1, 2)], dim=1)  # [K, 1 + F, 3, H, W]
    strip = media.grid(panels.reshape(-1, *image.shape)[:, :, None], columns=1 + STRIP_FRAMES)[:, 0]
    media.write_png(out_dir / "side_by_side.png", media.upscale(strip, upscale))


@dataclass
class AnimateSummary:
    checkpoint: Path
    step: int
    weights: str
    done: list[dict] = field(default_factory=list)  # per animated image: input, out, measures
    errors: list[str] = field(default_factory=list)  # one line per input that could not be read


def _output_names(inputs: list[str]) -> list[str]:
    """A distinct folder name per input: its file stem, with _2, _3, ... where the name is taken (by a
    repeated stem, or by another input's own stem: a.png, b/a.jpg, a_2.png -> a, a_2, a_2_2)."""
    used: set[str] = set()
    names = []
    for path in inputs:
        stem = Path(path).stem or "image"
        name, n = stem, 1
        while name in used:
            n += 1
            name = f"{stem}_{n}"
        used.add(name)
        names.append(name)
    return names


def animate_files(run: str | os.PathLike, inputs: list[str], out_dir: str | os.PathLike, samples: int = 1,
                  seed: int = 0, device: str | torch.device = "cpu", weights: str | None = None, fps: int = 8,
                  upscale: int = 1, progress: bool = True) -> AnimateSummary:
    """`videogan animate`: each input image -> OUT/<its stem>/ (see save_animation) and OUT/<stem>/stats.json.
    An input that is not a readable image is skipped with one line in `errors`; the others are still
    animated."""
    loaded = load_generator(run, device=device, weights=weights)
    generator = check_image_to_video(loaded.generator, run)
    summary = AnimateSummary(loaded.path, loaded.step, loaded.weights)
    for path, name in tqdm(list(zip(inputs, _output_names(inputs), strict=True)), disable=not progress,
                           unit="image"):
        try:
            image = load_image(path, loaded.config.model.size)
        except DataError as e:
            summary.errors.append(str(e))
            continue
        out = animate(generator, image[None], samples, seed)
        target = Path(out_dir) / name
        save_animation(out, image, target, fps=fps, upscale=upscale)
        record = {"input": str(path), "out": str(target), "samples": samples, "seed": seed,
                  **measures(out, image[None], samples)[0]}
        media.write_json(target / "stats.json", record)
        summary.done.append(record)
    return summary
