"""Built-in synthetic scenes: static textured backgrounds with objects moving over them.

An infinite, seeded, deterministic stream: batch `index` of a stream with seed `seed`
is always the same clips, whatever was drawn before, so training resumes exactly and
ranks of a distributed job can draw disjoint batches (index = step * world + rank).
Everything is vectorised over batch, objects, time and pixels: a batch of 32 tiny clips
takes a few milliseconds. Ground-truth foreground masks come with every clip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import ConfigError, SyntheticConfig
from .indexed import indexed_batches


@dataclass
class SyntheticBatch:
    video: torch.Tensor  # [B, 3, T, H, W] uint8
    mask: torch.Tensor  # [B, 1, T, H, W] uint8, 255 where a moving object covers the pixel


def _bounce(start: torch.Tensor, velocity: torch.Tensor, low: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Position at times t of a point moving at constant velocity, reflecting off [low, 1 - low]."""
    span = (1 - 2 * low).clamp_min(1e-3)
    u = torch.remainder(start - low + velocity * t, 2 * span)
    return low + torch.where(u < span, u, 2 * span - u)


def _coverage(dx: torch.Tensor, dy: torch.Tensor, radius: torch.Tensor, square: torch.Tensor, size: int):
    """Anti-aliased coverage in [0, 1] of a disc or square of `radius` at offsets (dx, dy) (frame units)."""
    dist = torch.where(square, torch.maximum(dx.abs(), dy.abs()), torch.sqrt(dx * dx + dy * dy))
    return ((radius - dist) * size + 0.5).clamp(0, 1)  # signed distance in pixels -> 1-pixel soft edge


