"""The models shipped in videogan/pretrained: they load, sample with the documented shapes, are deterministic
per seed, their float16 storage gives the float32 weights' clips, and their recorded FVD is reproduced by
`evaluate`."""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from videogan import media
from videogan.cli import main
from videogan.config import PRESETS, ConfigError, preset
from videogan.generation import pretrained
from videogan.generation.animate import animate, load_image
from videogan.generation.loading import load_generator, load_pretrained
from videogan.generation.sample import sample
from videogan.metrics.evaluate import Protocol, animated_clips, data_clips, evaluate
from videogan.metrics.i3d import I3DWeightsError, checkpoint_path
from videogan.models import ImageToVideoGenerator
from videogan.training import loop

REPO = Path(__file__).resolve().parents[2]  # model.json names real data relative to the repository
SHIPPED = {"synthetic": "two-stream", "pedestrians": "two-stream", "synthetic-animate": "conditional",
           "people-64": "two-stream", "people-animate": "conditional"}
NAMES = pretrained.names()
# float16 storage against the float32 weights' clips (model.json storage.reference), in 0-255 levels: measured
# at export, at most 1 level anywhere and ~0.02 levels on average; a wrong cast or lost BatchNorm statistics
# would be tens of levels.
MAX_LEVELS, MEAN_LEVELS = 2, 0.1
# The FVD recomputation draws the same clips and noise as the export, so it differs only by float rounding
# (other CPUs' convolution algorithms can move a pixel by a level): 1% of FVD and of |KVD| (+ 0.5 for KVDs
# near 0). Another noise seed at N = 8 moves FVD by hundreds: the tolerance tests reproduction, not the
# model's noise.
FVD_RELATIVE, KVD_ABSOLUTE = 0.01, 0.5


def two_stream_clips(name: str, num: int, seed: int):
    return sample(load_pretrained(name).generator, num=num, seed=seed)


def example_futures(name: str):
    loaded = load_pretrained(name)
    images = torch.stack([load_image(p, loaded.config.model.size) for p in pretrained.examples(name)])
    return images, animate(loaded.generator, images, samples=1, seed=0)


def test_the_promised_models_are_shipped():
    assert set(SHIPPED) <= set(NAMES)
    for name, kind in SHIPPED.items():
        assert pretrained.card(name)["kind"] == kind
    # every model ships inside the package, so together they stay a small part of a wheel
    assert sum((pretrained.folder(n) / f).stat().st_size for n in NAMES
               for f in (pretrained.WEIGHTS_FILE, pretrained.REFERENCE_FILE)) < 12_000_000


@pytest.mark.parametrize("name", NAMES)
def test_card_states_what_the_issue_asks(name):
    card = pretrained.card(name)
    folder = pretrained.folder(name)
    assert card["name"] == name
    # small enough to ship: the wheel carries every model's weights (a few MB each)
    assert card["bytes"] == (folder / pretrained.WEIGHTS_FILE).stat().st_size < 4_000_000
    assert card["steps"] > 0 and card["training_seconds"] > 0
    assert card["command"].startswith(f"videogan train --preset {card['preset']} --out ")
    assert f"--steps {card['steps']}" in card["command"]
    assert card["clip_shape"] == pretrained.config(name).clip_shape
    for key in ("fvd", "fvd_check"):
        assert card[key]["fvd"] > 0 and card[key]["metric"] == f"fvd{card[key]['num']}_16f"
    assert card["fvd"]["num"] == 96  # the quality ladder's protocol (benchmarks/RESULTS.md)
    frames = card["clip_shape"][1]
    if frames > 16:  # also at its own frame count, named by the metric
        own = card["fvd_own_frames"]
        assert own["metric"] == f"fvd96_{frames}f" and own["frames"] == frames and own["fvd"] > 0
        assert own["real"] == card["fvd"]["real"]
    else:
        assert "fvd_own_frames" not in card
    for key in ("fvd", "fvd_own_frames"):  # drawn K > 1 times: the mean, each draw's value, the interval
        if card.get(key, {}).get("repeats"):
            low, high = card[key]["fvd_ci95"]
            draws = card[key]["repeats"]
            assert len(draws) > 1 and low <= card[key]["fvd"] <= high
    row = pretrained.summary(name)
    assert row["fvd"] == card["fvd"]["fvd"] and row["data"] == card["data"]["description"]
    tensors = load_file(folder / pretrained.WEIGHTS_FILE)
    assert {t.dtype for t in tensors.values()} <= {torch.float16, torch.int64}


