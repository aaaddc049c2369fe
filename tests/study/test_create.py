import json
import random
from collections import Counter

import av
import numpy as np
import pytest
import torch

from videogan.cli import main
from videogan.config import ConfigError
from videogan.data.decode import DataError
from videogan.media import write_webm
from videogan.study.create import (
    CreateSettings,
    create,
    default_upscale,
    draw_clips,
    frozen_halfway,
    plan_pairs,
    shuffled_frames,
)
from videogan.study.manifest import load_study


def _decode(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_broken_clips_are_broken_copies_of_the_real_one():
    # frame i has value i
    clip = torch.arange(6, dtype=torch.uint8).view(1, 6, 1, 1).expand(3, 6, 2, 2).contiguous()
    for seed in range(20):
        shuffled = shuffled_frames(clip, random.Random(seed))
        order = shuffled[0, :, 0, 0].tolist()
        assert sorted(order) == list(range(6)) and order != list(range(6))
    assert frozen_halfway(clip)[0, :, 0, 0].tolist() == [0, 1, 2, 3, 3, 3]
    two = clip[:, :2]
    assert shuffled_frames(two, random.Random(0))[0, :, 0, 0].tolist() == [1, 0]


def test_default_upscale_is_even_and_brings_clips_to_about_256():
    assert [default_upscale(s) for s in (8, 32, 64, 100, 128, 256, 512)] == [32, 8, 4, 2, 2, 2, 2]


def test_pairs_are_balanced_left_right_and_shuffled():
    names = [f"n{i}" for i in range(9)]
    pairs = plan_pairs(names, [n + "b" for n in names], ["r0", "r1"], ["x0", "x1"], ["shuffled", "frozen"],
                       random.Random(3))
    assert [p.id for p in pairs] == [f"p{i:03d}" for i in range(11)]
    ab = [p for p in pairs if p.kind == "ab"]
    assert Counter(p.left_is for p in ab) in (Counter(a=4, b=5), Counter(a=5, b=4))
    assert {(p.left_is, p.right_is) for p in ab} == {("a", "b"), ("b", "a")}
    catch = [p for p in pairs if p.kind == "catch"]
    assert (sorted(p.left_is for p in catch) == ["broken", "real"]
            and {p.broken for p in catch} == {"shuffled", "frozen"})
    for p in pairs:  # chosen() maps the side clicked to what it was
        assert p.chosen("left") == p.left_is and p.chosen("right") == p.right_is


def test_study_from_data_and_a_run(run_study, tiny_run):
    study = load_study(run_study)
    assert (study.a.kind, study.a.label, study.b.kind, study.b.label, study.b.step) == ("data", "real", "run",
                                                                                        "tiny", 2)
    assert study.real.source == "synthetic"  # catch trials' real clips: the data side
    assert (study.frames, study.size, study.upscale, study.fps) == (4, 8, 4, 8)
    assert Counter(p.kind for p in study.pairs) == Counter(ab=10, catch=2)
    names = study.clip_names()
    assert len(names) == 10 + 10 + 2 + 2 and all(len(n) == 12 for n in names)
    for name in names:  # viewing size in both formats, original size as MP4
        for ext in ("webm", "mp4"):
            assert _decode(run_study / "clips" / f"{name}.{ext}").shape == (4, 32, 32, 3)
        assert _decode(run_study / "clips" / "original" / f"{name}.mp4").shape == (4, 8, 8, 3)
    # nearest-neighbour: each source pixel is a flat 4x4 block (up to compression)
    view = _decode(run_study / "clips" / f"{study.pairs[0].left}.webm").astype(int)
    blocks = view.reshape(4, 8, 4, 8, 4, 3)
    assert np.abs(blocks - blocks.mean(axis=(2, 4), keepdims=True)).mean() < 3


def test_catch_trials_show_a_real_clip_against_its_broken_copy(run_study):
    study = load_study(run_study)
    for p in (p for p in study.pairs if p.kind == "catch"):
        real = p.left if p.left_is == "real" else p.right
        broken = p.right if p.left_is == "real" else p.left
        real_frames = _decode(run_study / "clips" / "original" / f"{real}.mp4").astype(int)
        broken_frames = _decode(run_study / "clips" / "original" / f"{broken}.mp4").astype(int)
        assert np.abs(real_frames[0] - broken_frames[0]).mean() < 3 or p.broken == "shuffled"
        assert np.abs(real_frames - broken_frames).mean() > 1  # visibly different somewhere


def test_same_seed_same_clips_and_another_seed_differs(data_study):
    a = draw_clips("synthetic", 3, 4, 8, seed=0, device=torch.device("cpu"), synthetic=None)
    assert torch.equal(a, draw_clips("synthetic", 3, 4, 8, seed=0, device=torch.device("cpu"),
                                     synthetic=None))
    assert not torch.equal(a, draw_clips("synthetic", 3, 4, 8, seed=1, device=torch.device("cpu"),
                                         synthetic=None))
    study = load_study(data_study)
    assert study.a.kind == study.b.kind == "data" and (study.frames, study.size, study.upscale) == (4, 8, 2)
    assert Counter(p.kind for p in study.pairs) == Counter(ab=4, catch=2)


def test_webm_pads_odd_sizes(tmp_path):
    write_webm(tmp_path / "odd.webm", torch.full((3, 2, 7, 9), 128, dtype=torch.uint8))
    assert _decode(tmp_path / "odd.webm").shape == (2, 8, 10, 3)


def test_study_from_a_pretrained_model(tmp_path):
    """"pretrained:NAME" is a run side: its step comes from the model card, its shape from the card's
    config."""
    from videogan.generation import pretrained

    study = create("pretrained:synthetic", "synthetic", tmp_path / "s",
                   CreateSettings(pairs=2, catch=1, frames=4, upscale=2), progress=False)
    assert (study.a.kind, study.a.label, study.a.step) == ("run", "pretrained:synthetic",
                                                           pretrained.card("synthetic")["steps"])
    assert (study.b.kind, study.real.source) == ("data", "synthetic")
    assert (study.frames, study.size) == (4, pretrained.config("synthetic").model.size)
    assert load_study(tmp_path / "s").a.step == study.a.step


def test_refusals(tmp_path, data_study, tiny_run):
    with pytest.raises(DataError, match="already holds a study"):
        create("synthetic", "synthetic", data_study, CreateSettings(pairs=1, frames=4, size=8),
               progress=False)
    with pytest.raises(DataError, match="makes 8x8 clips, the study is 16x16"):
        create("synthetic", str(tiny_run), tmp_path / "s", CreateSettings(pairs=1, size=16), progress=False)
    with pytest.raises(DataError, match="makes 4 frames, fewer than the study's 8"):
        create(str(tiny_run), "synthetic", tmp_path / "s", CreateSettings(pairs=1, frames=8), progress=False)
    with pytest.raises(DataError, match="catch trials need real data"):
        create(str(tiny_run), "synthetic", tmp_path / "s", CreateSettings(pairs=1, real=str(tiny_run)),
               progress=False)
    with pytest.raises(ConfigError, match="at least 1 pair and 0 or more catch trials"):
        create("synthetic", "synthetic", tmp_path / "s", CreateSettings(pairs=1, catch=-1), progress=False)
    assert not (tmp_path / "s" / "study.json").exists()


def test_cli_create_prints_a_summary_and_errors_are_one_line(tmp_path, tiny_run, capsys):
    out = tmp_path / "cli"
    assert main(["study", "create", "--a", str(tiny_run), "--b", "synthetic", "--pairs", "2", "--catch", "0",
                 "--upscale", "2", "--out", str(out), "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"out": str(out), "pairs": 2, "catch": 0, "frames": 4, "size": 8, "upscale": 2,
                       "a": "tiny", "b": "synthetic"}
    assert len(load_study(out).pairs) == 2
    assert main(["study", "create", "--a", "synthetic", "--b", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope: no such file or folder" in err and len(err.splitlines()) == 1


def test_an_empty_side_is_refused_in_one_line(tmp_path, capsys):
    argv = ["study", "create", "--a", "", "--b", "synthetic", "--out", str(tmp_path / "s"), "--pairs", "2",
            "--frames", "4", "--size", "8"]
    assert main(argv) == 2
    assert "an empty source" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
