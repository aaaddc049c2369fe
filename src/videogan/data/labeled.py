"""Labeled clips for action recognition (`videogan features`, `videogan finetune`): a train and a test split.

`open_labeled(spec, frames, size)` understands
- `synthetic-actions`: the built-in labeled scenes (data/actions.py), fixed train/test splits;
- the UCF101 layout: a folder holding `classInd.txt` and `trainlist0N.txt` / `testlist0N.txt` (directly or in
  `ucfTrainTestlist/`) and the videos in a folder per class (directly, or in `UCF-101/` or `UCF101/`);
  `split` picks N (1-3). Test lines carry no label: it comes from the class folder, as in the official lists;
- the original's list format: a .txt file of `path label` lines (paths relative to the list's folder or
  `root`), each path a video file or a stacked-frame JPEG (the original's format, data/stacked.py). A second
  list (`test_list`) gives the test split; without one a fixed 20% of each class is held out;
- prepared shards (`videogan prepare` output) whose JSON metadata carries `label` (a class name or number) and
  optionally `split` ("train" or "test"; without it a fixed 20% of each class is held out).

Held-out splits are stratified and fixed: within each class the examples whose id hashes lowest are the test
ones, whatever the seed, so every run of an experiment is scored on the same clips. Clips are cut like
`videogan prepare --no-stabilize` cuts them: the middle `frames` frames of a video (the last one repeated in a
shorter video), centre square crop, area resize; stacked JPEGs like the original loader (the first frames).
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .actions import ActionsConfig, SyntheticActions
from .augment import resize_clip
from .decode import VIDEO_SUFFIXES, DataError, iter_frames
from .prepare import crop_resize
from .shards import decode_clip, image_and_meta, is_shard_source, read_shard, resolve_shards
from .stacked import load_stacked_clip

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class Example:
    id: str  # stable name: a path relative to the data set, a shard key, or "train/000017"
    label: int  # class index into LabeledData.classes


@dataclass
class LabeledData:
    """Two splits of labeled clips; `load(example)` -> uint8 [3, frames, size, size]."""

    name: str
    classes: list[str]
    train: list[Example]
    test: list[Example]
    frames: int
    size: int
    loader: object  # how clips are made: one of the _Loader classes below (picklable, for DataLoader workers)

    def load(self, example: Example, split: str) -> torch.Tensor:
        clip = self.loader.load(example, split)
        assert clip.shape == (3, self.frames, self.size, self.size) and clip.dtype == torch.uint8, (
            f"{example.id}: expected uint8 [3, {self.frames}, {self.size}, {self.size}], "
            f"got {clip.dtype} {list(clip.shape)}")
        return clip

    def split(self, name: str) -> list[Example]:
        return {"train": self.train, "test": self.test}[name]


# ----------------------------------------------------------------------------- splits and label fractions

def _rank(example_id: str) -> str:
    return hashlib.sha1(example_id.encode()).hexdigest()


def holdout_split(examples: list[Example],
                  fraction: float = HOLDOUT_FRACTION) -> tuple[list[Example], list[Example]]:
    """(train, test): in each class the round(fraction * n) examples with the lowest id hash
    (at least one when the class has two or more) are test. Fixed: it depends on the ids alone."""
    by_class: dict[int, list[Example]] = defaultdict(list)
    for e in examples:
        by_class[e.label].append(e)
    test_ids = set()
    for members in by_class.values():
        n_test = max(1, round(fraction * len(members))) if len(members) >= 2 else 0
        test_ids |= {e.id for e in sorted(members, key=lambda e: _rank(e.id))[:n_test]}
    return [e for e in examples if e.id not in test_ids], [e for e in examples if e.id in test_ids]


def label_subset(examples: list[Example], fraction: float, seed: int) -> list[Example]:
    """A class-balanced share of the training examples: from each class max(1, round(fraction * n)) of them,
    chosen at random with `seed` (the paper's "1/8 of the labels"). Order kept as given."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        by_class[e.label].append(i)
    gen = torch.Generator().manual_seed(seed)
    keep: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        order = torch.randperm(len(members), generator=gen).tolist()
        keep += [members[j] for j in order[: max(1, round(fraction * len(members)))]]
    return [examples[i] for i in sorted(keep)]


# ----------------------------------------------------------------------------- loaders

class _ActionsLoader:
    def __init__(self, actions: SyntheticActions):
        self.actions = actions

    def load(self, example: Example, split: str) -> torch.Tensor:
        return self.actions.clips(split, [int(example.id.split("/")[1])])[0]

    def load_many(self, examples: list[Example], split: str) -> torch.Tensor:
        """Batched rendering: much faster than one clip at a time."""
        return self.actions.clips(split, [int(e.id.split("/")[1]) for e in examples])


def video_clip(path: str | os.PathLike, frames: int, size: int) -> torch.Tensor:
    """The middle `frames` frames of a video (last frame repeated if shorter), centre-cropped, area-resized:
    uint8 [3, frames, size, size]. VideoDecodeError (a DataError) names the file if it does not decode."""
    images = list(iter_frames(path))  # the whole video: labeled video clips are short (UCF101: ~7 s)
    start = max(0, (len(images) - frames) // 2)
    picked = [images[min(start + i, len(images) - 1)] for i in range(frames)]
    clip = crop_resize(np.stack(picked), size)  # [T, S, S, 3]
    return torch.from_numpy(clip).permute(3, 0, 1, 2).contiguous()


class _FileLoader:
    """Examples whose id is a path relative to `root`: a video, or a stacked-frame JPEG
    (the original's format)."""

    def __init__(self, root: Path, frames: int, size: int):
        self.root, self.frames, self.size = root, frames, size

    def load(self, example: Example, split: str) -> torch.Tensor:
        path = self.root / example.id
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return load_stacked_clip(path, self.frames, self.size)
        return video_clip(path, self.frames, self.size)


class _ShardLoader:
    """Examples held as encoded samples in memory (id -> sample), read once from the shards."""

    def __init__(self, samples: dict[str, dict], frames: int, size: int):
        self.samples, self.frames, self.size = samples, frames, size

    def load(self, example: Example, split: str) -> torch.Tensor:
        clip = decode_clip(self.samples[example.id])
        if clip.shape[1] < self.frames:
            raise DataError(f"{example.id}: {clip.shape[1]} frames, fewer than the {self.frames} wanted")
        return resize_clip(clip[:, : self.frames].contiguous(), self.size)


# ----------------------------------------------------------------------------- the formats

def _actions(frames: int, size: int, cfg: ActionsConfig | None) -> LabeledData:
    actions = SyntheticActions(frames, size, cfg)
    split = lambda name: [Example(f"{name}/{i:06d}", actions.label(i)) for i in range(actions.count(name))]  # noqa: E731
    return LabeledData("synthetic-actions", list(actions.classes), split("train"), split("test"), frames,
                       size, _ActionsLoader(actions))


def _read_lines(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / "ucfTrainTestlist" / name):
        if candidate.is_file():
            return candidate
    return None


def is_ucf101_layout(path: Path) -> bool:
    return path.is_dir() and _find(path, "classInd.txt") is not None


class _CaseInsensitive:
    """Relative paths as the list names them -> as they are on disk. The official UCF101 lists spell some
    names differently from the files (HandStandPushups vs HandstandPushups), which matters on case-sensitive
    disks."""

    def __init__(self, root: Path):
        self.root, self.index = root, None

    def __call__(self, relative: str) -> str | None:
        if (self.root / relative).is_file():
            return relative
        if self.index is None:
            self.index = {p.relative_to(self.root).as_posix().lower(): p.relative_to(self.root).as_posix()
                          for p in self.root.rglob("*") if p.is_file()}
        return self.index.get(relative.lower())


def _ucf101(folder: Path, frames: int, size: int, split: int) -> LabeledData:
    class_file = _find(folder, "classInd.txt")
    lists = {name: _find(folder, f"{name}list{split:02d}.txt") for name in ("train", "test")}
    for name, path in lists.items():
        if path is None:
            raise DataError(f"{folder}: no {name}list{split:02d}.txt beside classInd.txt (split {split})")
    names: list[str] = []
    for fields in _read_lines(class_file):
        if len(fields) != 2 or fields[0] != str(len(names) + 1):
            raise DataError(f"{class_file}: expected lines 'number name' numbered 1, 2, ..., got "
                            f"{' '.join(fields)!r}")
        names.append(fields[1])
    classes = {name.lower(): i for i, name in enumerate(names)}
    video_root = next((r for r in (folder, folder / "UCF-101", folder / "UCF101")
                       if any(n.lower() in classes for n in _class_folders(r))), None)
    if video_root is None:
        raise DataError(f"{folder}: no class folders of videos found (looked in it, UCF-101/ and UCF101/)")
    on_disk = _CaseInsensitive(video_root)
    splits = {}
    for name, path in lists.items():
        examples = []
        for fields in _read_lines(path):
            relative = fields[0].replace("\\", "/")
            label = classes.get(relative.split("/")[0].lower())
            if label is None:
                raise DataError(f"{path}: {relative}: its folder is not a class in {class_file.name}")
            found = on_disk(relative)
            if found is None:
                raise DataError(f"{path}: {relative}: no such video under {video_root}")
            examples.append(Example(found, label))
        splits[name] = examples
    return LabeledData(f"ucf101 split {split}: {folder}", names, splits["train"], splits["test"], frames,
                       size, _FileLoader(video_root, frames, size))


def _class_folders(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []


def _list_examples(list_file: Path, root: Path) -> list[tuple[str, str]]:
    """(path relative to root, label text) per `path label` line, checked."""
    pairs = []
    for number, fields in enumerate(_read_lines(list_file), start=1):
        if len(fields) < 2:
            raise DataError(f"{list_file}: line {number}: expected 'path label', got {' '.join(fields)!r}")
        if not (root / fields[0]).is_file():
            raise DataError(f"{list_file}: line {number}: {root / fields[0]}: no such file")
        pairs.append((fields[0], fields[1]))
    if not pairs:
        raise DataError(f"{list_file}: the list names no clips")
    return pairs


def _class_names(texts: set[str]) -> list[str]:
    """Labels sorted numerically when they are all numbers (the original's lists: 1..K), else by name."""
    if all(re.fullmatch(r"-?\d+", t) for t in texts):
        return sorted(texts, key=int)
    return sorted(texts)


def _list_format(list_file: Path, frames: int, size: int, root: str | os.PathLike | None,
                 test_list: str | os.PathLike | None) -> LabeledData:
    base = Path(root) if root else list_file.parent
    train_pairs = _list_examples(list_file, base)
    test_pairs = _list_examples(Path(test_list), base) if test_list else []
    names = _class_names({label for _, label in train_pairs + test_pairs})
    index = {n: i for i, n in enumerate(names)}
    to_examples = lambda pairs: [Example(p, index[label]) for p, label in pairs]  # noqa: E731
    train, test = to_examples(train_pairs), to_examples(test_pairs)
    if not test_list:
        train, test = holdout_split(train)
    elif overlap := {e.id for e in train} & {e.id for e in test}:
        raise DataError(f"{test_list}: {len(overlap)} clips are also in {list_file} (first: "
                        f"{sorted(overlap)[0]})")
    return LabeledData(f"list {list_file}", names, train, test, frames, size, _FileLoader(base, frames, size))


def _shards(source: str, frames: int, size: int) -> LabeledData:
    samples: dict[str, dict] = {}
    found: list[tuple[str, str, str | None]] = []  # (id, label text, split)
    for url in resolve_shards(source):
        for sample in read_shard(url):
            _, meta, where = image_and_meta(sample)
            if "label" not in meta:
                raise DataError(f"{where}: no 'label' in its json metadata "
                                "(labeled shards need one per clip)")
            split = meta.get("split")
            if split not in (None, "train", "test"):
                raise DataError(f"{where}: json 'split' must be 'train' or 'test', got {split!r}")
            clip_id = f"{Path(url).name}/{sample['__key__']}"
            samples[clip_id] = sample
            found.append((clip_id, str(meta["label"]), split))
    if not found:
        raise DataError(f"{source}: the shards hold no clips")
    names = _class_names({label for _, label, _ in found})
    index = {n: i for i, n in enumerate(names)}
    if any(split is not None for _, _, split in found):
        train = [Example(i, index[label]) for i, label, split in found if split != "test"]
        test = [Example(i, index[label]) for i, label, split in found if split == "test"]
    else:
        train, test = holdout_split([Example(i, index[label]) for i, label, _ in found])
    return LabeledData(f"shards {source}", names, train, test, frames, size,
                       _ShardLoader(samples, frames, size))


def open_labeled(spec: str, frames: int, size: int, split: int = 1, root: str | os.PathLike | None = None,
                 test_list: str | os.PathLike | None = None,
                 actions: ActionsConfig | None = None) -> LabeledData:
    """The labeled data `spec` names (see the module docstring), clips of `frames` x `size` x `size`."""
    path = Path(spec)
    if spec == "synthetic-actions":
        data = _actions(frames, size, actions)
    elif is_ucf101_layout(path):
        data = _ucf101(path, frames, size, split)
    elif path.suffix == ".txt" and path.is_file():
        data = _list_format(path, frames, size, root, test_list)
    elif is_shard_source(spec):
        data = _shards(spec, frames, size)
    elif path.is_dir() and any(p.suffix.lower() in VIDEO_SUFFIXES for p in path.rglob("*")):
        raise DataError(f"{spec}: a folder of videos without classInd.txt and train/test lists; labeled "
                        "data is the UCF101 layout, a 'path label' list, labeled shards or "
                        "synthetic-actions")
    else:
        raise DataError(f"{spec}: not labeled data (expected synthetic-actions, a UCF101 folder with "
                        f"classInd.txt, a 'path label' .txt list or labeled shards)")
    if test_list and not spec.endswith(".txt"):
        raise DataError(f"{test_list}: a test list applies only to a 'path label' .txt list, not to {spec}")
    if not data.train or not data.test:
        raise DataError(f"{spec}: the {'train' if not data.train else 'test'} split is empty")
    if train_test := {e.id for e in data.train} & {e.id for e in data.test}:
        raise DataError(f"{spec}: {len(train_test)} clips are in both splits "
                        f"(first: {sorted(train_test)[0]})")
    return data