@pytest.mark.parametrize("name", NAMES)
def test_the_card_names_the_preset_that_trains_it(name):
    """preset(card["preset"]) is the card's config, every field but the thread count (the loader's workers and
    shuffle buffer included), so `videogan train --preset NAME` trains the shipped model again."""
    card = pretrained.card(name)
    assert card["preset"] == name and name in PRESETS
    # pytest names the fields that differ
    assert _recipe(preset(card["preset"])) == _recipe(pretrained.config(name))


def _recipe(cfg) -> dict:
    """A config without the machine's thread count, which a recipe leaves to torch (the cards record 2)."""
    fields = cfg.to_dict()
    del fields["train"]["num_threads"]
    return fields


@pytest.mark.parametrize("name", NAMES)
def test_the_card_command_trains_the_card_config(name, monkeypatch):
    """The card's command line, as `videogan train` reads it, builds the card's config (training stubbed out);
    `--data` points a recipe at other data."""
    seen = []
    monkeypatch.setattr(loop, "train", lambda cfg, out, **kw: seen.append(cfg) or
                        SimpleNamespace(is_main=False, stopped_by_signal=0))
    argv = shlex.split(pretrained.card(name)["command"])
    assert argv[0] == "videogan" and main(argv[1:]) == 0
    assert _recipe(seen[-1]) == _recipe(pretrained.config(name))
    assert main([*argv[1:], "--data", "data/other"]) == 0 and seen[-1].data.source == "data/other"


