import os
from pathlib import Path

import pytest
import torch

from videogan.config import Config, ModelConfig, TrainConfig

torch.set_num_threads(1)  # deterministic and polite on a 2-core CI machine


@pytest.fixture
def small_config() -> Config:
    """A config small enough to train for a few steps in about a second."""
    return Config(
        model=ModelConfig(frames=4, size=8, g_width=8, d_width=4, z_dim=8),
        train=TrainConfig(batch_size=4, steps=4, log_every=1, sample_every=2, checkpoint_every=2,
                          keep_checkpoints=0, num_samples=4, device="cpu"),
    )


@pytest.fixture
def sample_videos_dir() -> Path:
    """The project's shared real videos (never copied into the repository)."""
    candidates = [os.environ.get("VIDEOGAN_SAMPLE_VIDEOS"),
                  Path(__file__).resolve().parents[2] / "shared/data/videos"]
    for c in candidates:
        if c and (Path(c) / "vtest.avi").is_file():
            return Path(c)
    pytest.skip("real sample videos not found: set VIDEOGAN_SAMPLE_VIDEOS or provide ../shared/data/videos")
