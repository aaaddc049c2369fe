"""Small, pure clip transforms shared by the datasets. Clips are uint8 [3, T, S, S] tensors.

Randomness comes from an explicit generator (`torch.Generator`, `numpy.random.Generator` or
`random.Random`), never from global state, so every stream is reproducible from its seed.
"""
from __future__ import annotations

import random as _random

import numpy as np
import torch
import torch.nn.functional as F

Rng = torch.Generator | np.random.Generator | _random.Random


def randint(rng: Rng, high: int) -> int:
    """A uniform integer in [0, high) from any of the supported generators."""
    if high <= 1:
        return 0
    if isinstance(rng, torch.Generator):
        return int(torch.randint(high, (1,), generator=rng))
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(high))
    if isinstance(rng, _random.Random):
        return rng.randrange(high)
    raise TypeError(f"unsupported random generator {type(rng).__name__}")


def window_start(t: int, frames: int, rng: Rng | None = None, random: bool = False) -> int:
    """First frame of a `frames`-long window in a clip of `t` frames: random (one draw) if `random` and t >
    frames, else 0."""
    if t < frames:
        raise ValueError(f"clip has {t} frames, fewer than the {frames} wanted")
    if random and t > frames:
        if rng is None:
            raise ValueError("a random window needs a generator")
        return randint(rng, t - frames + 1)
    return 0


def coin(rng: Rng, p: float = 0.5) -> bool:
    """True with probability p (one draw from `rng`)."""
    if isinstance(rng, torch.Generator):
        u = float(torch.rand((), generator=rng))
    elif isinstance(rng, np.random.Generator):
        u = float(rng.random())
    elif isinstance(rng, _random.Random):
        u = rng.random()
    else:
        raise TypeError(f"unsupported random generator {type(rng).__name__}")
    return u < p


def temporal_window(clip: torch.Tensor, frames: int, rng: Rng | None = None,
                    random: bool = False) -> torch.Tensor:
    """`frames` consecutive frames of `clip` [3, T, S, S]: a random window if `random` (needs `rng`), else the
    first ones. Returns a view (no copy). T < frames is a ValueError (callers skip such clips)."""
    start = window_start(clip.shape[1], frames, rng, random)
    return clip[:, start : start + frames]


def maybe_hflip(clip: torch.Tensor, rng: Rng, p: float = 0.5) -> torch.Tensor:
    """Flip `clip` [..., W] left-right with probability `p` (one draw from `rng` per call)."""
    return clip.flip(-1) if coin(rng, p) else clip


def resize_clip(clip: torch.Tensor, size: int, mode: str = "area") -> torch.Tensor:
    """uint8 [3, T, H, W] -> uint8 [3, T, size, size], each frame resized independently.

    mode "area": box averaging (F.interpolate mode="area"), the right filter for shrinking; "bilinear":
    bilinear with align_corners=True and no antialiasing (Torch7's image.scale when enlarging).
    A clip already at `size` is returned as it is (no copy)."""
    if clip.shape[-2:] == (size, size):
        return clip
    x = clip.permute(1, 0, 2, 3).float()  # [T, 3, H, W]
    if mode == "area":
        x = F.interpolate(x, size=(size, size), mode="area")
    elif mode == "bilinear":
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True, antialias=False)
    else:
        raise ValueError(f"resize_clip: unknown mode {mode!r}")
    return x.round_().clamp_(0, 255).to(torch.uint8).permute(1, 0, 2, 3).contiguous()
