import json
import re

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from videogan.cli import main
from videogan.config import Config, ConfigError, ModelConfig
from videogan.data.actions import ActionsConfig
from videogan.models import Discriminator, build_generator
from videogan.representation.features import ClipSplit, extract, feature_shape, load_discriminator
from videogan.representation.finetune import (
    ActionClassifier,
    FinetuneSettings,
    Splits,
    accuracy_report,
    confusion_matrix,
    draw_confusion,
    finetune,
    frozen_features,
    make_head,
)
from videogan.training.checkpoint import save_checkpoint

SMALL = ModelConfig(frames=4, size=8, d_width=4, g_width=8, z_dim=8)


@pytest.mark.parametrize("k", [2, 101])
def test_head_has_the_original_shape_for_k_classes(k):
    paper = ModelConfig()
    width, core_frames, h, w = feature_shape(paper)
    assert (width, core_frames, h, w) == (512, 2, 4, 4)  # the paper's 512 x 2 x 4 x 4 map
    head = make_head(width, core_frames, k)
    assert isinstance(head[0], torch.nn.Dropout3d) and head[0].p == 0.5
    assert head[1].weight.shape == (k, 512, 2, 4, 4) and head[1].kernel_size == (2, 4, 4)
    model = ActionClassifier(Discriminator(SMALL).features, make_head(*feature_shape(SMALL)[:2], k)).eval()
    assert model(torch.zeros(3, 3, 4, 8, 8)).shape == (3, k)


