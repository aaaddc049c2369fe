"""Networks only: no I/O here."""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .conditional import ImageToVideoGenerator, OnFixedImages
from .discriminator import Discriminator
from .generator import (
    GeneratorOutput,
    OneStreamGenerator,
    TwoStreamGenerator,
    compose,
    with_discrete_code,
)
from .generator import build_generator as build_unconditional_generator
from .geometry import ArchitectureError, geometry
from .init import fold_conv_bias_into_batchnorm, init_weights

if TYPE_CHECKING:  # annotations only: config imports the models' geometry rules to check a config
    from ..config import ModelConfig


def build_generator(cfg: ModelConfig) -> nn.Module:
    """The generator model.kind names: two-stream, one-stream (noise -> video) or conditional
    (image -> video)."""
    for field in ("stochastic", "input_background", "image_skips", "warp_foreground"):
        if getattr(cfg, field) and cfg.kind != "conditional":
            raise ArchitectureError(f"model.{field} applies to the conditional model only, not to {cfg.kind}")
    if cfg.z_modes and cfg.kind == "conditional":
        raise ArchitectureError(f"model.z_modes applies to the unconditional models only, not to {cfg.kind}")
    if cfg.motion_layers < 0:
        raise ArchitectureError(f"model.motion_layers {cfg.motion_layers} must be 0 (a free flow) or more")
    if cfg.motion_layers and not cfg.warp_foreground:
        raise ArchitectureError("model.motion_layers needs model.warp_foreground=true (the layers move the "
                                "warped image)")
    return ImageToVideoGenerator(cfg) if cfg.kind == "conditional" else build_unconditional_generator(cfg)


__all__ = [
    "ArchitectureError",
    "Discriminator",
    "GeneratorOutput",
    "ImageToVideoGenerator",
    "OnFixedImages",
    "OneStreamGenerator",
    "TwoStreamGenerator",
    "build_generator",
    "compose",
    "fold_conv_bias_into_batchnorm",
    "geometry",
    "init_weights",
    "with_discrete_code",
]
