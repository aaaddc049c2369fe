"""The discriminator as a video representation: `videogan features RUN_DIR DATA --out features.npz`.

The paper's third result (Sec. 5.3) reads the discriminator's last hidden stage, the 512 x 2 x 4 x 4 map just
before its real/fake layer, as motion features. This file turns a trained D into that feature extractor:
load it from a checkpoint (or build a randomly initialised one for the baseline), hold labeled clips in
memory, optionally re-estimate BatchNorm statistics on them, and compute the map for every clip.

features.npz holds, for N clips of both splits (train first):
    flat    float32 [N, C * t * 4 * 4]  the map, flattened (C = the last stage's width, t = core frames)
    pooled  float32 [N, C]               the map averaged over time and space
    ids, labels, split                   clip names, class indices, "train" / "test"
    classes, map_shape                   class names, (C, t, 4, 4)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..config import ModelConfig
from ..data.actions import ActionsConfig
from ..data.decode import DataError, warn
from ..data.labeled import Example, LabeledData, open_labeled
from ..media import atomic_path, to_model_range
from ..models import Discriminator
from ..models.geometry import geometry
from ..training.checkpoint import CheckpointError, load_checkpoint, load_state_dict
from ..training.ema import cumulative_batchnorm

BatchNormStats = Literal["data", "checkpoint"]


@dataclass
class LoadedD:
    discriminator: Discriminator
    model: ModelConfig
    source: str  # the checkpoint folder, or "random"
    step: int  # GAN training steps behind the weights (0: random)


def load_discriminator(init: str, model: ModelConfig | None = None, seed: int = 0) -> LoadedD:
    """D from a run directory or checkpoint folder (its architecture from the checkpoint), or `init="random"`:
    a fresh D of architecture `model`, initialised as for GAN training (N(0, 0.01)) with torch seeded by
    `seed`."""
    if init == "random":
        if model is None:
            raise ValueError("a random discriminator needs a model config")
        torch.manual_seed(seed)
        return LoadedD(Discriminator(model), model, "random", 0)
    ckpt = load_checkpoint(init)
    if ckpt.discriminator is None:  # pragma: no cover - load_checkpoint always reads it here
        raise CheckpointError(f"{ckpt.path}: no discriminator weights")
    d = Discriminator(ckpt.config.model)
    load_state_dict(d, ckpt.discriminator, ckpt.path / "discriminator.safetensors")
    return LoadedD(d, ckpt.config.model, str(ckpt.path), ckpt.step)


def feature_shape(model: ModelConfig) -> tuple[int, int, int, int]:
    """(C, t, 4, 4) of D's last hidden stage: C = d_width * 2^(stages - 1), t = the core frames
    (paper: 512, 2)."""
    geo = geometry(model.frames, model.size)
    return (model.d_width << (geo.stages - 1), geo.core_frames, 4, 4)


# ----------------------------------------------------------------------------- labeled clips in memory

@dataclass
class ClipSplit:
    clips: torch.Tensor  # uint8 [N, 3, T, S, S]
    labels: torch.Tensor  # int64 [N]
    ids: list[str]
    skipped: list[str]  # clips that could not be read (each warned about)


class _Clips(Dataset):
    """Item i -> (i, clip or None, error message or None): a bad clip becomes a warning, never a dead
    worker."""

    def __init__(self, data: LabeledData, examples: list[Example], split: str):
        self.data, self.examples, self.split = data, examples, split

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int):
        try:
            return i, self.data.load(self.examples[i], self.split), None
        except DataError as e:
            return i, None, str(e)


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 62


def load_split(data: LabeledData, split: str, workers: int = 0, progress: bool = True) -> ClipSplit:
    """All clips of one split, decoded once into memory (uint8). Clips that cannot be read are left out with a
    warning; a split too large for this machine's memory is a DataError before anything is decoded."""
    examples = data.split(split)
    shape = (3, data.frames, data.size, data.size)
    need = len(examples) * math.prod(shape)
    if need > 0.6 * _memory_bytes():
        raise DataError(f"{data.name}: the {split} split ({len(examples)} clips) needs {need / 1e9:.1f} GB "
                        f"in memory, more than this machine can hold; use fewer frames or a smaller size")
    clips = torch.empty(len(examples), *shape, dtype=torch.uint8)
    ok = torch.zeros(len(examples), dtype=torch.bool)
    skipped = []
    bar = tqdm(total=len(examples), desc=f"{split} clips", unit="clip", disable=not progress,
               dynamic_ncols=True)
    if hasattr(data.loader, "load_many"):  # rendered data: batched, in this process
        for start in range(0, len(examples), 64):
            chunk = examples[start : start + 64]
            clips[start : start + len(chunk)] = data.loader.load_many(chunk, split)
            ok[start : start + len(chunk)] = True
            bar.update(len(chunk))
    else:
        loader = DataLoader(_Clips(data, examples, split), batch_size=None, num_workers=workers)
        for i, clip, error in loader:
            if error is not None:
                warn(f"skipped: {error}")
                skipped.append(examples[i].id)
            else:
                clips[i], ok[i] = clip, True
            bar.update(1)
    bar.close()
    if not ok.any():
        raise DataError(f"{data.name}: none of the {len(examples)} {split} clips could be read (see the "
                        "warnings)")
    keep = ok.nonzero().flatten()
    return ClipSplit(clips[keep], torch.tensor([examples[i].label for i in keep.tolist()], dtype=torch.long),
                     [examples[i].id for i in keep.tolist()], skipped)