def test_confusion_and_accuracy_report():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    predictions = torch.tensor([0, 1, 1, 1, 0, 0])
    cm = confusion_matrix(labels, predictions, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    report = accuracy_report(labels, predictions, ["a", "b", "c", "d"])
    assert report["accuracy"] == pytest.approx(3 / 6)
    assert report["per_class_accuracy"] == {"a": 0.5, "b": pytest.approx(2 / 3), "c": 0.0, "d": None}
    assert report["mean_class_accuracy"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    image = draw_confusion(cm, ["a", "b", "c", "d"], "title")
    assert image.size[0] > 4 * 6 and image.mode == "RGB"


def _bright_dark(n: int, flipped: bool, size: int = 8) -> ClipSplit:
    """Class 1 = bright clips, class 0 = dark ones; `flipped`: the same clips with the labels the other way
    round."""
    brightness = torch.arange(n) % 2
    clips = (brightness * 200 + 20).to(torch.uint8)[:, None, None, None,
                                                    None].expand(n, 3, 4, size, size).contiguous()
    labels = (1 - brightness) if flipped else brightness
    return ClipSplit(clips, labels.long(), [f"{'test' if flipped else 'train'}/{i}" for i in range(n)], [])


@pytest.mark.parametrize("mode", ["linear", "finetune"])
def test_accuracy_is_measured_on_the_test_split(tmp_path, mode):
    # Train and test hold the same two kinds of clip with opposite labels: a model that learned the training
    # split is right on it and wrong on every test clip, so a test accuracy of 0 proves which split is scored.
    splits = Splits(["dark", "bright"], _bright_dark(16, flipped=False), _bright_dark(10, flipped=True),
                    "bright-dark")
    s = FinetuneSettings(init="random", mode=mode, steps=40, batch_size=8, lr=5e-3, model=SMALL, seed=1)
    summary = finetune(s, tmp_path, splits=splits, progress=False)
    assert summary["train_accuracy"] == 1.0
    assert summary["test_accuracy"] == 0.0 and summary["num_test"] == 10
    assert summary["per_class_accuracy"] == {"dark": 0.0, "bright": 0.0}
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["test_accuracy"] == 0.0 and saved["confusion"] == [[0, 5], [5, 0]]
    assert Image.open(tmp_path / "confusion.png").size[0] > 20
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 11


def test_runs_sharing_cached_features_save_the_batchnorm_statistics_of_those_features(tmp_path):
    # The second linear run with the same key reuses the first one's features: its D must also get the
    # BatchNorm statistics they were computed with (re-estimated on the training clips), not the fresh D's
    # mean 0 / variance 1.
    model = ModelConfig(frames=4, size=16, d_width=4, g_width=8, z_dim=8)  # two stages: D has a BatchNorm
    splits = Splits(["dark", "bright"], _bright_dark(16, False, 16), _bright_dark(10, True, 16),
                    "bright-dark")
    saved = []
    for i, fraction in enumerate((1.0, 0.5)):
        s = FinetuneSettings(init="random", mode="linear", steps=2, batch_size=8, model=model,
                             label_fraction=fraction)
        finetune(s, tmp_path / str(i), splits=splits, progress=False)
        saved.append({k: v for k, v in load_file(tmp_path / str(i) / "classifier.safetensors").items()
                      if "running" in k})
    assert len(splits.features) == 1 and saved[0]
    assert not any(torch.equal(v, torch.ones_like(v)) for k, v in saved[0].items()
                   if k.endswith("running_var"))
    for k, v in saved[0].items():
        assert torch.equal(saved[1][k], v), k
    # and the cached features are those of D with these statistics
    loaded = load_discriminator("random", model, seed=0)
    train, test = frozen_features(loaded, splits, 0, "data")
    assert torch.equal(train, extract(loaded.discriminator, splits.train.clips))
    assert torch.equal(test, extract(loaded.discriminator, splits.test.clips))


def test_label_fraction_and_seed_reach_the_run(tmp_path):
    s = FinetuneSettings(init="random", mode="linear", steps=2, batch_size=4, model=SMALL,
                         label_fraction=0.25, actions=ActionsConfig(train_per_class=8, test_per_class=1),
                         workers=0)
    summary = finetune(s, tmp_path / "a", progress=False)
    assert summary["num_train"] == 20 and summary["num_train_available"] == 80 and summary["num_test"] == 10
    assert summary["chance"] == pytest.approx(0.1) and summary["label_fraction"] == 0.25


def test_a_tiny_run_on_synthetic_actions_beats_chance(tmp_path, capsys):
    # A real GAN pretraining takes minutes (benchmarks/finetune_experiment.py); here the run's D is given
    # motion features by hand instead: its first layer takes differences of (randomly filtered) consecutive
    # frames, so the static backgrounds cancel and only the moving object is left. Through the whole pipeline
    # (checkpoint -> features -> new head -> test split) such a D must beat chance (10 classes) clearly; a
    # random one does not.
    model = ModelConfig(frames=8, size=16, d_width=8, g_width=16, z_dim=8)
    torch.manual_seed(0)
    d = Discriminator(model)
    with torch.no_grad():
        w = d.features[0].weight  # [C, 3, 4, 4, 4]: (out, colour, time, y, x)
        spatial = torch.randn(w.shape[0], 3, 4, 4) * 0.1
        w.zero_()
        w[:, :, 1], w[:, :, 2] = spatial, -spatial
    save_checkpoint(tmp_path / "run", 1, Config(model=model), generator=build_generator(model).state_dict(),
                    discriminator=d.state_dict(), optimizers={}, rng={"torch": torch.get_rng_state()})
    actions = ActionsConfig(train_per_class=20, test_per_class=10)
    accuracy = {}
    for init in (str(tmp_path / "run"), "random"):
        s = FinetuneSettings(init=init, mode="linear", steps=200, batch_size=16, lr=1e-3, model=model,
                             actions=actions, workers=0)
        accuracy[init] = finetune(s, tmp_path / "out", progress=False)["test_accuracy"]
    # 100 test clips: 18 or more right by chance alone has probability ~0.01 (measured here:
    # 0.24 against 0.07).
    assert accuracy[str(tmp_path / "run")] >= 0.18
    assert accuracy[str(tmp_path / "run")] > accuracy["random"] + 0.08


def test_cli_rejects_bad_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["finetune", "--init", "random", "--data", "synthetic-actions", "--label-fraction", "3/2",
              "--out", str(tmp_path)])
    assert e.value.code == 2 and "fraction in (0, 1]" in capsys.readouterr().err
    code = main(["finetune", "--init", str(tmp_path / "no-run"), "--data", "synthetic-actions", "--out",
                 str(tmp_path / "o")])
    assert code == 2 and "no such file or directory" in capsys.readouterr().err
    code = main(["finetune", "--init", str(tmp_path), "--preset", "tiny", "--data", "synthetic-actions",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "--preset and --set" in capsys.readouterr().err


@pytest.mark.parametrize("changes,message", [
    ({"steps": 0}, "steps=0: must be an integer >= 1"),
    ({"steps": 10**23}, "steps=100000000000000000000000: must be an integer of at most 2**53"),
    ({"lr": float("nan")}, "lr=nan: must be a finite number > 0"),
    ({"eval_every": -1}, "eval_every=-1: must be an integer >= 0"),
    ({"workers": -1}, "workers=-1: must be an integer >= 0"),
    ({"dropout": 1.0}, "dropout=1.0: must be a finite number in [0, 1)"),
    ({"model": ModelConfig(z_dim=0)}, "model.z_dim=0: must be an integer in [1, 4096]"),
    ({"model": ModelConfig(frames=1)}, "model.frames=1: must be an integer in [2, 1024]"),
])
def test_settings_out_of_range_are_refused_before_anything_is_written(tmp_path, changes, message):
    s = FinetuneSettings(init="random", steps=2, batch_size=4, model=SMALL, workers=0)
    for name, value in changes.items():
        setattr(s, name, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        finetune(s, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_out_of_range_values_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    base = ["finetune", "--init", "random", "--data", "synthetic-actions", "--out", str(out), "--quiet"]
    assert main([*base, "--set", "model.z_dim=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.z_dim=0: must be an integer in [1, 4096]" in err and len(err.splitlines()) == 1
    for flag in ("--eval-every", "--workers"):
        with pytest.raises(SystemExit) as e:
            main([*base, flag, "-1"])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and f"argument {flag}: expected 0 or a positive integer" in err
    assert not out.exists()
