"""Tiny studies, made once per session (a few seconds): clips of 4 frames of 8x8, shown at 16x16 or 32x32."""
import shutil
import threading
from pathlib import Path

import pytest

from videogan.config import Config, ModelConfig, TrainConfig
from videogan.study.create import CreateSettings, create
from videogan.study.server import StudyServer
from videogan.training.loop import train


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run trained for 2 steps: enough to have a generator to sample."""
    cfg = Config(model=ModelConfig(frames=4, size=8, g_width=8, d_width=4, z_dim=8),
                 train=TrainConfig(batch_size=4, steps=2, log_every=1, sample_every=0, checkpoint_every=2,
                                   keep_checkpoints=0, num_samples=4, device="cpu"))
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(cfg, run, progress=False)
    return run


@pytest.fixture(scope="session")
def data_study(tmp_path_factory) -> Path:
    """Synthetic data against itself: 4 pairs and 2 catch trials."""
    out = tmp_path_factory.mktemp("studies") / "data"
    create("synthetic", "synthetic", out, CreateSettings(pairs=4, catch=2, frames=4, size=8, upscale=2),
           progress=False)
    return out


@pytest.fixture(scope="session")
def run_study(tmp_path_factory, tiny_run) -> Path:
    """Synthetic data (A) against the tiny run (B): 10 pairs and 2 catch trials, shown at 32x32."""
    out = tmp_path_factory.mktemp("studies") / "run"
    create("synthetic", str(tiny_run), out, CreateSettings(pairs=10, catch=2, upscale=4, label_a="real",
                                                           label_b="tiny"),
           progress=False)
    return out


@pytest.fixture
def fresh_study(data_study, tmp_path) -> Path:
    """A private copy of data_study, to write answers into."""
    return Path(shutil.copytree(data_study, tmp_path / "study"))


@pytest.fixture
def serving():
    """serving(study_dir): a StudyServer on a free local port, serving in a thread; all stopped at
    teardown."""
    started = []

    def serve(study_dir: Path) -> StudyServer:
        srv = StudyServer(study_dir, "127.0.0.1", 0)
        started.append(srv)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return srv

    yield serve
    for srv in started:
        srv.shutdown()
        srv.server_close()
