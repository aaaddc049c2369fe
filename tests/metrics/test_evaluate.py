"""The FVD/KVD protocol and its plumbing, with a small stand-in for I3D (the real network is tested in
test_i3d.py)."""
import json

import numpy as np
import pytest
import torch

from videogan.cli import main
from videogan.metrics import evaluate as ev
from videogan.metrics.evaluate import Protocol, evaluate, metric_name, to_i3d_input
from videogan.training.loop import train


def test_i3d_input_takes_the_first_frames_resized_to_224_in_model_range():
    clips = torch.zeros(2, 3, 20, 32, 48, dtype=torch.uint8)
    clips[:, :, :16] = 255
    x = to_i3d_input(clips, 16)
    assert x.shape == (2, 3, 16, 224, 224) and x.dtype == torch.float32
    assert torch.allclose(x, torch.ones(()), atol=1e-6)  # only the first 16 frames, all white
    assert torch.allclose(to_i3d_input(clips[:, :, 16:], 4), -torch.ones(()), atol=1e-6)
    with pytest.raises(ValueError, match="fewer than the 24"):
        to_i3d_input(clips, 24)


def test_metric_names_encode_the_protocol():
    assert metric_name("fvd", 2048, 16) == "fvd2048_16f"


def test_result_records_the_protocol_and_real_features_are_cached(stand_in):
    protocol = Protocol(num=12, frames=4, size=16, seed=3)
    first = evaluate("synthetic", "synthetic", protocol, batch_size=5, progress=False, i3d=stand_in)
    assert first["metric"] == "fvd12_4f" and not first["real_from_cache"]
    assert first["protocol"] == {**vars(protocol), "i3d_weights_sha256": "stand-in",
                                 "videogan_version": first["protocol"]["videogan_version"]}
    assert np.isfinite(first["fvd"]) and first["fvd"] >= 0 and np.isfinite(first["kvd"])
    again = evaluate("synthetic", "synthetic", protocol, batch_size=4, progress=False, i3d=stand_in)
    assert again["real_from_cache"] and again["fvd"] == pytest.approx(first["fvd"])
    other = evaluate("synthetic", "synthetic", Protocol(num=12, frames=4, size=16, seed=4), batch_size=4,
                     progress=False, i3d=stand_in)
    assert not other["real_from_cache"]  # another protocol, another cache entry


