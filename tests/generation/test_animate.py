import json

import numpy as np
import pytest
import torch
from PIL import Image

from videogan import cli
from videogan.config import Config, ConfigError, ModelConfig, TrainConfig
from videogan.data import SyntheticScenes
from videogan.data.decode import DataError
from videogan.generation.animate import _output_names, animate, load_image, measures
from videogan.generation.loading import load_generator
from videogan.models import build_generator
from videogan.training.loop import train


def _config(stochastic: bool, steps: int) -> Config:
    """A conditional model small enough to learn its first frame in a few seconds (lr raised for the short
    run)."""
    cfg = Config(
        model=ModelConfig(kind="conditional", frames=4, size=8, g_width=16, d_width=8, z_dim=8,
                          stochastic=stochastic, mask_bias_init=-2.0),
        train=TrainConfig(batch_size=8, steps=steps, lr_g=2e-3, lr_d=2e-3, mask_l1_weight=0.0, ema_decay=0.9,
                          log_every=10, sample_every=0, checkpoint_every=0, keep_checkpoints=1, num_samples=4,
                          device="cpu"),
    )
    cfg.data.workers = 0
    return cfg


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("i2v") / "run"
    train(_config(stochastic=False, steps=100), run, progress=False)
    return run


@pytest.fixture(scope="module")
def stochastic_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("i2v") / "run"
    train(_config(stochastic=True, steps=2), run, progress=False)
    return run


def _held_out(n: int = 16) -> torch.Tensor:
    """First frames of synthetic scenes the run never saw (another seed)."""
    return SyntheticScenes(4, 8, seed=1234).clips(0, n)[:, :, 0]


def test_first_frame_matches_the_input_after_short_training(trained_run):
    images = _held_out()
    loaded = load_generator(trained_run)  # EMA weights, BatchNorm statistics from the run's fixed inputs
    torch.manual_seed(0)
    untrained = build_generator(loaded.config.model)
    trained_mae = np.mean([r["first_frame_mae"]
                           for r in measures(animate(loaded.generator, images), images, 1)])
    untrained_mae = np.mean([r["first_frame_mae"] for r in measures(animate(untrained, images), images, 1)])
    assert trained_mae < 0.6 * untrained_mae, (trained_mae, untrained_mae)
    moved = np.mean([r["motion"] for r in measures(animate(loaded.generator, images), images, 1)])
    assert moved > 1.0  # 0-255 levels: not a frozen copy of the input


def test_load_image_crops_the_centre_square_and_area_resizes(tmp_path):
    wide = np.zeros((16, 48, 3), np.uint8)  # left, centre and right thirds: red, green, blue
    wide[:, :16, 0], wide[:, 16:32, 1], wide[:, 32:, 2] = 255, 255, 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    square = load_image(tmp_path / "wide.png", 8)
    assert square.shape == (3, 8, 8) and square.dtype == torch.uint8
    assert square[1].min() == 255 and square[0].max() == 0 and square[2].max() == 0  # only the centre is kept
    small = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    Image.fromarray(small.repeat_interleave(4, 1).repeat_interleave(4, 2).permute(1, 2, 0).numpy()).save(
        tmp_path / "big.png")
    # area averaging of 4x4 blocks undoes the x4 zoom
    assert torch.equal(load_image(tmp_path / "big.png", 8), small)
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    transparent.save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png", 8).min() == 255  # flattened onto white
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match="notes.txt: not an image Pillow can read"):
        load_image(tmp_path / "notes.txt", 8)


def test_animate_command_writes_every_output_and_skips_a_non_image(tmp_path, trained_run, capsys):
    images = _held_out(2).permute(0, 2, 3, 1).numpy()
    # 40x56, not square
    Image.fromarray(np.repeat(np.repeat(images[0], 5, 0), 7, 1)).save(tmp_path / "scene.png")
    Image.fromarray(images[1]).save(tmp_path / "other.jpg", quality=95)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    inputs = [str(tmp_path / n) for n in ("scene.png", "broken.png", "other.jpg")]
    status = cli.main(["animate", str(trained_run), *inputs, "--out", str(tmp_path / "out"), "--quiet",
                       "--upscale", "2"])
    captured = capsys.readouterr()
    assert status == 2  # one input failed; the others were still animated
    errors = captured.err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("videogan: error: ") and "broken.png" in errors[0]
    report = json.loads(captured.out)
    assert [r["input"] for r in report["animated"]] == [inputs[0], inputs[2]] and report["failed"] == 1
    for name in ("scene", "other"):
        folder = tmp_path / "out" / name
        for f in ("video.gif", "video.mp4", "foreground.gif", "mask.gif", "background.png",
                  "side_by_side.gif", "side_by_side.png", "stats.json"):
            assert (folder / f).is_file(), folder / f
        # input + 5 frames of one future, 8 px each, 1 px gaps, x2
        with Image.open(folder / "side_by_side.png") as png:
            assert png.size == (2 * (6 * 9 + 1), 2 * 10)
        with Image.open(folder / "video.gif") as gif:
            assert gif.n_frames == 4 and gif.size == (20, 20)
    assert not (tmp_path / "out" / "broken").exists()


def test_stochastic_futures_and_deterministic_refusal(tmp_path, trained_run, stochastic_run, capsys):
    Image.fromarray(_held_out(1)[0].permute(1, 2, 0).numpy()).save(tmp_path / "a.png")
    assert cli.main(["animate", str(stochastic_run), str(tmp_path / "a.png"), "--samples", "3",
                     "--out", str(tmp_path / "s"), "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)["animated"][0]
    assert record["samples"] == 3 and record["motion_spread"] > 0  # different z, different motion
    with Image.open(tmp_path / "s" / "a" / "video.gif") as gif:
        assert gif.size == (3 * 9 + 1, 10)  # the three futures in a row
    with Image.open(tmp_path / "s" / "a" / "side_by_side.png") as png:
        assert png.size == (6 * 9 + 1, 3 * 9 + 1)  # one row per future
    loaded = load_generator(stochastic_run)
    image = _held_out(1)
    assert torch.equal(animate(loaded.generator, image, 3, seed=5).video,
                       animate(loaded.generator, image, 3, seed=5).video)

    with pytest.raises(ConfigError, match="deterministic"):
        animate(load_generator(trained_run).generator, image, samples=2)
    assert cli.main(["animate", str(trained_run), str(tmp_path / "a.png"), "--samples", "2",
                     "--out", str(tmp_path / "d")]) == 2
    assert "deterministic" in capsys.readouterr().err


def test_animate_refuses_a_noise_only_run(tmp_path, small_config, capsys):
    small_config.train.steps = 1
    train(small_config, tmp_path / "run", progress=False)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert cli.main(["animate", str(tmp_path / "run"), str(tmp_path / "a.png"),
                     "--out", str(tmp_path / "o")]) == 2
    assert "not an image-to-video model" in capsys.readouterr().err


def test_output_folder_names_never_collide():
    assert _output_names(["a.png", "b/a.jpg", "c/a.gif"]) == ["a", "a_2", "a_3"]
    # another input's own stem takes the bumped name: bump again until free
    assert _output_names(["a.png", "b/a.jpg", "a_2.png"]) == ["a", "a_2", "a_2_2"]
    assert _output_names(["a_2.png", "a.png", "b/a.jpg"]) == ["a_2", "a", "a_3"]
    names = _output_names(["x.png", "x_2.png", "y/x.png", "z/x.png", "x_3.png", ".png"])
    assert len(set(names)) == len(names)
