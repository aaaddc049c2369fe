import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from videogan.cli import main
from videogan.data.actions import ActionsConfig
from videogan.data.decode import DataError
from videogan.data.labeled import Example, holdout_split, label_subset, open_labeled
from videogan.data.shards import encode_clip, write_shard


def _examples(per_class: dict[int, int]) -> list[Example]:
    return [Example(f"c{label}/clip{i:03d}", label) for label, n in per_class.items() for i in range(n)]


def test_holdout_split_is_stratified_fixed_and_disjoint():
    examples = _examples({0: 10, 1: 20, 2: 5, 3: 1})
    train, test = holdout_split(examples)
    assert {e.id for e in train}.isdisjoint(e.id for e in test)
    assert len(train) + len(test) == len(examples)
    # 20% of each class; a lone clip stays in train
    assert Counter(e.label for e in test) == {0: 2, 1: 4, 2: 1}
    again = holdout_split(list(reversed(examples)))  # by the ids alone, not their order
    assert {e.id for e in again[1]} == {e.id for e in test}


def test_label_fraction_keeps_classes_balanced():
    examples = _examples({k: 16 for k in range(10)})
    for fraction, per_class in [(1.0, 16), (0.5, 8), (0.25, 4), (0.125, 2)]:
        subset = label_subset(examples, fraction, seed=3)
        assert Counter(e.label for e in subset) == {k: per_class for k in range(10)}
        assert set(subset) <= set(examples)
    # the seed picks which
    assert label_subset(examples, 0.125, seed=0) != label_subset(examples, 0.125, seed=1)
    assert label_subset(examples, 0.125, seed=4) == label_subset(examples, 0.125, seed=4)
    assert (Counter(e.label for e in label_subset(_examples({0: 3, 1: 40}), 0.125, 0))
            == {0: 1, 1: 5})  # at least one
    with pytest.raises(ValueError, match="fraction"):
        label_subset(examples, 0.0, 0)


def test_synthetic_actions_splits_never_overlap():
    data = open_labeled("synthetic-actions", 8, 16,
                        actions=ActionsConfig(train_per_class=4, test_per_class=2))
    assert len(data.classes) == 10 and len(data.train) == 40 and len(data.test) == 20
    assert {e.id for e in data.train}.isdisjoint(e.id for e in data.test)
    clip = data.load(data.test[3], "test")
    assert clip.shape == (3, 8, 16, 16) and clip.dtype == torch.uint8


