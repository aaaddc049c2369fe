"""synthetic-actions: a labeled variant of the built-in synthetic scenes, where the class is the kind of
motion.

One object moves over a static background drawn exactly as the unlabeled scenes draw theirs (synthetic.py's
draw_background / render_background / render_objects). What it does decides the class:

    right, left, up, down    straight across the frame at normal speed (0.25 to 0.4 of the frame per clip)
    right-fast               straight right at about twice that speed (0.55 to 0.7 of the frame per clip)
    circle-cw, circle-ccw    round a circle, clockwise or counter-clockwise on screen, about one turn per clip
    swing-horizontal/-vertical  back and forth along one axis (a sinusoid, about one period per clip)
    pulse                    stays put and grows and shrinks

Everything else is a nuisance drawn at random per clip: background, object shape (disc or square: the kind of
object is deliberately *not* a class, so that no class can be told from a single frame), colour, size, start
position, speed within its class's range, phase. Motion is defined per clip, not per frame, so the classes are
the same at any frame count.

Splits are fixed and deterministic: clip i of a split is drawn from a generator seeded by (split, i) alone and
has class i mod 10 (so every split is balanced); train and test use different seed streams, and a clip's
content never depends on the batch it is rendered in.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .synthetic import draw_background, render_background, render_objects, saturate, unit_to_uint8

ACTIONS = ("right", "left", "up", "down", "right-fast", "circle-cw", "circle-ccw",
           "swing-horizontal", "swing-vertical", "pulse")
SPLITS = {"train": 1, "test": 2}  # seed streams of the splits
MIN_RADIUS, MAX_RADIUS = 0.08, 0.14  # object radius, frame units (smaller than the scenes': room to move)


@dataclass(frozen=True)
class ActionsConfig:
    train_per_class: int = 100
    test_per_class: int = 50
    background_shapes: int = 2  # as the tiny preset's scenes


@dataclass
class Motion:
    """One clip's object: centre over time and radius over time (frame units), shape and colour."""
    cx: torch.Tensor  # [T]
    cy: torch.Tensor  # [T]
    radius: torch.Tensor  # [T]
    square: bool
    colour: torch.Tensor  # [3]


def uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def trajectory(action: str, frames: int, radius: float,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cx, cy, radius) [T] of `action` for an object of `radius`; always inside the frame."""
    s = torch.arange(frames, dtype=torch.float32) / max(1, frames - 1)  # clip time in [0, 1]
    r = torch.full((frames,), radius)
    free = lambda extent: uniform(gen, radius + extent, 1 - radius - extent)  # noqa: E731  centre leaving `extent` room
    if action in ("right", "left", "up", "down", "right-fast"):
        travel = uniform(gen, 0.55, 0.7) if action == "right-fast" else uniform(gen, 0.25, 0.4)
        along = uniform(gen, radius, 1 - radius - travel) + travel * s  # increasing coordinate
        if action in ("left", "up"):
            along = 1 - along
        across = torch.full((frames,), free(0.0))
        return (along, across, r) if action in ("right", "left", "right-fast") else (across, along, r)
    if action in ("circle-cw", "circle-ccw"):
        ring = uniform(gen, 0.14, 0.22)
        cx0, cy0 = free(ring), free(ring)
        # y points down: +angle is clockwise
        turns = uniform(gen, 0.8, 1.1) * (1 if action == "circle-cw" else -1)
        angle = uniform(gen, 0, 2 * math.pi) + 2 * math.pi * turns * s
        return cx0 + ring * angle.cos(), cy0 + ring * angle.sin(), r
    if action in ("swing-horizontal", "swing-vertical"):
        amplitude = uniform(gen, 0.15, 0.25)
        centre, across = free(amplitude), free(0.0)
        phase = uniform(gen, 0, 2 * math.pi)
        along = centre + amplitude * torch.sin(phase + 2 * math.pi * uniform(gen, 0.9, 1.2) * s)
        return ((along, torch.full((frames,), across), r) if action == "swing-horizontal"
                else (torch.full((frames,), across), along, r))
    if action == "pulse":
        grown = radius * 1.45
        cx0, cy0 = free(grown - radius), free(grown - radius)
        phase = uniform(gen, 0, 2 * math.pi)
        size = radius * (1.0 + 0.45 * torch.sin(phase + 2 * math.pi * uniform(gen, 1.0, 1.5) * s))
        return torch.full((frames,), cx0), torch.full((frames,), cy0), size
    raise ValueError(f"unknown action {action!r}")


class SyntheticActions:
    """The labeled synthetic-actions data: `clips(split, indices)` -> uint8 [N, 3, T, S, S], `label(i)` = i
    mod K."""

    classes = list(ACTIONS)

    def __init__(self, frames: int, size: int, cfg: ActionsConfig | None = None):
        self.frames, self.size, self.cfg = frames, size, cfg or ActionsConfig()

    def count(self, split: str) -> int:
        per_class = self.cfg.train_per_class if split == "train" else self.cfg.test_per_class
        return per_class * len(ACTIONS)

    @staticmethod
    def label(index: int) -> int:
        return index % len(ACTIONS)

    def _generator(self, split: str, index: int) -> torch.Generator:
        return torch.Generator().manual_seed((SPLITS[split] * 1_000_003 + index * 7_919 + 101) % (2**63))

    def motion(self, split: str, index: int) -> tuple[Motion, torch.Generator]:
        gen = self._generator(split, index)
        radius = uniform(gen, MIN_RADIUS, MAX_RADIUS)
        square = bool(torch.rand((), generator=gen) < 0.5)
        colour = saturate(torch.rand(3, generator=gen))
        cx, cy, r = trajectory(ACTIONS[self.label(index)], self.frames, radius, gen)
        return Motion(cx, cy, r, square, colour), gen

    def clips(self, split: str, indices: list[int]) -> torch.Tensor:
        """Clips `indices` of `split` ("train" or "test"): uint8 [N, 3, T, S, S]; each depends on
        (split, index) only."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        motions, backgrounds = [], []
        for i in indices:
            # the background is drawn from the same generator, after the motion
            m, gen = self.motion(split, i)
            motions.append(m)
            backgrounds.append(render_background(draw_background(gen, 1, self.size,
                                                                 self.cfg.background_shapes), self.size))
        stack = lambda name: torch.stack([getattr(m, name) for m in motions])[:, None]  # noqa: E731  [N, 1, ...]
        video, _ = render_objects(torch.cat(backgrounds), stack("cx"), stack("cy"), stack("radius"),
                                  torch.tensor([[m.square] for m in motions]), stack("colour"),
                                  torch.ones(len(indices), 1, dtype=torch.bool))
        out = unit_to_uint8(video)
        assert out.shape == (len(indices), 3, self.frames, self.size, self.size)
        return out
