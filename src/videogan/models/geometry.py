"""How a clip shape maps onto the stack of (transposed) convolutions.

The paper's nets double (G) or halve (D) space and time at every stage between a
4x4 spatial core and the 64x64 clip: 64 = 4 * 2**4, 32 frames = 2 * 2**4. Other
shapes follow the same rule: `stages = log2(size / 4)`, and time is doubled at as many
stages as the number of frames allows (the rest keep time with kernel 3, stride 1).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import VideoGANError


class ArchitectureError(VideoGANError, ValueError):
    """A clip shape or width the architecture cannot build; one line for the user."""


@dataclass(frozen=True)
class Geometry:
    stages: int  # number of x2 spatial up/down-sampling stages
    core_frames: int  # T of the 4x4 core (paper: 2)
    time_strides: tuple[int, ...]  # per stage, from the core outwards: 2 doubles time, 1 keeps it

    def widths(self, first: int, growth: str) -> list[int]:
        """Channels per stage from the core outwards ("halve") or the clip inwards ("double")."""
        if growth == "halve":
            return [first >> i for i in range(self.stages)]
        return [first << i for i in range(self.stages)]


def _twos(n: int) -> int:
    count = 0
    while n % 2 == 0:
        n //= 2
        count += 1
    return count


def geometry(frames: int, size: int) -> Geometry:
    if size < 8 or size & (size - 1):
        raise ArchitectureError(f"model.size {size} is not supported: use a power of two >= 8 "
                                "(e.g. 32, 64, 128)")
    if frames < 1:
        raise ArchitectureError(f"model.frames {frames} is not supported: use 1 or more")
    stages = size.bit_length() - 3  # log2(size / 4)
    doublings = min(stages, _twos(frames))
    # Time-keeping stages come first (next to the core), doubling stages last, as in the paper.
    strides = (1,) * (stages - doublings) + (2,) * doublings
    return Geometry(stages=stages, core_frames=frames >> doublings, time_strides=strides)


def check_width(name: str, width: int, geo: Geometry, growth: str) -> None:
    if width < 1:
        raise ArchitectureError(f"{name} {width} must be positive")
    if growth == "halve" and width % (1 << (geo.stages - 1)):
        raise ArchitectureError(
            f"{name} {width} must be divisible by {1 << (geo.stages - 1)} "
            f"so that each of the {geo.stages} stages can halve it"
        )