def _stacked_jpeg(path: Path, frames: int, size: int, value: int) -> str:
    image = np.full((frames * size, size, 3), value, np.uint8)
    image[:, : size // 2] = 255 - value
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path.name


def test_original_list_format(tmp_path):
    lines = []
    for i in range(12):
        name = _stacked_jpeg(tmp_path / "frames" / f"v{i}.jpg", frames=4, size=16, value=20 * i)
        lines.append(f"frames/{name} {i % 3 + 1}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    data = open_labeled(str(tmp_path / "list.txt"), frames=4, size=8)
    assert data.classes == ["1", "2", "3"] and len(data.train) + len(data.test) == 12
    assert Counter(e.label for e in data.test) == {0: 1, 1: 1, 2: 1}  # a fixed 20% of each class held out
    assert data.load(data.train[0], "train").shape == (3, 4, 8, 8)

    (tmp_path / "test.txt").write_text("\n".join(lines[:3]) + "\n")
    (tmp_path / "train.txt").write_text("\n".join(lines[3:]) + "\n")
    data = open_labeled(str(tmp_path / "train.txt"), 4, 8, test_list=tmp_path / "test.txt")
    assert [e.id for e in data.test] == [f"frames/v{i}.jpg" for i in range(3)] and len(data.train) == 9
    with pytest.raises(DataError, match="also in"):
        open_labeled(str(tmp_path / "list.txt"), 4, 8, test_list=tmp_path / "test.txt")
    (tmp_path / "bad.txt").write_text("frames/v0.jpg 1\nframes/missing.jpg 2\n")
    with pytest.raises(DataError, match="line 2: .*missing.jpg: no such file"):
        open_labeled(str(tmp_path / "bad.txt"), 4, 8)


def test_labeled_shards(tmp_path):
    clip = np.zeros((4, 8, 8, 3), np.uint8)
    samples = [encode_clip(f"k{i:03d}", clip + i, {"label": ["walk", "run"][i % 2],
                                                   "split": "test" if i < 4 else "train"})
               for i in range(10)]
    write_shard(tmp_path / "shards" / "clips-000000.tar", samples)
    data = open_labeled(str(tmp_path / "shards"), frames=4, size=8)
    assert data.classes == ["run", "walk"] and len(data.test) == 4 and len(data.train) == 6
    assert data.load(data.test[1], "test")[0, 0, 0, 0] == 1
    write_shard(tmp_path / "unlabeled" / "clips-000000.tar", [encode_clip("k0", clip, {})])
    with pytest.raises(DataError, match="no 'label'"):
        open_labeled(str(tmp_path / "unlabeled"), 4, 8)


def test_labeled_shards_by_url_and_joined_sources(tmp_path):
    # Every shard source training accepts (is_shard_source) is labeled-shard data too: file:
    # URLs, pipe:, "a::b".
    clip = np.zeros((4, 8, 8, 3), np.uint8)
    for part in range(2):
        samples = [encode_clip(f"p{part}k{i}", clip + i, {"label": ["walk", "run"][i % 2]})
                   for i in range(10)]
        write_shard(tmp_path / f"clips-{part:06d}.tar", samples)
    for spec in (f"file:{tmp_path}/clips-000000.tar", f"pipe:cat {tmp_path}/clips-000000.tar"):
        data = open_labeled(spec, frames=4, size=8)
        assert data.classes == ["run", "walk"] and len(data.train) + len(data.test) == 10
    joined = open_labeled(f"{tmp_path}/clips-000000.tar::{tmp_path}/clips-000001.tar", frames=4, size=8)
    assert len(joined.train) + len(joined.test) == 20


def test_not_labeled_data(tmp_path):
    with pytest.raises(DataError, match="not labeled data"):
        open_labeled(str(tmp_path / "nothing"), 4, 8)


# ---------------------------------------------------------------------- UCF101's own layout, through finetune

def _ucf101_tree(root: Path, make_video) -> dict[str, list[str]]:
    """A small copy of UCF101's layout: UCF-101/<Class>/v_<Class>_gXX_cYY.avi, ucfTrainTestlist/ with
    classInd.txt and split 1 (train lines 'path label', test lines 'path'); one list name spelled in another
    case, as the real lists spell HandStandPushups for the folder HandstandPushups."""
    classes = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    lists = {"train": [], "test": []}
    for number, name in enumerate(classes, start=1):
        for group in range(1, 5):
            relative = f"{name}/v_{name}_g{group:02d}_c01.avi"
            path = root / "UCF-101" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            made = make_video(f"{name}{group}.avi", count=10, height=24, width=32, seed=number * 10 + group,
                              objects=number)
            made.rename(path)
            listed = relative.replace("Handstand", "HandStand")
            lists["test" if group == 1 else "train"].append(listed if group == 1 else f"{listed} {number}")
    (root / "ucfTrainTestlist").mkdir()
    (root / "ucfTrainTestlist" / "classInd.txt").write_text("".join(f"{i} {c}\n"
                                                                    for i, c in enumerate(classes, 1)))
    for split, lines in lists.items():
        # as shipped: CRLF
        (root / "ucfTrainTestlist" / f"{split}list01.txt").write_text("\r\n".join(lines) + "\r\n")
    return lists


def test_ucf101_layout_works_through_finetune(tmp_path, make_video):
    root = tmp_path / "ucf"
    lists = _ucf101_tree(root, make_video)
    data = open_labeled(str(root), frames=4, size=8, split=1)
    assert data.classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert len(data.train) == 9 and len(data.test) == 3
    assert [e.label for e in data.test] == [0, 1, 2]  # test lines have no label: it comes from the folder
    # found despite the list's spelling
    assert data.test[1].id == "HandstandPushups/v_HandstandPushups_g01_c01.avi"
    with pytest.raises(DataError, match="trainlist02"):
        open_labeled(str(root), 4, 8, split=2)

    out = tmp_path / "out"
    code = main(["finetune", "--init", "random", "--data", str(root), "--mode", "finetune", "--steps", "3",
                 "--batch-size", "4", "--preset", "tiny", "--set", "model.frames=4", "--set", "model.size=8",
                 "--set", "model.d_width=4", "--device", "cpu", "--workers", "0", "--quiet", "--out",
                 str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["num_test"] == 3 and summary["num_train"] == 9
            and summary["classes"][1] == "HandstandPushups")
    assert 0 <= summary["test_accuracy"] <= 1 and (out / "confusion.png").is_file()
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[1].startswith("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi,0,")
    assert len(lists["test"]) == 3
