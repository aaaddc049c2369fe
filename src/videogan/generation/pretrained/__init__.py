"""Pretrained models shipped inside the package: `videogan generate --pretrained NAME` works right after
install.

    from videogan.generation import loading, pretrained
    pretrained.names()                      # ['pedestrians', 'synthetic', 'synthetic-animate']
    loading.load_pretrained("synthetic")    # its LoadedGenerator (videogan.generation.loading)
    pretrained.card("synthetic")            # model.json: data, preset, steps, training time, FVD/KVD, command

Each model is a folder next to this file:
- generator.safetensors: G's EMA weights (float tensors stored as float16, BatchNorm's counters as int64),
  upcast to float32 when loaded, so sampling runs in float32 as in training;
- model.json: what it is, what it can and cannot do, its training data, config, steps, seconds, machine, date,
  FVD/KVD against its data with the protocol, the exact command that reproduces it, and its bytes;
- reference.safetensors: uint8 clips the float32 weights gave before export (tests compare the float16 ones);
- examples/*.png (image-to-video models): input images for `videogan animate --pretrained NAME`.
All of them are written by `python tools/export_pretrained.py NAME`. Everywhere a run directory is accepted by
the sampling commands, "pretrained:NAME" names a shipped model (loading.load_generator, evaluate --fake).
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import torch

from ...config import Config, ConfigError, from_dict

PREFIX = "pretrained:"  # "pretrained:NAME" wherever a run directory is accepted
ROOT = Path(__file__).parent
WEIGHTS_FILE = "generator.safetensors"
CARD_FILE = "model.json"
REFERENCE_FILE = "reference.safetensors"
EXAMPLES_DIR = "examples"
REQUIRED = ("name", "kind", "description", "can", "cannot", "data", "preset", "config", "steps",
            "training_seconds", "machine", "date", "fvd", "fvd_check", "command", "bytes", "weights",
            "storage")


def names() -> list[str]:
    """The shipped models, sorted (folders holding a model.json)."""
    return sorted(p.name for p in ROOT.iterdir() if (p / CARD_FILE).is_file())


def folder(name: str) -> Path:
    """The folder of model `name`; ConfigError naming the shipped ones when there is none."""
    if name not in names():
        raise ConfigError(f"unknown pretrained model {name!r}; shipped: {', '.join(names()) or 'none'}")
    return ROOT / name


def strip_prefix(spec: str) -> str | None:
    """"pretrained:NAME" -> NAME; anything else -> None."""
    return spec[len(PREFIX):] if isinstance(spec, str) and spec.startswith(PREFIX) else None


@cache
def _read_card(path: Path, mtime_ns: int) -> dict[str, Any]:
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"{path}: unreadable model card ({e})") from None
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ConfigError(f"{path}: model card lacks {', '.join(missing)}")
    return card


def card(name: str) -> dict[str, Any]:
    """The model's model.json (checked for the required fields)."""
    path = folder(name) / CARD_FILE
    return _read_card(path, path.stat().st_mtime_ns)


def config(name: str) -> Config:
    """The resolved training config of model `name` (as a run's config.json)."""
    return card_config(name, card(name))


def card_config(name: str, info: dict[str, Any]) -> Config:
    """config() from the card `info` of model `name`, already read (and its folder checked) by card()."""
    try:
        return from_dict(info["config"])
    except ConfigError as e:
        raise ConfigError(f"{ROOT / name / CARD_FILE}: bad config ({e})") from None


def upcast(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The stored float16 tensors -> float32 (BatchNorm's int64 counters stay)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def examples(name: str) -> list[Path]:
    """Example input images shipped with an image-to-video model (sorted; empty for the others)."""
    return sorted((folder(name) / EXAMPLES_DIR).glob("*.png"))


def summary(name: str) -> dict[str, Any]:
    """One row of `videogan pretrained`: what a user needs to choose a model."""
    info = card(name)
    # None: the export stopped before FVD
    fvd = info["fvd"] or {"fvd": None, "kvd": None, "metric": None, "real": None}
    return {
        "name": name, "kind": info["kind"], "description": info["description"],
        "data": info["data"]["description"], "preset": info["preset"],
        "clip_shape": card_config(name, info).clip_shape, "steps": info["steps"],
        "training_seconds": info["training_seconds"], "machine": info["machine"], "date": info["date"],
        "fvd": fvd["fvd"], "kvd": fvd["kvd"], "metric": fvd["metric"], "fvd_real": fvd["real"],
        "bytes": info["bytes"], "command": info["command"], "can": info["can"], "cannot": info["cannot"],
        # the command that made the training data, where not built in, and the held-out real clips' where
        # another command made them
        "prepare": info["data"].get("prepare", ""), "prepare_real": info["data"].get("prepare_real", ""),
        # FVD at the model's own frame count (more than 16), with its interval where drawn more than once
        **own_frames_fvd(info),
    }


def own_frames_fvd(info: dict[str, Any]) -> dict[str, Any]:
    """A card's fvd_own_frames as summary fields (None where the card has none)."""
    own = info.get("fvd_own_frames") or {}
    return {"fvd_own_frames": own.get("fvd"), "metric_own_frames": own.get("metric"),
            "fvd_own_frames_ci95": own.get("fvd_ci95")}


def table(rows: list[dict[str, Any]]) -> str:
    """`videogan pretrained` as text: one block per model."""
    blocks = []
    for r in rows:
        c, t, h, w = r["clip_shape"]
        blocks.append("\n".join([
            f"{r['name']}  ({r['kind']}, preset {r['preset']}, {t} frames of {h}x{w}, "
            f"{r['bytes'] / 1e6:.2f} MB)",
            f"  {r['description']}",
            f"  data:     {r['data']}",
            f"  training: {r['steps']} steps, {r['training_seconds'] / 60:.0f} min on {r['machine']}, "
            f"{r['date']}",
            f"  quality:  {r['metric']} {r['fvd']:.0f}, KVD {r['kvd']:.0f} against {r['fvd_real']}"
            if r["fvd"] is not None else "  quality:  not measured (the export stopped before FVD)",
            *([f"            {r['metric_own_frames']} {r['fvd_own_frames']:.0f}"
               + (f" (95% interval {r['fvd_own_frames_ci95'][0]:.0f}-{r['fvd_own_frames_ci95'][1]:.0f})"
                  if r["fvd_own_frames_ci95"] else "")] if r["fvd_own_frames"] is not None else []),
            f"  can:      {r['can']}",
            f"  cannot:   {r['cannot']}",
            *([f"  prepare:  {r['prepare']}"] if r["prepare"] else []),
            *([f"  held out: {r['prepare_real']}"] if r["prepare_real"] else []),
            f"  reproduce: {r['command']}",
        ]))
    return "\n\n".join(blocks)