def test_info_prints_a_shipped_models_preset(capsys):
    assert main(["info", "--preset", "pedestrians"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["preset"] == "pedestrians" and info["config"] == preset("pedestrians").to_dict()
    assert info["config"]["data"]["source"] == "runs/data-vtest-32"  # made by the card's data.prepare
    assert main(["info", "--preset", "pedestrians", "--set", "data.source=elsewhere"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["data"]["source"] == "elsewhere"
    assert main(["info", "--preset", "pedestrians", "--model", "conditional"]) == 2
    assert "preset 'pedestrians' has no image-to-video variant" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES)
def test_loads_and_samples_the_documented_shapes(name):
    loaded = load_generator(pretrained.PREFIX + name)  # what generate / evaluate / animate call
    c, t, h, w = pretrained.card(name)["clip_shape"]
    assert loaded.step == pretrained.card(name)["steps"] and loaded.weights == "ema"
    assert all(p.dtype == torch.float32 for p in loaded.generator.parameters())
    if isinstance(loaded.generator, ImageToVideoGenerator):
        images, out = example_futures(name)
        n = len(images)
        assert n >= 2 and images.shape == (n, c, h, w)
    else:
        n = 3
        out = two_stream_clips(name, n, seed=0)
        assert out.background.shape == (n, c, h, w)
    assert out.video.shape == (n, c, t, h, w) and out.mask.shape == (n, 1, t, h, w)
    assert out.video.abs().max() <= 1 and 0 <= out.mask.min() and out.mask.max() <= 1
    assert out.video.std() > 0.05  # not a blank: trained weights draw something


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_per_seed(name):
    if pretrained.card(name)["kind"] == "conditional":
        images, a = example_futures(name)
        _, b = example_futures(name)
        assert torch.equal(a.video, b.video)
        assert (a.video[0] - a.video[1]).abs().mean() > 0.01  # another input, another clip
        first = media.to_uint8(a.video[:, :, 0]).float()  # [N, 3, S, S]
        # [N, N]: first frame i vs input j
        error = (first[:, None] - images[None].float()).abs().mean((2, 3, 4))
        # each first frame is nearest its own input
        assert torch.equal(error.argmin(1), torch.arange(len(images)))
    else:
        a, b, c = two_stream_clips(name, 2, 7), two_stream_clips(name, 2, 7), two_stream_clips(name, 2, 8)
        assert torch.equal(a.video, b.video) and torch.equal(a.mask, b.mask)
        assert (a.video - c.video).abs().mean() > 0.01


@pytest.mark.parametrize("name", NAMES)
def test_float16_storage_gives_the_float32_clips(name):
    # uint8 [K, 3, T, H, W]
    reference = load_file(pretrained.folder(name) / pretrained.REFERENCE_FILE)["video"]
    k = len(reference)
    if pretrained.card(name)["kind"] == "conditional":
        video = example_futures(name)[1].video[:k]
    else:
        video = two_stream_clips(name, k, seed=0).video
    levels = (media.to_uint8(video).int() - reference.int()).abs()
    assert levels.max() <= MAX_LEVELS and levels.float().mean() <= MEAN_LEVELS


def test_upcast_makes_float16_float32_and_keeps_the_counters():
    stored = {"w": torch.ones(2, dtype=torch.float16), "n": torch.tensor(7, dtype=torch.int64)}
    up = pretrained.upcast(stored)
    assert up["w"].dtype == torch.float32 and torch.equal(up["w"], torch.ones(2))
    assert up["n"].dtype == torch.int64 and up["n"].item() == 7


@pytest.mark.parametrize("name", NAMES)
def test_load_and_summary_read_the_card_once(name, monkeypatch):
    reads = []
    card = pretrained.card
    monkeypatch.setattr(pretrained, "card", lambda n: reads.append(n) or card(n))
    loaded = load_pretrained(name)
    assert reads == [name] and loaded.path == pretrained.folder(name)
    assert loaded.config.clip_shape == pretrained.summary(name)["clip_shape"] and reads == [name, name]


def test_unknown_name_and_missing_weights_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown pretrained model 'nope'; shipped: "):
        load_pretrained("nope")
    with pytest.raises(ConfigError, match="ships only its ema weights"):
        load_generator("pretrained:synthetic", weights="live")


def test_cli_lists_generates_and_animates(tmp_path, capsys):
    assert main(["pretrained", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == NAMES
    assert all(r["steps"] and r["machine"] and r["command"] and r["data"] for r in rows)
    assert main(["pretrained"]) == 0
    text = capsys.readouterr().out
    assert text.count("reproduce: videogan train") == len(NAMES)
    # pedestrians' vtest.avi, the people models' manifests; the latter's held-out clips too
    assert text.count("prepare:  videogan prepare") == sum(bool(r["prepare"]) for r in rows) >= 1
    assert text.count("held out: videogan prepare") == sum(bool(r["prepare_real"]) for r in rows)
    assert main(["generate", "--pretrained", "synthetic", "--num", "2", "--out", str(tmp_path / "g")]) == 0
    assert (tmp_path / "g" / "composite.gif").is_file() and (tmp_path / "g" / "mask.gif").is_file()
    capsys.readouterr()
    assert main(["animate", "--pretrained", "synthetic-animate", "--out", str(tmp_path / "a"),
                 "--quiet"]) == 0
    animated = json.loads(capsys.readouterr().out)["animated"]
    assert len(animated) == len(pretrained.examples("synthetic-animate"))
    assert all(Path(r["out"], "side_by_side.gif").is_file() for r in animated)
    assert main(["generate", "runs/x", "--pretrained", "synthetic", "--out", str(tmp_path / "h")]) == 2
    assert "either a run directory or --pretrained" in capsys.readouterr().err


def test_an_image_to_video_model_is_evaluated_on_first_frames_of_other_clips():
    """evaluate --fake pretrained:synthetic-animate: the model animates first frames of the real data drawn
    with seed + 1 (never the clips the real side holds), in batches of any size, as many as asked."""
    loaded = load_pretrained("synthetic-animate")
    protocol = Protocol(num=5, frames=16, size=32, seed=3)
    clips = list(animated_clips(loaded.generator, "synthetic", protocol, batch_size=2,
                                synthetic=loaded.config.synthetic))
    assert [len(c) for c in clips] == [2, 2, 1] and all(c.dtype == torch.uint8 for c in clips)
    video = torch.cat(clips)  # [5, 3, 16, 32, 32]
    other = Protocol(num=5, frames=16, size=32, seed=4)
    firsts = next(iter(data_clips("synthetic", other, loaded.config.synthetic)))[:5, :, 0]
    same = next(iter(data_clips("synthetic", protocol, loaded.config.synthetic)))[:5, :, 0]
    assert ((video[:, :, 0].float() - firsts.float()).abs().mean()
            < (video[:, :, 0].float() - same.float()).abs().mean())


@pytest.mark.parametrize("name", NAMES)
def test_recorded_fvd_is_reproduced_by_evaluate(name):
    """model.json's fvd_check (N = 8, seed 0, 16 frames) recomputed with `videogan evaluate`'s code; the real
    side's features come from evaluate's cache when present (as `videogan evaluate` does)."""
    try:
        checkpoint_path()
    except I3DWeightsError as e:
        pytest.skip(str(e))
    check = pretrained.card(name)["fvd_check"]
    real = check["real"] if check["real"] == "synthetic" else str(REPO / check["real"])
    if real != "synthetic" and not Path(real).exists():
        data = pretrained.card(name)["data"]
        pytest.skip(f"{check['real']}: the model's real data is not here "
                    f"(made by: {data.get('prepare_real') or data['prepare']})")
    protocol = Protocol(num=check["num"], frames=check["frames"], size=pretrained.config(name).model.size,
                        seed=check["seed"])
    result = evaluate(real, pretrained.PREFIX + name, protocol, batch_size=8, progress=False)
    assert result["fvd"] == pytest.approx(check["fvd"], rel=FVD_RELATIVE)
    assert abs(result["kvd"] - check["kvd"]) <= FVD_RELATIVE * abs(check["kvd"]) + KVD_ABSOLUTE
