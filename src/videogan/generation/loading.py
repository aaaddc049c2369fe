"""One place that loads a generator: from a run directory (its latest checkpoint), a checkpoint folder or a
model shipped with the package ("pretrained:NAME", generation/pretrained/).

    from videogan import load_generator
    loaded = load_generator("runs/demo")             # or a checkpoint folder, or "pretrained:synthetic"
    loaded.generator, loaded.config, loaded.step, loaded.path, loaded.weights
    load_pretrained("synthetic")                     # the same as load_generator("pretrained:synthetic")
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..config import Config, ConfigError
from ..models import build_generator
from ..training.checkpoint import CheckpointError, load_checkpoint, load_state_dict, load_tensors
from . import pretrained

Weights = Literal["ema", "live"]


@dataclass
class LoadedGenerator:
    generator: nn.Module  # in eval mode, on the requested device
    config: Config
    step: int
    path: Path  # the checkpoint folder it came from
    weights: Weights  # "ema": the moving average of G's weights; "live": G as last trained


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu",
                   weights: Weights | None = None) -> LoadedGenerator:
    """A run directory (its latest checkpoint) or a checkpoint folder -> generator with its config.

    weights: "ema" (the default where the checkpoint has them) or "live".
    "pretrained:NAME" loads a model shipped with the package (load_pretrained).
    """
    if (name := pretrained.strip_prefix(str(path))) is not None:
        return load_pretrained(name, device=device, weights=weights)
    ckpt = load_checkpoint(path, generator_only=True)
    weights = weights or ("ema" if ckpt.generator_ema is not None else "live")
    if weights == "ema" and ckpt.generator_ema is None:
        raise CheckpointError(f"{ckpt.path}: has no EMA weights (trained with train.ema_decay 0); "
                              "use live weights")
    generator = build_generator(ckpt.config.model)
    tensors, name = ((ckpt.generator_ema, "generator_ema") if weights == "ema"
                     else (ckpt.generator, "generator"))
    load_state_dict(generator, tensors, ckpt.path / f"{name}.safetensors")
    return LoadedGenerator(generator.to(device).eval(), ckpt.config, ckpt.step, ckpt.path, weights)


def load_pretrained(name: str, device: str | torch.device = "cpu",
                    weights: str | None = None) -> LoadedGenerator:
    """Shipped model `name` -> LoadedGenerator (generator in eval mode, float32, on `device`).

    Only one set of weights ships (model.json "weights", the EMA where the run kept one); asking for the other
    is an error rather than a silent substitute."""
    info = pretrained.card(name)  # checks the name: ROOT / name is its folder
    if weights is not None and weights != info["weights"]:
        raise ConfigError(f"pretrained model {name!r} ships only its {info['weights']} weights, "
                          f"not {weights}")
    cfg = pretrained.card_config(name, info)
    folder = pretrained.ROOT / name
    path = folder / pretrained.WEIGHTS_FILE
    generator = build_generator(cfg.model)
    load_state_dict(generator, pretrained.upcast(load_tensors(path)), path)  # fp16 -> fp32
    return LoadedGenerator(generator.to(device).eval(), cfg, int(info["steps"]), folder, info["weights"])
