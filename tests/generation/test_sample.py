import json

import av
import pytest
import torch

from videogan import load_generator, sample, save_samples
from videogan.media import to_uint8
from videogan.training.loop import train


@pytest.fixture
def run_dir(tmp_path, small_config):
    small_config.model.frames, small_config.model.size = 8, 16
    small_config.train.steps = 2
    train(small_config, tmp_path / "run", progress=False)
    return tmp_path / "run"


def _read(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_generate_writes_videos_that_read_back(run_dir, tmp_path):
    loaded = load_generator(run_dir)
    assert loaded.step == 2 and loaded.config.model.frames == 8
    out = sample(loaded.generator, num=3, seed=0)
    stats = save_samples(out, tmp_path / "out")
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"composite.gif", "composite.mp4", "foreground.gif", "masked_foreground.gif", "mask.gif",
            "background.png", "clips", "stats.json"} <= names
    frames = _read(tmp_path / "out" / "clips" / "clip_000.mp4")
    assert len(frames) == 8 and frames[0].shape == (16, 16, 3)
    grid_frames = _read(tmp_path / "out" / "composite.mp4")
    # 2x2 grid, 1px padding
    assert len(grid_frames) == 8 and grid_frames[0].shape == (2 * 17 + 2, 2 * 17 + 2, 3)
    assert len(list((tmp_path / "out" / "clips").iterdir())) == 3
    assert json.loads((tmp_path / "out" / "stats.json").read_text()) == stats
    assert 0 <= stats["mask_mean"] <= 1 and 0 <= stats["motion_in_mask"] <= 1


def test_same_seed_same_clips_different_seed_different(run_dir):
    g = load_generator(run_dir).generator
    a, b, c = sample(g, 4, seed=1), sample(g, 4, seed=1), sample(g, 4, seed=2)
    assert torch.equal(a.video, b.video) and not torch.equal(a.video, c.video)
    # Batch statistics are a choice, and leave the running statistics untouched.
    before = {k: v.clone() for k, v in g.state_dict().items()}
    sample(g, 4, seed=1, batchnorm="batch")
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())


def test_fixed_pixel_mapping():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    assert to_uint8(x).tolist() == [0, 128, 255, 255]
    assert to_uint8(torch.tensor([0.0, 1.0]), 0.0, 1.0).tolist() == [0, 255]


def test_one_stream_samples_have_no_layers(tmp_path, small_config):
    small_config.model.kind = "one-stream"
    small_config.train.steps = 1
    train(small_config, tmp_path / "run", progress=False)
    out = sample(load_generator(tmp_path / "run").generator, num=2, seed=0)
    assert out.mask is None and out.background is None and torch.equal(out.foreground, out.video)
    stats = save_samples(out, tmp_path / "out")
    assert stats["mask_mean"] is None
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"composite.gif", "composite.mp4", "clips"} <= names and "mask.gif" not in names
