"""Networks only: no I/O here."""
from .discriminator import Discriminator
from .generator import (
    GeneratorOutput,
    OneStreamGenerator,
    TwoStreamGenerator,
    build_generator,
    compose,
)
from .geometry import ArchitectureError, geometry
from .init import init_weights

__all__ = [
    "ArchitectureError",
    "Discriminator",
    "GeneratorOutput",
    "OneStreamGenerator",
    "TwoStreamGenerator",
    "build_generator",
    "compose",
    "geometry",
    "init_weights",
]