# ----------------------------------------------------------------------------- features

@torch.no_grad()
def recalibrate_batchnorm(d: Discriminator, clips: torch.Tensor, batch_size: int = 64,
                          device: torch.device | str = "cpu") -> None:
    """Replace D's BatchNorm running statistics by their average over `clips` (no labels used).

    A GAN's D ends training with running statistics of a mix of real and generated batches (it sees them in
    separate passes), and a random D has none (mean 0, variance 1); both would scale the features arbitrarily
    in eval mode. Re-estimating them on the data to be classified is the fix the EMA generator also gets
    here."""
    with cumulative_batchnorm(d) as norms:
        if not norms:
            return
        for start in range(0, len(clips), batch_size):
            d.features(to_model_range(clips[start : start + batch_size], device))
    d.eval()


@torch.no_grad()
def extract(d: Discriminator, clips: torch.Tensor, batch_size: int = 64, device: torch.device | str = "cpu",
            progress: bool = False) -> torch.Tensor:
    """D's last hidden map for each clip, in eval mode: float32 [N, C, t, 4, 4] (on the CPU)."""
    d.eval()
    out = []
    for start in tqdm(range(0, len(clips), batch_size), desc="features", unit="batch", disable=not progress,
                      dynamic_ncols=True):
        out.append(d.features(to_model_range(clips[start : start + batch_size], device)).float().cpu())
    return torch.cat(out)


def pooled(features: torch.Tensor) -> torch.Tensor:
    """[N, C, t, h, w] -> [N, C]: the mean over time and space."""
    return features.mean(dim=(2, 3, 4))


def save_features(path: str | os.PathLike, features: torch.Tensor, labels: torch.Tensor, ids: list[str],
                  split: list[str], classes: list[str]) -> None:
    """features.npz (see the module docstring), written atomically."""
    assert features.ndim == 5 and len(features) == len(labels) == len(ids) == len(split)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, flat=features.flatten(1).numpy(), pooled=pooled(features).numpy(), labels=labels.numpy(),
                 ids=np.array(ids), split=np.array(split), classes=np.array(classes),
                 map_shape=np.array(features.shape[1:]))


def features(init: str, data_spec: str, out: str | os.PathLike, batchnorm: BatchNormStats = "data",
             split: int = 1, root: str | None = None, test_list: str | None = None,
             device: str | torch.device = "cpu", workers: int = 0, batch_size: int = 64,
             progress: bool = True, actions: ActionsConfig | None = None) -> dict:
    """`videogan features`: D's features for every clip of both splits of `data_spec` -> `out` (.npz)."""
    loaded = load_discriminator(init)
    m = loaded.model
    data = open_labeled(data_spec, m.frames, m.size, split=split, root=root, test_list=test_list,
                        actions=actions)
    d = loaded.discriminator.to(device)
    splits = {name: load_split(data, name, workers, progress) for name in ("train", "test")}
    if batchnorm == "data":
        recalibrate_batchnorm(d, splits["train"].clips, batch_size, device)
    maps = [extract(d, splits[name].clips, batch_size, device, progress) for name in ("train", "test")]
    feats = torch.cat(maps)
    assert feats.shape[1:] == feature_shape(m), f"{list(feats.shape)} vs {feature_shape(m)}"
    names = [name for name in ("train", "test") for _ in splits[name].ids]
    save_features(out, feats, torch.cat([splits["train"].labels, splits["test"].labels]),
                  splits["train"].ids + splits["test"].ids, names, data.classes)
    return {"out": str(out), "checkpoint": loaded.source, "step": loaded.step, "data": data.name,
            "clips": len(feats), "train": len(splits["train"].ids), "test": len(splits["test"].ids),
            "map_shape": list(feats.shape[1:]), "flat_dim": int(feats[0].numel()),
            "pooled_dim": int(feats.shape[1]), "batchnorm": batchnorm,
            "skipped": splits["train"].skipped + splits["test"].skipped}
