"""`make_source`: which dataset each kind of `data.source` selects, and the train command on each."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from videogan.cli import main
from videogan.config import Config, DataConfig
from videogan.data import ShardClips, StackedList, SyntheticScenes, VideoClips, make_source
from videogan.data.decode import DataError
from videogan.data.shards import encode_clip, write_shard


def config(source: str, root: str = "") -> Config:
    cfg = Config()
    cfg.model.frames, cfg.model.size = 4, 8
    cfg.data = DataConfig(source=source, root=root, workers=0, shuffle_buffer=2)
    return cfg


def test_each_kind_of_source(make_video, tmp_path):
    clip = np.zeros((4, 8, 8, 3), np.uint8)
    (tmp_path / "shards").mkdir()
    for i in range(2):
        write_shard(tmp_path / "shards" / f"clips-{i:06d}.tar", [encode_clip(f"{i:07d}_00000", clip, {})])
    (tmp_path / "frames").mkdir()
    Image.fromarray(np.zeros((32, 8, 3), np.uint8)).save(tmp_path / "frames" / "a.jpg")
    (tmp_path / "list.txt").write_text("a.jpg\n")
    (tmp_path / "videos").mkdir()
    make_video("videos/a.mp4", count=8, height=32, width=32)

    assert isinstance(make_source(config("synthetic")), SyntheticScenes)
    for source in ("shards", "shards/clips-000000.tar", "shards/clips-{000000..000001}.tar"):
        assert isinstance(make_source(config(str(tmp_path / source))), ShardClips), source
    assert isinstance(make_source(config("https://example.com/clips-{000000..000009}.tar")), ShardClips)
    assert isinstance(make_source(config("pipe:cat /nowhere/clips-000000.tar")), ShardClips)
    assert isinstance(make_source(config(str(tmp_path / "list.txt"), root=str(tmp_path / "frames"))),
                      StackedList)
    assert isinstance(make_source(config(str(tmp_path / "videos"))), VideoClips)
    with pytest.raises(DataError, match="nowhere: no such file or folder"):
        make_source(config(str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match="applies only to a LIST.txt"):
        make_source(config(str(tmp_path / "shards"), root=str(tmp_path)))
    for source in (tmp_path / "shards", tmp_path / "videos"):
        batch = next(make_source(config(str(source))).batches(0, 2))
        assert batch.shape == (2, 3, 4, 8, 8)


def test_train_on_the_original_list_format(tmp_path, capsys):
    root = tmp_path / "frames-stable-many"
    root.mkdir()
    for k in range(3):  # 128 px wide, 128 px per frame, as the authors' golf data
        pixels = np.random.default_rng(k).integers(0, 255, (128 * 6, 128, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{k}.jpg")
    (tmp_path / "golf.txt").write_text("0.jpg\n1.jpg\n2.jpg\n")
    code = main(["train", "--out", str(tmp_path / "run"), "--data", str(tmp_path / "golf.txt"), "--root",
                 str(root), "--steps", "1", "--quiet", "--device", "cpu", "--set", "model.frames=4", "--set",
                 "model.size=8", "--set", "model.g_width=8", "--set", "model.d_width=4", "--set",
                 "train.batch_size=2", "--set", "data.workers=0", "--set", "train.sample_every=0"])
    assert code == 0 and json.loads(capsys.readouterr().out)["step"] == 1
    saved = json.loads(Path(tmp_path / "run" / "config.json").read_text())["data"]
    assert saved["source"] == str(tmp_path / "golf.txt") and saved["root"] == str(root)
