import json

import cv2
import numpy as np
import pytest
import torch

from videogan.cli import main
from videogan.config import Config, ModelConfig
from videogan.models import Discriminator, build_generator
from videogan.representation.features import (
    extract,
    feature_shape,
    load_discriminator,
    pooled,
    recalibrate_batchnorm,
)
from videogan.training.checkpoint import save_checkpoint
from videogan.training.ema import cumulative_batchnorm

SMALL = ModelConfig(frames=4, size=8, d_width=4, g_width=8, z_dim=8)


def _run_dir(tmp_path, model: ModelConfig = SMALL):
    """A run directory with one checkpoint whose D has recognisable weights."""
    cfg = Config(model=model)
    d = Discriminator(model)
    with torch.no_grad():
        d.classifier.bias.fill_(0.5)
        d.features[0].weight.mul_(3.0)
    save_checkpoint(tmp_path / "run", 7, cfg, generator=build_generator(model).state_dict(),
                    discriminator=d.state_dict(), optimizers={}, rng={"torch": torch.get_rng_state()})
    return tmp_path / "run", d


def test_feature_shape_follows_the_architecture():
    assert feature_shape(ModelConfig()) == (512, 2, 4, 4)  # paper: 32 frames of 64x64, D 64..512
    assert feature_shape(ModelConfig(frames=16, size=32, d_width=32)) == (128, 2, 4, 4)  # the tiny preset
    assert feature_shape(SMALL) == (4, 2, 4, 4)


def test_load_discriminator_from_a_run_or_random(tmp_path):
    run, d = _run_dir(tmp_path)
    loaded = load_discriminator(str(run))
    assert loaded.step == 7 and loaded.model == SMALL and loaded.source.endswith("step_00000007")
    assert torch.equal(loaded.discriminator.features[0].weight, d.features[0].weight)
    a, b = load_discriminator("random", SMALL, seed=1), load_discriminator("random", SMALL, seed=1)
    assert torch.equal(a.discriminator.features[0].weight, b.discriminator.features[0].weight) and a.step == 0
    assert not torch.equal(a.discriminator.features[0].weight,
                           load_discriminator("random", SMALL, seed=2).discriminator.features[0].weight)


def test_extract_is_the_map_before_the_classifier_in_eval_mode():
    d = Discriminator(SMALL)
    clips = torch.randint(0, 256, (5, 3, 4, 8, 8), dtype=torch.uint8)
    maps = extract(d, clips, batch_size=2)
    assert maps.shape == (5, *feature_shape(SMALL)) and not d.training
    with torch.no_grad():
        expected = d.features(clips.float() / 127.5 - 1)
    assert torch.allclose(maps, expected, atol=1e-6)
    logits = d.classifier(maps).flatten(1)  # the map is exactly what D's real/fake layer reads
    assert torch.allclose(logits, d(clips.float() / 127.5 - 1), atol=1e-6)
    assert torch.allclose(pooled(maps), maps.mean((2, 3, 4)))


def test_recalibrated_batchnorm_statistics_are_those_of_the_clips():
    # two stages: conv, LeakyReLU, conv, BatchNorm, ...
    d = Discriminator(ModelConfig(frames=4, size=16, d_width=4))
    clips = torch.randint(0, 256, (6, 3, 4, 16, 16), dtype=torch.uint8)
    norm = d.features[3]
    assert isinstance(norm, torch.nn.BatchNorm3d)
    recalibrate_batchnorm(d, clips, batch_size=6)  # one batch: running stats = its statistics exactly
    with torch.no_grad():
        before = d.features[:3](clips.float() / 127.5 - 1)  # the input of the first BatchNorm
    assert torch.allclose(norm.running_mean, before.mean((0, 2, 3, 4)), atol=1e-5)
    assert torch.allclose(norm.running_var, before.var((0, 2, 3, 4), unbiased=True), rtol=1e-3)
    assert norm.momentum == 0.1 and not d.training


def test_cumulative_batchnorm_restores_momenta_and_mode():
    d = Discriminator(ModelConfig(frames=4, size=16, d_width=4)).eval()
    norm = d.features[3]
    norm.momentum = 0.3
    norm.running_mean.fill_(5.0)
    with pytest.raises(RuntimeError), cumulative_batchnorm(d) as norms:
        assert norms == [norm] and norm.momentum is None and d.training
        assert torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))  # fresh statistics
        raise RuntimeError
    assert norm.momentum == 0.3 and not d.training  # restored, even after an error
    with cumulative_batchnorm(torch.nn.Linear(2, 2)) as norms:
        assert norms == []


def test_features_command_writes_ids_labels_and_both_versions(tmp_path, capsys):
    run, _ = _run_dir(tmp_path)
    lines = []
    for i in range(10):
        image = np.full((4 * 16, 16, 3), 25 * i, np.uint8)
        cv2.imwrite(str(tmp_path / f"v{i}.jpg"), image)
        lines.append(f"v{i}.jpg {['walk', 'run'][i % 2]}")
    (tmp_path / "list.txt").write_text("\n".join(lines))
    out = tmp_path / "f.npz"
    assert main(["features", str(run), str(tmp_path / "list.txt"), "--out", str(out), "--device", "cpu",
                 "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["step"] == 7 and printed["map_shape"] == [4, 2, 4, 4] and printed["clips"] == 10
    f = np.load(out)
    assert f["flat"].shape == (10, 4 * 2 * 4 * 4) and f["pooled"].shape == (10, 4)
    assert np.allclose(f["pooled"], f["flat"].reshape(10, 4, -1).mean(-1), atol=1e-6)
    assert (sorted(f["ids"]) == sorted(f"v{i}.jpg" for i in range(10))
            and list(f["classes"]) == ["run", "walk"])
    assert list(f["split"]).count("test") == 2 and list(f["map_shape"]) == [4, 2, 4, 4]
    by_id = dict(zip(f["ids"], f["labels"], strict=True))
    assert by_id["v1.jpg"] == 0 and by_id["v2.jpg"] == 1


def test_features_of_a_missing_run(tmp_path, capsys):
    assert (main(["features", str(tmp_path / "none"), "synthetic-actions", "--out", str(tmp_path / "f.npz")])
            == 2)
    assert "no such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["x.npz"])
def test_nothing_written_on_error(tmp_path, bad):
    main(["features", str(tmp_path / "none"), "synthetic-actions", "--out", str(tmp_path / bad)])
    assert not (tmp_path / bad).exists()