class SyntheticScenes:
    """`batch(index, batch_size)` -> SyntheticBatch of clips [B, 3, frames, size, size] (uint8)."""

    def __init__(self, frames: int, size: int, seed: int = 0, cfg: SyntheticConfig | None = None):
        self.frames, self.size, self.seed = frames, size, seed
        self.cfg = cfg or SyntheticConfig()
        if not 1 <= self.cfg.max_objects:
            raise ConfigError("synthetic.max_objects must be at least 1")
        if not 0 < self.cfg.min_radius <= self.cfg.max_radius < 0.5:
            raise ConfigError("synthetic radii must satisfy 0 < min_radius <= max_radius < 0.5")

    def _generator(self, index: int) -> torch.Generator:
        # Distinct, reproducible stream per (seed, index); the large odd multiplier decorrelates neighbours.
        return torch.Generator().manual_seed((self.seed * 1_000_003 + index * 7_919 + 17) % (2**63))

    def clips(self, index: int, batch_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Batch `index` without its masks: uint8 [B, 3, T, S, S]."""
        return self.batch(index, batch_size, device).video

    batches = indexed_batches

    def batch(self, index: int, batch_size: int, device: torch.device | str = "cpu") -> SyntheticBatch:
        """Random scene parameters come from a CPU generator (so every device draws the same scenes);
        rendering, the bulk of the work, runs on `device` (a GPU renders a paper-size batch in
        milliseconds)."""
        gen = self._generator(index)
        B, T, S, K, cfg = batch_size, self.frames, self.size, self.cfg.max_objects, self.cfg
        rand = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
        # --- draw every random parameter first, on the CPU ---------------------------------------
        background = draw_background(gen, B, S, cfg.background_shapes)
        # [B, K]: 1..K objects
        active = torch.arange(K)[None, :] < torch.randint(1, K + 1, (B, 1), generator=gen)
        radius = cfg.min_radius + (cfg.max_radius - cfg.min_radius) * rand(B, K)
        start = radius[..., None] + (1 - 2 * radius[..., None]) * rand(B, K, 2)
        angle = 2 * math.pi * rand(B, K)
        speed = cfg.max_speed * (0.4 + 0.6 * rand(B, K))
        velocity = torch.stack([angle.cos(), angle.sin()], -1) * speed[..., None]  # [B, K, 2]
        square = rand(B, K) < 0.5
        colour = saturate(rand(B, K, 3))
        # --- render on the device -------------------------------------------------------------------
        t = torch.arange(T, dtype=torch.float32, device=device)[None, None, :]  # [1, 1, T]
        radius, start, velocity = radius.to(device), start.to(device), velocity.to(device)
        cx = _bounce(start[..., 0:1], velocity[..., 0:1], radius[..., None], t)  # [B, K, T]
        cy = _bounce(start[..., 1:2], velocity[..., 1:2], radius[..., None], t)
        video, union = render_objects(render_background(background, S, device), cx, cy, radius, square,
                                      colour, active)
        return SyntheticBatch(video=unit_to_uint8(video), mask=unit_to_uint8(union))


# ---------------------------------------------------------------------------- drawing, shared with actions.py

@dataclass
class BackgroundParams:
    colour_field: torch.Tensor  # [B, 3, 3, 3]: a smooth colour field on a 3x3 lattice, upsampled
    texture: torch.Tensor  # [B, 1, S/4, S/4]: finer, low-contrast texture
    # (centre [B, 2, 1, 1], radius, square?, shade [B, 3, 1, 1]) of static shapes
    shapes: list[tuple[torch.Tensor, ...]]


def draw_background(gen: torch.Generator, batch_size: int, size: int, num_shapes: int) -> BackgroundParams:
    """The random parameters of `batch_size` static backgrounds, drawn from `gen` on the CPU."""
    B, S = batch_size, size
    rand = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    colour_field = rand(B, 3, 3, 3)
    texture = rand(B, 1, max(4, S // 4), max(4, S // 4))
    shapes = [(rand(B, 2, 1, 1), 0.08 + 0.25 * rand(B, 1, 1), rand(B, 1, 1) < 0.5,
               0.15 + 0.7 * rand(B, 3, 1, 1))
              for _ in range(num_shapes)]
    return BackgroundParams(colour_field, texture, shapes)


def saturate(colour: torch.Tensor) -> torch.Tensor:
    """Uniform random colours [..., 3] -> saturated ones, so objects stand out from the muted backgrounds."""
    return ((colour - colour.mean(-1, keepdim=True)) * 1.6 + 0.5).clamp(0.02, 0.98)


def _pixel_grid(size: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ys, xs) [S, S]: pixel centres in frame units (0 = top/left edge, 1 = bottom/right edge)."""
    axis = (torch.arange(size, device=device) + 0.5) / size
    return torch.meshgrid(axis, axis, indexing="ij")


def render_background(p: BackgroundParams, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Backgrounds float [B, 3, S, S] in [0, 1]: colour field + texture + muted static shapes."""
    S = size
    to = lambda x: x.to(device)  # noqa: E731
    up = lambda x: F.interpolate(to(x), size=(S, S), mode="bicubic", align_corners=True)  # noqa: E731
    background = 0.15 + 0.7 * up(p.colour_field) + 0.12 * (up(p.texture) - 0.5)  # [B, 3, S, S]
    ys, xs = _pixel_grid(S, device)
    for centre, r, sq, shade in map(lambda q: map(to, q), p.shapes):
        cover = _coverage(xs - centre[:, 0], ys - centre[:, 1], r, sq, S)[:, None]
        background = background * (1 - 0.8 * cover) + shade * 0.8 * cover  # muted: not fully opaque
    return background.clamp(0, 1)


def render_objects(background: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, radius: torch.Tensor,
                   square: torch.Tensor, colour: torch.Tensor,
                   active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Paint K objects over static backgrounds [B, 3, S, S] -> (video float [B, 3, T, S, S], union mask [B, 1,
    T, S, S]).

    cx, cy: centres [B, K, T] (frame units); radius [B, K] or, for objects that change size, [B, K, T];
    square, active: bool [B, K]; colour [B, K, 3] in [0, 1]."""
    B, _, S, _ = background.shape
    K, T = cx.shape[1], cx.shape[2]
    device = background.device
    to = lambda x: x.to(device)  # noqa: E731
    ys, xs = _pixel_grid(S, device)
    dx = xs - to(cx)[..., None, None]  # [B, K, T, S, S]
    dy = ys - to(cy)[..., None, None]
    radius = to(radius)
    r5 = radius.reshape(*radius.shape, *(1,) * (5 - radius.ndim))  # [B, K, 1, 1, 1] or [B, K, T, 1, 1]
    sq5 = to(square)[..., None, None, None]
    cover = _coverage(dx, dy, r5, sq5, S) * to(active)[..., None, None, None]
    # A soft highlight towards the top-left gives the objects some texture.
    highlight = (1 - ((dx + 0.35 * r5).square() + (dy + 0.35 * r5).square()).sqrt() / (1.5 * r5)).clamp(0, 1)

    colour = to(colour)
    video = background[:, :, None].expand(B, 3, T, S, S)  # [B, 3, T, S, S]
    union = torch.zeros(B, 1, T, S, S, device=device)
    for k in range(K):  # painter's order: later objects pass in front of earlier ones
        a = cover[:, k, None]  # [B, 1, T, S, S]
        shade = (colour[:, k, :, None, None, None] * (0.75 + 0.35 * highlight[:, k, None])).clamp(0, 1)
        video = video * (1 - a) + shade * a
        union = union + a * (1 - union)
    return video, union


def unit_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Values in [0, 1] -> uint8 [0, 255], rounded (the scenes' pixels and masks)."""
    return (x * 255).round().clamp(0, 255).to(torch.uint8)

