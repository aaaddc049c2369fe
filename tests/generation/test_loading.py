"""generation/loading.py: a generator from a run directory, a checkpoint folder or a shipped model (the
shipped models' own loading is tested with them, in test_pretrained.py)."""
import pytest
import torch

from videogan.generation.loading import load_generator
from videogan.training.checkpoint import CheckpointError, list_checkpoints
from videogan.training.loop import train


@pytest.fixture
def run_dir(tmp_path, small_config):
    small_config.train.steps = 4  # checkpoints at steps 2 and 4
    train(small_config, tmp_path / "run", progress=False)
    return tmp_path / "run"


def test_a_run_directory_gives_its_latest_checkpoint_and_a_checkpoint_folder_itself(run_dir):
    first, latest = list_checkpoints(run_dir)
    loaded = load_generator(run_dir)
    assert (loaded.path, loaded.step, loaded.config.model.frames) == (latest, 4, 4)
    assert not loaded.generator.training  # in eval mode
    assert load_generator(first).step == 2 and load_generator(first).path == first


def test_ema_weights_by_default_live_on_request(run_dir, tmp_path, small_config):
    ema, live = load_generator(run_dir), load_generator(run_dir, weights="live")
    assert (ema.weights, live.weights) == ("ema", "live")
    pairs = zip(ema.generator.parameters(), live.generator.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
    small_config.train.ema_decay, small_config.train.steps = 0.0, 1
    train(small_config, tmp_path / "no_ema", progress=False)
    assert load_generator(tmp_path / "no_ema").weights == "live"
    with pytest.raises(CheckpointError, match="has no EMA weights"):
        load_generator(tmp_path / "no_ema", weights="ema")
