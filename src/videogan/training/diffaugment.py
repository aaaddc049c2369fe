"""Differentiable augmentation of the discriminator's inputs, for training on little data (not in the paper).

DiffAugment (Zhao, Liu, Lin, Zhu, Han: "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS
2020): every clip D sees, real or generated, in D's step and in G's, is randomly recoloured, shifted and cut
out first. D can then no longer memorise a small training set (on 195 vtest.avi clips it otherwise wins: real
probability ~0.98, fake ~0.01), and since the same random transformations are applied to generated clips, with
gradients through them, G is not taught to draw the augmentations. For video each transformation is drawn per
clip and applied identically to all of its frames, so augmentation adds no motion: D still judges how things
move.

    augment = ClipAugment.parse("color,translation,cutout")
    d_input = augment(clips, generator)   # [B, C, T, H, W] in [-1, 1] -> same shape; differentiable in clips

The random draws come from the given torch.Generator, which the training loop seeds from (seed, rank, step),
so a resumed run augments exactly as an uninterrupted one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import augment_transforms

TRANSLATION_RATIO = 0.125  # the largest shift, as a fraction of the frame side (DiffAugment's default)
CUTOUT_RATIO = 0.5  # the cut-out square's side, as a fraction of the frame side (DiffAugment's default)


def _uniform(n: int, low: float, high: float, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """n draws from U(low, high) shaped [n, 1, 1, 1, 1], on `like`'s device and dtype."""
    u = torch.rand(n, generator=generator) * (high - low) + low
    return u.to(device=like.device, dtype=like.dtype).view(n, 1, 1, 1, 1)


def color(clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per clip: brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5) (DiffAugment's ranges
    for [-1, 1] images). [B, C, T, H, W] -> same."""
    b = clips.shape[0]
    clips = clips + _uniform(b, -0.5, 0.5, generator, clips)
    grey = clips.mean(dim=1, keepdim=True)
    clips = (clips - grey) * _uniform(b, 0.0, 2.0, generator, clips) + grey
    mean = clips.mean(dim=(1, 2, 3, 4), keepdim=True)
    return (clips - mean) * _uniform(b, 0.5, 1.5, generator, clips) + mean


def translation(clips: torch.Tensor, generator: torch.Generator,
                ratio: float = TRANSLATION_RATIO) -> torch.Tensor:
    """Per clip: shift every frame by the same whole number of pixels, up to `ratio` of the side in each
    direction, filling with zeros (mid-grey). [B, C, T, H, W] -> same."""
    b, _, _, h, w = clips.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (b, 1), generator=generator).to(clips.device)
    dx = torch.randint(-sw, sw + 1, (b, 1), generator=generator).to(clips.device)
    # Output pixel (y, x) reads input pixel (y - dy, x - dx) of the zero-padded clip.
    rows = torch.arange(h, device=clips.device)[None] - dy + sh  # [B, H] into the padded rows
    cols = torch.arange(w, device=clips.device)[None] - dx + sw  # [B, W]
    padded = F.pad(clips, (sw, sw, sh, sh))  # [B, C, T, H + 2 sh, W + 2 sw]
    batch = torch.arange(b, device=clips.device)[:, None, None]
    out = padded.permute(0, 3, 4, 1, 2)[batch, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C, T]
    return out.permute(0, 3, 4, 1, 2)


def cutout(clips: torch.Tensor, generator: torch.Generator, ratio: float = CUTOUT_RATIO) -> torch.Tensor:
    """Per clip: zero (mid-grey) one square of `ratio` of the side, at a random centre, in every frame.
    [B, C, T, H, W] -> same."""
    b, _, _, h, w = clips.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1), generator=generator).to(clips.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1), generator=generator).to(clips.device)
    y = torch.arange(h, device=clips.device)[None] - cy + ch // 2  # [B, H]: 0..ch-1 inside the square
    x = torch.arange(w, device=clips.device)[None] - cx + cw // 2
    inside = ((y >= 0) & (y < ch))[:, :, None] & ((x >= 0) & (x < cw))[:, None, :]  # [B, H, W]
    return clips * (~inside).to(clips.dtype)[:, None, None]


_FUNCTIONS = {"color": color, "translation": translation, "cutout": cutout}


@dataclass(frozen=True)
class ClipAugment:
    """The transformations named in train.augment, applied in DiffAugment's order (color, translation,
    cutout)."""

    transforms: tuple[str, ...]

    @classmethod
    def parse(cls, policy: str) -> ClipAugment | None:
        """"color,translation,cutout" (any subset, any order) -> ClipAugment; "" -> None (no augmentation)."""
        transforms = augment_transforms(policy)  # ConfigError naming an unknown one
        return cls(transforms) if transforms else None

    def __call__(self, clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        assert clips.ndim == 5, f"expected clips [B, C, T, H, W], got {list(clips.shape)}"
        for name in self.transforms:
            clips = _FUNCTIONS[name](clips, generator)
        return clips


def augment_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The CPU generator of one rank's augmentations at one step, a pure function of (seed, rank, step) (like
    the training noise, but a different stream)."""
    return torch.Generator().manual_seed((seed * 998_244_353 + rank * 65_537 + step * 1_000_033 + 7)
                                         % (2**63))
