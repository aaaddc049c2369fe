import json
import math

import pytest
import torch
from safetensors.torch import load_file

from videogan.checkpoint import CheckpointError, list_checkpoints
from videogan.ema import ema_decay_at, recalibrate_batchnorm, update_ema
from videogan.train import TrainingError, to_model_range, train


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_short_run_gives_finite_losses_and_writes_everything(tmp_path, small_config):
    result = train(small_config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert result.step == 4
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        for key in ("d_loss", "g_loss", "g_adv", "mask_l1", "d_real", "d_fake", "time", "clips_per_second"):
            assert math.isfinite(r[key])
        assert r["g_loss"] == pytest.approx(r["g_adv"] + 0.1 * r["mask_l1"], rel=1e-5)
    assert json.loads((run / "config.json").read_text())["model"]["size"] == 8
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002", "step_00000004"]
    assert (run / "progress" / "step_00000004.gif").is_file()
    assert (run / "progress" / "step_00000004_mask.gif").is_file()


def test_lazy_r1_runs_every_r1_every_steps_and_is_logged_there(tmp_path, small_config):
    small_config.train.r1_weight, small_config.train.r1_every = 1.0, 2
    train(small_config, tmp_path / "run", progress=False)
    rows = _metrics(tmp_path / "run")
    assert [("r1" in r) for r in rows] == [True, False, True, False]  # 0-based steps 0 and 2, logged as 1 and 3
    assert all(math.isfinite(r["r1"]) and r["r1"] > 0 for r in rows if "r1" in r)


def test_r1_is_refused_with_a_negative_weight_or_no_interval(tmp_path, small_config):
    from videogan.config import ConfigError

    for weight, every in ((-1.0, 4), (1.0, 0)):
        small_config.train.r1_weight, small_config.train.r1_every = weight, every
        with pytest.raises(ConfigError, match="train.r1_weight must be >= 0 and train.r1_every >= 1"):
            train(small_config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("augment", ["", "color,translation,cutout"])
def test_resume_equals_the_uninterrupted_run(tmp_path, small_config, augment):
    small_config.train.augment = augment  # augmentation draws are a function of (seed, rank, step) too
    small_config.train.steps = 6
    train(small_config, tmp_path / "full", progress=False)
    small_config.train.steps = 3  # "interrupted" after step 3 (a checkpoint is always written at the end)
    train(small_config, tmp_path / "split", progress=False)
    small_config.train.steps = 6
    train(small_config, tmp_path / "split", resume=True, progress=False)

    full, split = _metrics(tmp_path / "full"), _metrics(tmp_path / "split")
    drop = ("time", "seconds_per_step", "clips_per_second")
    assert [{k: v for k, v in r.items() if k not in drop} for r in split] == \
           [{k: v for k, v in r.items() if k not in drop} for r in full]
    for name in ("generator", "generator_ema", "discriminator"):
        a = load_file(tmp_path / "full" / "checkpoints" / "step_00000006" / f"{name}.safetensors")
        b = load_file(tmp_path / "split" / "checkpoints" / "step_00000006" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_one_stream_trains(tmp_path, small_config):
    small_config.model.kind = "one-stream"
    small_config.train.steps = 2
    train(small_config, tmp_path / "run", progress=False)
    assert all(r["mask_l1"] == 0 for r in _metrics(tmp_path / "run"))


def test_refuses_to_overwrite_or_resume_nothing(tmp_path, small_config):
    small_config.train.steps = 2
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(small_config, tmp_path / "run", resume=True, progress=False)
    train(small_config, tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        train(small_config, tmp_path / "run", progress=False)
    small_config.model.g_width = 16
    with pytest.raises(CheckpointError, match="cannot change the model"):
        train(small_config, tmp_path / "run", resume=True, progress=False)


def test_to_model_range_maps_uint8_to_minus_one_one():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8).reshape(1, 1, 1, 1, 3)
    y = to_model_range(x, torch.device("cpu"))
    assert y.dtype == torch.float32 and y.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)


def test_tensorboard_events_when_installed(tmp_path, small_config):
    pytest.importorskip("tensorboard", reason="optional extra: pip install 'videogan[tensorboard]'")
    small_config.train.steps = 2
    train(small_config, tmp_path / "run", progress=False)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_ema_update_is_a_moving_average():
    model, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(3.0)
        ema.weight.fill_(1.0)
    update_ema(ema, model, decay=0.75)
    assert torch.allclose(ema.weight, torch.full((2, 2), 1.5))  # 0.75 * 1 + 0.25 * 3
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1) and ema_decay_at(10**6, 0.999) == 0.999


def test_recalibrated_batchnorm_statistics_are_the_generators_own(small_config):
    from videogan.models import build_generator

    g = build_generator(small_config.model).eval()
    recalibrate_batchnorm(g, batches=4, batch_size=8, seed=3)
    bn = g.foreground_stream.net[1]
    gen = torch.Generator().manual_seed(3)
    zs = torch.cat([torch.randn(8, g.z_dim, generator=gen) for _ in range(4)])
    feats = g.foreground_stream.net[0](zs[:, :, None, None, None])  # the input of that BatchNorm
    assert torch.allclose(bn.running_mean, feats.mean((0, 2, 3, 4)), atol=1e-5)
    assert bn.momentum == 0.1 and not g.training
    before = {k: v.clone() for k, v in g.state_dict().items()}
    recalibrate_batchnorm(g, batches=4, batch_size=8, seed=3)  # deterministic
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())


def test_without_ema_there_is_no_ema_file(tmp_path, small_config):
    small_config.train.ema_decay = 0.0
    small_config.train.steps = 1
    train(small_config, tmp_path / "run", progress=False)
    assert not list((tmp_path / "run").rglob("generator_ema.safetensors"))
