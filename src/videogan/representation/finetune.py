"""Action recognition from the discriminator: `videogan finetune --init RUN_DIR|random --data LABELED --mode
linear|finetune`.

As the paper (Sec. 5.3) and the original's fine-tuning script: D's real/fake layer is replaced by a K-way
head, Dropout3d(0.5) then Conv3d(C -> K) with kernel (t, 4, 4) over the whole last hidden map
(C x t x 4 x 4; paper 512 x 2 x 4 x 4), trained with cross-entropy and Adam (lr 2e-4, beta1 0.5).
- `finetune`: every layer trains (D's BatchNorm on batch statistics while training, running ones for testing).
- `linear`: D is frozen; its features are computed once (eval mode) and only the head trains: a linear probe.
  BatchNorm statistics for the frozen D are re-estimated on the training clips by default (`bn_stats="data"`,
  see features.recalibrate_batchnorm) or kept from the checkpoint (`"checkpoint"`).
`init="random"` is the paper's baseline: the same network, randomly initialised.

Where we go beyond the original, which printed only accuracy on training batches: the model is scored on the
test split (top-1, per class, confusion matrix), never selected on it (the last step is what is reported);
`label_fraction` trains on a class-balanced share of the training labels (the paper's 1/8 experiment).
Outputs in OUT: summary.json (test_accuracy, ...), confusion.png, predictions.csv, classifier.safetensors.
"""
from __future__ import annotations

import csv
import io
import json
import os
import time
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm

from ..config import (
    ANY,
    AT_LEAST_0,
    AT_LEAST_1,
    FRACTION,
    POSITIVE,
    ConfigError,
    ModelConfig,
    Range,
    check_number,
    validate_model,
)
from ..data.actions import ActionsConfig
from ..data.labeled import label_subset, open_labeled
from ..media import atomic_path, to_model_range, write_json
from ..models.init import init_weights
from .features import (
    BatchNormStats,
    ClipSplit,
    LoadedD,
    extract,
    feature_shape,
    load_discriminator,
    load_split,
    recalibrate_batchnorm,
)

Mode = Literal["linear", "finetune"]
MAX_TRAIN_SCORED = 200  # training clips scored at the end (to show over-fitting; costs a forward pass each)

# The numeric settings' ranges (FinetuneSettings.validate); label_fraction has its own message.
SETTING_RANGES: dict[str, Range] = {
    "seed": ANY, "steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "lr": POSITIVE, "beta1": FRACTION,
    "dropout": FRACTION, "eval_every": AT_LEAST_0, "split": AT_LEAST_1, "workers": AT_LEAST_0,
}


@dataclass
class FinetuneSettings:
    init: str = "random"  # a run directory or checkpoint folder, or "random"
    data: str = "synthetic-actions"  # labeled data (data/labeled.py)
    mode: Mode = "finetune"
    label_fraction: float = 1.0  # share of the training labels used, class-balanced
    seed: int = 0  # label subset, random init, head init, dropout, batch order
    steps: int = 1000  # optimiser steps (the same number at every label fraction)
    batch_size: int = 32
    lr: float = 2e-4  # the original's Adam settings
    beta1: float = 0.5
    dropout: float = 0.5
    bn_stats: BatchNormStats = "data"  # linear mode: BatchNorm statistics of the frozen D
    # also score the test split every K steps (recorded in the history; 0: only at the end)
    eval_every: int = 0
    split: int = 1  # UCF101 split N
    root: str | None = None  # a list's paths are relative to this (default: the list's folder)
    test_list: str | None = None  # a list of test clips, for the 'path label' format
    model: ModelConfig = field(default_factory=ModelConfig)  # the architecture of a random init
    # synthetic-actions: clips per class and split
    actions: ActionsConfig = field(default_factory=ActionsConfig)
    device: str = "cpu"
    workers: int = 2  # processes decoding videos

    def validate(self) -> None:
        """ConfigError (one line naming the setting, its value and what is allowed) before anything runs."""
        if self.mode not in ("linear", "finetune"):
            raise ConfigError(f"mode must be linear or finetune, got {self.mode!r}")
        if not 0 < self.label_fraction <= 1:
            raise ConfigError(f"label fraction must be in (0, 1], got {self.label_fraction}")
        if self.bn_stats not in ("data", "checkpoint"):
            raise ConfigError(f"bn_stats must be data or checkpoint, got {self.bn_stats!r}")
        types = typing.get_type_hints(type(self))
        for name, allowed in SETTING_RANGES.items():
            check_number(name, getattr(self, name), allowed, integer=types[name] is int)
        validate_model(self.model)