def test_evaluate_fingerprints_the_real_data_and_classifies_the_fake_once(stand_in, monkeypatch):
    calls = {"data_fingerprint": 0, "is_run_dir": 0}
    for name in calls:
        original = getattr(ev, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(ev, name, counted)
    result = evaluate("synthetic", "synthetic", Protocol(num=4, frames=4, size=16), batch_size=4,
                      progress=False, i3d=stand_in, cache=False)
    # is_run_dir: evaluate's own check of the fake, then clip_source's dispatch of each side (real, fake)
    assert calls == {"data_fingerprint": 1, "is_run_dir": 3}
    assert result["real"] == ev.data_fingerprint("synthetic")


def test_a_source_is_closer_to_itself_than_to_a_broken_copy(stand_in, monkeypatch):
    """Real vs disjoint real (the floor) against real vs darkened real (what the stand-in surely sees;
    the real I3D's sensitivity to motion is the quality ladder's job, benchmarks/RESULTS.md)."""
    protocol = Protocol(num=48, frames=4, size=16)
    floor = evaluate("synthetic", "synthetic", protocol, batch_size=16, progress=False, i3d=stand_in)
    real_clips = ev.clip_source

    def darkened(spec, fake_protocol, batch_size, device, synthetic=None):  # the fake side only (seed + 1)
        for clips in real_clips(spec, fake_protocol, batch_size, device, synthetic):
            yield clips // 4 if fake_protocol.seed != protocol.seed else clips

    monkeypatch.setattr(ev, "clip_source", darkened)
    broken = evaluate("synthetic", "synthetic", protocol, batch_size=16, progress=False, i3d=stand_in,
                      cache=False)
    assert broken["fvd"] > 5 * floor["fvd"] and broken["kvd"] > 5 * abs(floor["kvd"])


def test_evaluate_a_run_and_the_cli_writes_json(stand_in, small_config, tmp_path, capsys):
    small_config.model.frames = 4
    train(small_config, tmp_path / "run", progress=False)
    out = tmp_path / "result.json"
    assert main(["evaluate", "--real", "synthetic", "--fake", str(tmp_path / "run"), "--num", "8",
                 "--frames", "4", "--batch-size", "4", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert printed["protocol"]["size"] == small_config.model.size  # real data read at the run's size
    assert printed["real"]["synthetic"] == vars(small_config.synthetic)  # and the run's own scene settings
    assert printed["metric"] == "fvd8_4f" and printed["fake"] == str(tmp_path / "run")


def test_real_jpeg_clips_are_decoded_with_the_exact_inverse_dct(tmp_path):
    """The protocol's real pixels do not follow training's data.fast_dct (on by default): FVD stays
    comparable."""
    from videogan.data.shards import decode_image, encode_clip, write_shard

    rng = np.random.default_rng(0)
    clip = np.clip(rng.normal(128, 60, (16, 32, 32, 3)), 0, 255).astype(np.uint8)
    sample = encode_clip("0000000_00000", clip, {}, quality=85)
    write_shard(tmp_path / "clips-000000.tar", [sample])

    def decoded(fast_dct: bool) -> torch.Tensor:  # [3, T, S, S], as the loader lays a clip out
        return torch.from_numpy(decode_image(sample["jpg"], fast_dct=fast_dct)
                                .reshape(16, 32, 32, 3)).permute(3, 0, 1, 2)

    exact, fast = decoded(False), decoded(True)
    assert not torch.equal(exact, fast)  # the test can tell the two decoders apart
    clips = next(iter(ev.data_clips(str(tmp_path), Protocol(num=1, frames=16, size=32), batch_size=1)))
    assert torch.equal(clips[0], exact)


def test_the_real_side_draws_a_small_data_set_without_replacement(tmp_path):
    """N clips of a data set of N are the N different clips, though the protocol's shuffle buffer (512) is
    larger."""
    from videogan.data.shards import encode_clip, write_shard

    rng = np.random.default_rng(0)
    write_shard(tmp_path / "clips-000000.tar", [
        encode_clip(f"{i:07d}_00000", rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8), {}, lossless=True)
        for i in range(20)])
    clips = next(iter(ev.data_clips(str(tmp_path), Protocol(num=20, frames=16, size=8), batch_size=20)))
    assert len({c.numpy().tobytes() for c in clips}) == 20


SINGLE_DRAW_FIELDS = {"fvd", "kvd", "metric", "real", "fake", "real_from_cache", "protocol", "seconds"}


def test_repeats_draw_both_sides_anew_and_report_mean_std_and_interval(stand_in, monkeypatch, tmp_path):
    protocol = Protocol(num=12, frames=4, size=16, seed=3)
    single = evaluate("synthetic", "synthetic", protocol, batch_size=4, progress=False, i3d=stand_in)
    assert set(single) == SINGLE_DRAW_FIELDS  # one draw: the fields it always had
    seeds = []
    real_clip_source = ev.clip_source

    def recorded(spec, drawn, batch_size, device, synthetic=None):
        seeds.append(drawn.seed)
        return real_clip_source(spec, drawn, batch_size, device, synthetic)

    monkeypatch.setattr(ev, "clip_source", recorded)
    quick = {"batch_size": 4, "progress": False, "i3d": stand_in}
    three = evaluate("synthetic", "synthetic", protocol, repeats=3, **quick)
    # repeat k: real clips with seed + 2k, fake clips with seed + 2k + 1; the first is cached from `single`
    assert seeds == [4, 5, 6, 7, 8] and [r["seed"] for r in three["repeats"]] == [3, 5, 7]
    assert [r["real_from_cache"] for r in three["repeats"]] == [True, False, False]
    assert three["repeats"][0]["fvd"] == pytest.approx(single["fvd"])  # repeat 0 is the single draw
    assert three["metric"] == "fvd12_4f" and three["protocol"] == single["protocol"]
    assert set(three) == SINGLE_DRAW_FIELDS | {"repeats", "fvd_std", "fvd_ci95", "kvd_std", "kvd_ci95"}
    for name in ("fvd", "kvd"):
        values = np.array([r[name] for r in three["repeats"]])
        assert len(set(values)) == 3
        assert three[name] == pytest.approx(values.mean())
        assert three[f"{name}_std"] == pytest.approx(values.std(ddof=1))
        half = 4.302652730 * values.std(ddof=1) / np.sqrt(3)  # t_{0.975, 2}
        assert three[f"{name}_ci95"] == pytest.approx([values.mean() - half, values.mean() + half])
    assert len(list((tmp_path / "cache" / "stats").glob("real-*.npz"))) == 3  # one entry per real draw
    again = evaluate("synthetic", "synthetic", protocol, repeats=3, **quick)
    assert again["real_from_cache"]
    assert [r["fvd"] for r in again["repeats"]] == pytest.approx([r["fvd"] for r in three["repeats"]])
    with pytest.raises(ValueError, match="at least 1"):
        evaluate("synthetic", "synthetic", protocol, progress=False, i3d=stand_in, repeats=0)


def test_a_32_frame_run_is_evaluated_at_its_own_frames_with_repeats(stand_in, small_config, tmp_path, capsys,
                                                                   monkeypatch):
    small_config.model.frames, small_config.train.steps = 32, 2
    train(small_config, tmp_path / "run", progress=False)
    first_batches = []
    real_generator_clips = ev.generator_clips

    def recorded(*args, **kwargs):
        for i, clips in enumerate(real_generator_clips(*args, **kwargs)):
            if i == 0:
                first_batches.append(clips.numpy().tobytes())
            yield clips

    monkeypatch.setattr(ev, "generator_clips", recorded)
    common = ["evaluate", "--real", "synthetic", "--fake", str(tmp_path / "run"), "--num", "6",
              "--batch-size", "3", "--device", "cpu", "--quiet"]
    assert main([*common, "--frames", "32", "--repeats", "3"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert own["metric"] == "fvd6_32f" and own["protocol"]["frames"] == 32
    assert len({r["fvd"] for r in own["repeats"]}) == 3
    assert len(first_batches) == 3 and len(set(first_batches)) == 3  # new noise each repeat
    assert main([*common, "--frames", "16"]) == 0  # the comparable protocol: the first 16 frames
    comparable = json.loads(capsys.readouterr().out)
    assert comparable["metric"] == "fvd6_16f" and set(comparable) == SINGLE_DRAW_FIELDS


def test_real_i3d_takes_32_frames(monkeypatch, tmp_path):
    from videogan.metrics.i3d import I3DWeightsError, checkpoint_path, load_i3d

    monkeypatch.setenv("VIDEOGAN_CACHE", str(tmp_path))  # never the user's cache

    try:
        checkpoint_path()
    except I3DWeightsError as e:
        pytest.skip(str(e))
    clips = torch.randint(0, 256, (1, 3, 32, 16, 16), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)
    with torch.no_grad():
        logits = load_i3d()(to_i3d_input(clips, 32))
    assert logits.shape == (1, 400) and torch.isfinite(logits).all()