@dataclass
class Splits:
    """Labeled clips held in memory, loaded once (and shared by the runs of an experiment)."""
    classes: list[str]
    train: ClipSplit
    test: ClipSplit
    name: str
    # linear mode: (init, seed, bn_stats) -> (train features, test features, D's buffers),
    # reused (frozen_features)
    features: dict = field(default_factory=dict)


def load_splits(s: FinetuneSettings, model: ModelConfig, progress: bool = True) -> Splits:
    data = open_labeled(s.data, model.frames, model.size, split=s.split, root=s.root, test_list=s.test_list,
                        actions=s.actions)
    return Splits(data.classes, load_split(data, "train", s.workers, progress),
                  load_split(data, "test", s.workers, progress), data.name)


def frozen_features(loaded: LoadedD, splits: Splits, seed: int, bn_stats: BatchNormStats,
                    device: torch.device | str = "cpu",
                    progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen D's features of every train and test clip (float32 [N, C, t, 4, 4], on the CPU), computed
    once per (init, seed of a random init, bn_stats) for all runs sharing `splits`. With bn_stats "data", D's
    BatchNorm statistics are first re-estimated on every training clip (no labels are used, so a label
    fraction is kept). D's buffers (the BatchNorm statistics) are cached with the features and loaded back
    into `loaded.discriminator` on a cache hit, so that D always holds the statistics its features were
    computed with. `loaded` must come from load_discriminator(init, model, seed) and be on `device`."""
    d = loaded.discriminator
    key = (loaded.source, seed if loaded.source == "random" else None, bn_stats)
    if key in splits.features:
        train, test, buffers = splits.features[key]
        with torch.no_grad():
            for name, buffer in d.named_buffers():
                buffer.copy_(buffers[name])
        return train, test
    if bn_stats == "data":
        recalibrate_batchnorm(d, splits.train.clips, device=device)
    train = extract(d, splits.train.clips, device=device, progress=progress)
    test = extract(d, splits.test.clips, device=device, progress=progress)
    splits.features[key] = (train, test, {name: buffer.detach().cpu().clone()
                                          for name, buffer in d.named_buffers()})
    return train, test


# ----------------------------------------------------------------------------- the model

def make_head(width: int, core_frames: int, num_classes: int, dropout: float = 0.5) -> nn.Sequential:
    """The original's classifier: Dropout3d (whole feature channels) + Conv3d over the C x t x 4 x 4 map -> K
    logits."""
    head = nn.Sequential(nn.Dropout3d(dropout), nn.Conv3d(width, num_classes, (core_frames, 4, 4)))
    init_weights(head)
    return head


class ActionClassifier(nn.Module):
    """Clip [B, 3, T, S, S] in [-1, 1] -> logits [B, K]: D's convolutional stages, then the head."""

    def __init__(self, features: nn.Module, head: nn.Sequential):
        super().__init__()
        self.features, self.head = features, head

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(video)).flatten(1)


# ----------------------------------------------------------------------------- scoring (pure)

def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[K, K] counts: row = true class, column = predicted class."""
    index = labels.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def accuracy_report(labels: torch.Tensor, predictions: torch.Tensor, classes: list[str]) -> dict:
    """Top-1 accuracy, per-class accuracy (recall; None for a class absent from the labels), mean per-class
    accuracy and the confusion matrix."""
    k = len(classes)
    cm = confusion_matrix(labels, predictions, k)
    per_class = {name: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None)
                 for i, name in enumerate(classes)}
    present = [v for v in per_class.values() if v is not None]
    return {"accuracy": float((labels == predictions).float().mean()), "per_class_accuracy": per_class,
            "mean_class_accuracy": sum(present) / len(present), "confusion": cm.tolist()}


@torch.no_grad()
def predict(model: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, prepare: Callable,
            batch_size: int = 64) -> torch.Tensor:
    """argmax of model(prepare(batch)) for every item of `inputs` -> int64 [N]."""
    return torch.cat([model(prepare(inputs[i : i + batch_size])).argmax(1).cpu()
                      for i in range(0, len(inputs), batch_size)])


def draw_confusion(cm: torch.Tensor, classes: list[str], title: str) -> Image.Image:
    """The confusion matrix as an image: rows = true class, columns = predicted, shade = share of the row."""
    k = len(classes)
    cell = max(6, min(36, 720 // k))
    font = ImageFont.load_default()
    label_w = 0 if k > 60 else 8 + max(int(font.getlength(c)) for c in classes)
    top, pad = 34, 6
    img = Image.new("RGB", (label_w + k * cell + 2 * pad, top + k * cell + pad + 16), "white")
    draw = ImageDraw.Draw(img)
    draw.text((pad, 4), title, fill="black", font=font)
    draw.text((pad, 18), "rows: true class, columns: predicted (same order)", fill=(90, 90, 90), font=font)
    shares = cm.float() / cm.sum(1, keepdim=True).clamp_min(1)
    for i in range(k):
        if label_w:
            draw.text((pad, top + i * cell + (cell - 10) // 2), classes[i], fill="black", font=font)
        for j in range(k):
            v = float(shares[i, j])
            # blue: confusions, green: correct
            colour = (int(255 - 225 * v), int(255 - 170 * v), int(255 - 60 * v)) if i != j or v == 0 else \
                (int(255 - 200 * v), int(255 - 60 * v), int(255 - 200 * v))
            x, y = label_w + pad + j * cell, top + i * cell
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour, outline=(220, 220, 220))
            if cell >= 24 and cm[i, j]:
                draw.text((x + 3, y + (cell - 10) // 2), str(int(cm[i, j])), fill="black", font=font)
    return img


# ----------------------------------------------------------------------------- training

def _batches(n: int, batch_size: int, gen: torch.Generator):
    """Index batches [B] forever, a fresh permutation per pass (the last short batch of a pass is kept)."""
    while True:
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            yield order[i : i + batch_size]


def finetune(s: FinetuneSettings, out: str | os.PathLike, splits: Splits | None = None,
             progress: bool = True) -> dict:
    """Train and test one classifier (see the module docstring); writes OUT/summary.json etc., returns the
    summary."""
    s.validate()
    started = time.perf_counter()
    device = torch.device(s.device)
    loaded = load_discriminator(s.init, s.model, seed=s.seed)
    m = loaded.model
    splits = splits or load_splits(s, m, progress)
    k = len(splits.classes)
    assert splits.train.clips.shape[1:] == (3, m.frames, m.size, m.size), (
        f"clips {list(splits.train.clips.shape[1:])} do not fit the discriminator's "
        f"[3, {m.frames}, {m.size}, {m.size}]")
    keep = label_subset([_Item(i, int(y)) for i, y in enumerate(splits.train.labels)], s.label_fraction,
                        s.seed)
    train_index = torch.tensor([e.id for e in keep])
    train_labels = splits.train.labels[train_index]

    width, core_frames, _, _ = feature_shape(m)
    # head init and dropout; the random D (if any) was seeded by load_discriminator
    torch.manual_seed(s.seed + 1)
    d = loaded.discriminator.to(device)
    model = ActionClassifier(d.features, make_head(width, core_frames, k, s.dropout)).to(device)
    # frozen D: its features once (for all runs sharing `splits`), then only the head trains
    if s.mode == "linear":
        train_features, test_inputs = frozen_features(loaded, splits, s.seed, s.bn_stats, device, progress)
        train_inputs = train_features[train_index]
        net, params, prepare = model.head, model.head.parameters(), lambda x: x.to(device)
        forward = lambda x: net(x).flatten(1)  # noqa: E731
    else:
        train_inputs, test_inputs = splits.train.clips[train_index], splits.test.clips
        net, params, prepare = model, model.parameters(), lambda x: to_model_range(x, device)
        forward = net
    opt = torch.optim.Adam(params, lr=s.lr, betas=(s.beta1, 0.999))

    def test_accuracy() -> tuple[float, torch.Tensor]:
        net.eval()
        predictions = predict(forward, test_inputs, prepare)
        net.train()
        return float((predictions == splits.test.labels).float().mean()), predictions

    history = []
    batches = _batches(len(train_inputs), s.batch_size, torch.Generator().manual_seed(s.seed + 2))
    net.train()
    losses: list[float] = []  # since the last log line
    bar = tqdm(range(1, s.steps + 1), desc=f"{s.mode} {Path(out).name}", unit="step", disable=not progress,
               dynamic_ncols=True)
    for step in bar:
        idx = next(batches)
        loss = F.cross_entropy(forward(prepare(train_inputs[idx])), train_labels[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == s.steps:
            history.append({"step": step, "train_loss": sum(losses) / len(losses)})
            bar.set_postfix(loss=f"{history[-1]['train_loss']:.3f}")
            losses = []
        if s.eval_every and step % s.eval_every == 0 and step != s.steps:
            history.append({"step": step, "test_accuracy": test_accuracy()[0]})
    bar.close()

    accuracy, predictions = test_accuracy()
    net.eval()
    # train accuracy on (at most) this many clips
    seen = torch.arange(min(len(train_inputs), MAX_TRAIN_SCORED))
    train_predictions = predict(forward, train_inputs[seen], prepare)
    report = accuracy_report(splits.test.labels, predictions, splits.classes)
    history.append({"step": s.steps, "test_accuracy": accuracy})
    summary = {
        "test_accuracy": accuracy, "mean_class_accuracy": report["mean_class_accuracy"], "chance": 1 / k,
        "train_accuracy": float((train_predictions == train_labels[seen]).float().mean()),
        "per_class_accuracy": report["per_class_accuracy"], "confusion": report["confusion"],
        "classes": splits.classes, "data": splits.name, "num_train": len(train_labels),
        "num_train_available": len(splits.train.labels), "num_test": len(splits.test.labels),
        "skipped": splits.train.skipped + splits.test.skipped, "init": loaded.source,
        "init_step": loaded.step, "mode": s.mode, "label_fraction": s.label_fraction, "seed": s.seed,
        "steps": s.steps, "feature_shape": [width, core_frames, 4, 4],
        "seconds": round(time.perf_counter() - started, 1), "history": history,
        "settings": {**asdict(s), "model": asdict(m)},
    }
    _write_outputs(Path(out), summary, model, splits, predictions)
    return summary


@dataclass(frozen=True)
class _Item:  # label_subset works on anything with .id and .label
    id: int
    label: int


def _write_outputs(out: Path, summary: dict, model: ActionClassifier, splits: Splits,
                   predictions: torch.Tensor) -> None:
    out.mkdir(parents=True, exist_ok=True)
    title = (f"{summary['mode']}, init "
             f"{'random' if summary['init'] == 'random' else 'GAN step ' + str(summary['init_step'])}, "
             f"labels x{summary['label_fraction']:g}: test top-1 = {100 * summary['test_accuracy']:.1f}%")
    image = draw_confusion(torch.tensor(summary["confusion"]), splits.classes, title)
    with atomic_path(out / "confusion.png") as tmp:
        image.save(tmp, format="PNG")
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "label", "prediction", "label_name", "prediction_name"])
    for clip_id, y, p in zip(splits.test.ids, splits.test.labels.tolist(), predictions.tolist(), strict=True):
        writer.writerow([clip_id, y, p, splits.classes[y], splits.classes[p]])
    with atomic_path(out / "predictions.csv") as tmp:
        tmp.write_text(text.getvalue())
    with atomic_path(out / "classifier.safetensors") as tmp:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(tmp), metadata={"classes": json.dumps(splits.classes),
                                               "mode": summary["mode"]})
    write_json(out / "summary.json", summary)  # last: its presence marks a finished run
