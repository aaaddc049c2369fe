"""The original authors' Torch7 models -> a videogan run directory (`videogan import-t7`).

Vondrick et al. trained with main.lua (github.com/cvondrick/videogan) and saved, every 1000 iterations,
`iterN_net.t7` (the generator `net`) and `iterN_netD.t7` (the discriminator `netD`) with
`torch.save(path, net:clearState())`, usually from GPU training: class names may be cudnn.* and tensors
torch.CudaTensor, and every module's weight is a view into one flat storage (`net:getParameters()`).
The files are parsed with `torchfile` (data only: no Lua runs) and each layer is mapped onto our nets:

  net    = Sequential(ConcatTable(video, static), FlattenTable, ConcatTable(m*f, (1-m)*b), CAddTable)
  video  = View, [VolumetricFullConvolution, VolumetricBatchNormalization, ReLU] x 4,
           ConcatTable(Sequential(VolumetricFullConvolution, Tanh),                 -> video_head
                       Sequential(VolumetricFullConvolution, Sigmoid, L1Penalty))   -> mask_head
  static = View, [SpatialFullConvolution, SpatialBatchNormalization, ReLU] x 4, SpatialFullConvolution, Tanh
  netD   = Sequential(VolumetricConvolution, LeakyReLU, [VolumetricConvolution, VolumetricBatchNormalization,
           LeakyReLU] x 3, VolumetricConvolution, View)

Weight layouts, from torch/nn's constructors (the C kernels index the tensors the same way):
  VolumetricConvolution(nIn, nOut, kT, kW, kH, ...)      weight [nOut, nIn, kT, kH, kW] = Conv3d's
  VolumetricFullConvolution(nIn, nOut, kT, kW, kH, ...)  weight [nIn, nOut, kT, kH, kW] = ConvTranspose3d's
  SpatialFullConvolution(nIn, nOut, kW, kH, ...)         weight [nIn, nOut, kH, kW]     = ConvTranspose2d's
The constructors take W before H, but the tensors store H before W, as PyTorch does: no axis is permuted.
The VolumetricFullConvolution of early 2016 (fields pT/pW/pH instead of padT/padW/padH) stored
[nOut, nIn, kT, kH, kW] and computed out[o] += in[c] * w[o, c] (THNN VolumetricFullConvolution.c of that
version): its first two axes are swapped here.
"""
from __future__ import annotations

import io
import math
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchfile
from torch import nn
from tqdm import tqdm

from ..config import Config, paper
from ..media import file_sha256, write_json
from ..models import ArchitectureError, Discriminator, TwoStreamGenerator
from ..training.checkpoint import CheckpointError, list_checkpoints, save_checkpoint


class T7Error(CheckpointError):
    """A Torch7 file that cannot be converted; one line naming the file, what was expected and what was
    found."""


# ----------------------------------------------------------------------------- reading, checked

class _Truncated(Exception):
    pass


class _Corrupt(Exception):
    pass


class _BoundedFile(io.BufferedReader):
    """A file that refuses to read past its end, before allocating anything: torchfile reads a Lua function's
    bytes with f.read(size), size taken from the file (a claimed 2 GB would be allocated, then read short)."""

    def __init__(self, path: Path):
        super().__init__(io.FileIO(path, "rb"))
        self.size = os.fstat(self.fileno()).st_size

    def remaining(self) -> int:
        return self.size - self.tell()

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            raise _Corrupt(f"a length of {n}")
        if n > self.remaining():
            raise _Truncated()
        return super().read(n)


def _overlapping(size: list[int], stride: list[int]) -> bool:
    """Whether a view reaches some element twice (a stride-0 "expanded" view, or interleaved strides): with
    its axes sorted by stride, each stride must step past everything the smaller ones reach."""
    reach = 0
    axes = [(n, s) for n, s in zip(size, stride, strict=True) if n > 1]
    for n, s in sorted(axes, key=lambda axis: axis[1]):
        if s <= reach:
            return True
        reach += (n - 1) * s
    return False


class _CheckedReader(torchfile.T7Reader):
    """torchfile's reader, refusing whatever the file claims but does not hold.

    Plain torchfile returns a short storage when a file ends inside one (np.fromfile stops quietly) and then
    views it with as_strided, reading memory beyond it; here every length is checked against the bytes left
    (_BoundedFile), and every tensor against its storage, before anything is allocated.
    """

    def __init__(self, f: _BoundedFile):
        super().__init__(f, utf8_decode_strings=True)
        self.storages: set[int] = set()  # ids of the storages read (kept alive by self.objects)

    def _read(self, fmt):
        return struct.unpack(fmt, self.f.read(struct.calcsize(fmt)))

    def read_long_array(self, n):
        if not 0 <= n <= 64:
            raise _Corrupt(f"a tensor with {n} dimensions")
        return [self.read_long() for _ in range(n)]

    def read_string(self, disable_utf8=False):
        size = self.read_int()
        if size < 0:
            raise _Corrupt(f"a string of length {size}")
        s = self.f.read(size)
        return s if disable_utf8 else s.decode("utf8")

    def read_storage(self, dtype) -> np.ndarray:
        # torch7 generic/Storage.c write: the element count (a long), then the raw elements.
        count = self.read_long()
        if count < 0:
            raise _Corrupt(f"a storage of {count} elements")
        if count * np.dtype(dtype).itemsize > self.f.remaining():
            raise _Truncated()
        storage = np.fromfile(self.f, dtype=dtype, count=count)
        self.storages.add(id(storage))
        return storage

    def read_tensor(self, dtype) -> np.ndarray:
        # torch7 generic/Tensor.c write: nDimension, sizes, strides, storageOffset + 1, then
        # the storage object.
        ndim = self.read_int()
        size, stride = self.read_long_array(ndim), self.read_long_array(ndim)
        offset = self.read_long() - 1
        storage = self.read_obj()
        if storage is None or ndim == 0:
            return np.empty(0, dtype=dtype)
        if id(storage) not in self.storages:
            raise _Corrupt("a tensor whose storage is not a storage")
        if storage.dtype != dtype:
            raise _Corrupt(f"a tensor of {np.dtype(dtype)} over a storage of {storage.dtype}")
        if min(size) < 0 or min(stride) < 0 or offset < 0:
            raise _Corrupt(f"a tensor of size {size}, stride {stride}, offset {offset}")
        if min(size) == 0:
            return np.empty(size, dtype=storage.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= len(storage):
            raise _Corrupt(f"a tensor reaching element {last + 1} of a storage of {len(storage)}")
        # Parameters are never such views; one would let a few stored values pass for a tensor of any size.
        if _overlapping(size, stride):
            raise _Corrupt(f"a tensor of size {size} whose strides {stride} reach some element twice "
                           "(an expanded or overlapping view, not stored values)")
        return np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                               strides=[s * storage.itemsize for s in stride])


def _register_checked_handlers() -> None:
    """Route torchfile's tensor and storage readers to the checked ones, for _CheckedReader only
    (type_handlers is torchfile's documented extension point; other readers keep torchfile's own)."""
    kinds = {"Byte": np.uint8, "Char": np.int8, "Short": np.int16, "Int": np.int32, "Long": np.int64,
             "Float": np.float32, "Double": np.float64, "": np.float32}  # torch.CudaTensor holds floats
    for prefix in ("torch.", "torch.Cuda"):
        for kind, dtype in kinds.items():
            if prefix == "torch." and kind == "":
                continue
            for what, method in (("Tensor", _CheckedReader.read_tensor),
                                 ("Storage", _CheckedReader.read_storage)):
                name = f"{prefix}{kind}{what}".encode()
                original = torchfile.type_handlers.get(name)

                def handler(reader, version, original=original, method=method, dtype=dtype, name=name):
                    if isinstance(reader, _CheckedReader):
                        return method(reader, dtype)
                    if original is None:
                        raise torchfile.T7ReaderException(f"no reader for {name.decode()}")
                    return original(reader, version)

                torchfile.type_handlers[name] = handler


_register_checked_handlers()


def _show(head: bytes) -> str:
    return " ".join(f"{b:02x}" for b in head[:8]) or "an empty file"


def read_t7(path: str | os.PathLike) -> Any:
    """Parse a binary Torch7 file (torch.save's default format) into torchfile objects, or raise T7Error."""
    path = Path(path)
    if not path.is_file():
        raise T7Error(f"{path}: no such file")
    with _BoundedFile(path) as f:
        size = f.size
        head = f.read(min(8, size))
        f.seek(0)
        if re.match(rb"^\d+\n", head):
            raise T7Error(f"{path}: a Torch7 file in ASCII format; expected the binary format (torch.save's "
                          "default)")
        # torch7 File.lua: every file is one object, starting with its type code (0 nil ... 8 function).
        if len(head) < 4 or struct.unpack("i", head[:4])[0] not in range(9):
            raise T7Error(f"{path}: not a Torch7 file: expected a serialized Torch object (type code 0-8 in "
                          f"the first 4 bytes), found {_show(head)}")
        try:
            return _CheckedReader(f).read_obj()
        except _Truncated:
            raise T7Error(f"{path}: truncated Torch7 file: it ends at byte {size} in the middle of an object "
                          "(expected more data; was the download cut short?)") from None
        except NotImplementedError as e:  # torchfile cannot read half-precision tensors
            raise T7Error(f"{path}: {e}; expected float tensors "
                          "(convert the model with :float() in Torch)") from None
        except RecursionError:  # the reader recurses once per level of nesting
            raise T7Error(f"{path}: not a readable Torch7 file: found tables nested too deep to read at byte "
                          f"{f.tell()} (expected an nn module tree, a few levels deep)") from None
        except (_Corrupt, torchfile.T7ReaderException, UnicodeDecodeError, MemoryError, ValueError,
                OverflowError, TypeError) as e:  # TypeError: a table keyed by a table torchfile made a list
            raise T7Error(f"{path}: not a readable Torch7 file: found {e or type(e).__name__} at byte "
                          f"{f.tell()}") from None


# ----------------------------------------------------------------------------- the Torch module tree

# reshapes, and the mask's sparsity loss (identity going forward)
_SKIPPED = {"View", "L1Penalty", "Identity"}

# Bounds on what a file may claim, checked before anything is built. main.lua's nets nest modules 5 deep and
# are at most 512 planes wide with kernels of 4: the bounds leave room for variants of them, not absurd ones.
_MAX_DEPTH = 32  # deeper is a module that contains itself, or not a net at all
_MAX_PLANES = 1 << 16
_MAX_KERNEL = 1 << 8  # kernel sizes, strides, paddings (with the planes: a layer's size stays countable)
_MAX_CLIP = 1 << 12  # frames, height and width of the generator's clips (the paper's: 32x64x64)
_MAX_PARAMETERS = 1 << 26  # the paper's generator holds 16,245,383, its discriminator 11,057,858


@dataclass
class _Module:
    """One torchfile object that should be an nn module, with where it sits (Lua's 1-based notation)."""

    obj: Any
    path: str
    src: Path
    depth: int = 0

    def __post_init__(self):
        if not isinstance(self.obj, torchfile.TorchObject) or not isinstance(self.obj._obj, dict):
            found = (type(self.obj).__name__ if not isinstance(self.obj, torchfile.TorchObject)
                     else "a broken object")
            raise T7Error(f"{self.src}: {self.path}: expected a Torch nn module, found {found}")

    @property
    def typename(self) -> str:
        name = self.obj.torch_typename()
        return name.decode("utf8", "replace") if isinstance(name, bytes) else str(name)

    @property
    def kind(self) -> str:
        """The class without its package: nn.ReLU and cudnn.ReLU are both ReLU."""
        return self.typename.rsplit(".", 1)[-1]

    def has(self, name: str) -> bool:
        return self.obj._obj.get(name) is not None

    def field(self, name: str, default: Any = None) -> Any:
        value = self.obj._obj.get(name)
        return default if value is None else value

    def number(self, *names: str, default: float | None = None) -> float:
        """The first of `names` present (fields were renamed across nn versions), as a finite number."""
        for name in names:
            value = self.field(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value):
                    raise T7Error(f"{self.src}: {self}: expected field {name} a finite number, found {value}")
                return value
        if default is None:
            raise T7Error(f"{self.src}: {self}: missing field {names[0]}")
        return default

    def whole(self, *names: str, low: int, high: int, default: int | None = None) -> int:
        """number(), a whole number from `low` to `high`: a size the file claims, bounded before any use."""
        value = self.number(*names, default=default)
        if value != int(value) or not low <= value <= high:
            name = next((n for n in names if self.has(n)), names[0])
            raise T7Error(f"{self.src}: {self}: expected {name} a whole number from {low} to {high}, "
                          f"found {_fmt(value)}")
        return int(value)

    def tensor(self, name: str) -> np.ndarray | None:
        value = self.field(name)
        if value is None or (isinstance(value, np.ndarray) and value.size == 0):
            return None
        if not isinstance(value, np.ndarray):
            raise T7Error(f"{self.src}: {self}: field {name} should be a tensor, "
                          f"found {type(value).__name__}")
        return value

    def children(self) -> list[_Module]:
        mods = self.field("modules", [])
        if isinstance(mods, dict):  # a table that is not a plain list (torchfile keeps such tables as dicts)
            mods = [mods[k] for k in sorted(mods)] if all(isinstance(k, int) for k in mods) else []
        if mods and self.depth >= _MAX_DEPTH:  # the tree is walked recursively: a cycle must end here
            raise T7Error(f"{self.src}: {self}: modules nested more than {_MAX_DEPTH} deep (a module "
                          "containing itself?); expected main.lua's nets, 5 deep")
        return [_Module(m, f"{self.path}.modules[{i + 1}]", self.src, self.depth + 1)
                for i, m in enumerate(mods)]

    def layers(self) -> list[_Module]:
        return [m for m in self.children() if m.kind not in _SKIPPED]

    def __str__(self) -> str:
        return f"{self.path} ({self.typename})"


def _summary(kinds: list[str]) -> str:
    """Layer kinds with repeated groups folded: "[A, B, C] x 4, D, E"."""
    parts, i = [], 0
    while i < len(kinds):
        for period in (3, 2, 1):
            group = kinds[i : i + period]
            repeats = 1
            while kinds[i + repeats * period : i + (repeats + 1) * period] == group:
                repeats += 1
            if repeats > 1:
                parts.append(f"[{', '.join(group)}] x {repeats}" if period > 1 else f"{group[0]} x {repeats}")
                i += repeats * period
                break
        else:
            parts.append(kinds[i])
            i += 1
    return ", ".join(parts) or "nothing"


def _kinds(modules: list[_Module]) -> str:
    return _summary([m.kind for m in modules])


def _first_difference(expected: str, found: str, context: int = 60) -> tuple[str, str]:
    """The two texts from the element where they first differ (whole elements: cut at a bracket or comma)."""
    i = len(os.path.commonprefix([expected, found]))
    start = max(expected.rfind(c, 0, i) for c in "[,") + 1
    cut = lambda t: t[start : start + context] + ("..." if len(t) > start + context else "")  # noqa: E731
    return cut(expected) or "nothing", cut(found) or "nothing"


def _signature(m: _Module) -> str:
    """A compact description of a module tree and the arguments that matter for the composition."""
    args = {"SelectTable": ("index",), "Replicate": ("nfeatures", "dim"), "MulConstant": ("constant_scalar",),
            "AddConstant": ("constant_scalar",)}.get(m.kind, ())
    text = m.kind + (f"({','.join(_fmt(m.field(a)) for a in args)})" if args else "")
    children = m.children()
    return text + (f"[{','.join(_signature(c) for c in children)}]" if children else "")


def _fmt(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


# ----------------------------------------------------------------------------- layer specs and weights

@dataclass(frozen=True)
class _ConvSpec:
    """A (transposed) convolution's geometry, axes in PyTorch's order: (T,) H, W."""

    cin: int
    cout: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    output_padding: tuple[int, ...]

    def __str__(self) -> str:
        x = lambda t: "x".join(map(str, t))  # noqa: E731
        adj = f", adj {x(self.output_padding)}" if any(self.output_padding) else ""
        return (f"{self.cin}->{self.cout}, kernel {x(self.kernel)}, stride {x(self.stride)}, padding "
                f"{x(self.padding)}{adj}")


def _torch_conv(m: _Module) -> _ConvSpec:
    """The geometry of a Torch (full) convolution from its per-axis fields: kT kH kW, dT.., padT..
    (pT.. in the early-2016 VolumetricFullConvolution), adjT..; absent strides, paddings and adjustments are
    Torch's defaults."""
    axes = ("T", "H", "W") if m.kind.startswith("Volumetric") else ("H", "W")

    def per_axis(prefixes: tuple[str, ...], low: int, default: int | None = None) -> tuple[int, ...]:
        return tuple(m.whole(*(p + axis for p in prefixes), low=low, high=_MAX_KERNEL, default=default)
                     for axis in axes)

    planes = lambda name: m.whole(name, low=1, high=_MAX_PLANES)  # noqa: E731
    return _ConvSpec(cin=planes("nInputPlane"), cout=planes("nOutputPlane"), kernel=per_axis(("k",), 1),
                     stride=per_axis(("d",), 1, 1), padding=per_axis(("pad", "p"), 0, 0),
                     output_padding=per_axis(("adj",), 0, 0))


def _our_conv(m: nn.Module) -> _ConvSpec:
    transposed = isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d))
    return _ConvSpec(m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride), tuple(m.padding),
                     tuple(m.output_padding) if transposed else (0,) * len(m.kernel_size))


def _as_torch(array: np.ndarray) -> torch.Tensor:
    """A float32 copy (the array may be a strided view into the file's shared parameter storage)."""
    return torch.from_numpy(np.array(array, dtype=np.float32, copy=True))


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def conv_weight(m: _Module, spec: _ConvSpec, transposed: bool) -> torch.Tensor:
    """A Torch (full) convolution's weight in PyTorch's layout: Conv [out, in, (T,) H, W], ConvTranspose
    [in, out, (T,) H, W]. See the module docstring for where each layout comes from."""
    weight = m.tensor("weight")
    # the early-2016 VolumetricFullConvolution: [nOut, nIn, kT, kH, kW]
    old_layout = transposed and m.has("pT")
    first, names = ((spec.cin, spec.cout), "nInputPlane x nOutputPlane") if transposed and not old_layout \
        else ((spec.cout, spec.cin), "nOutputPlane x nInputPlane")
    expected = (*first, *spec.kernel)
    if weight is None or tuple(weight.shape) != expected:
        found = "no weight" if weight is None else f"weight {_shape(weight.shape)}"
        k = "kT x kH x kW" if len(spec.kernel) == 3 else "kH x kW"
        raise T7Error(f"{m.src}: {m}: expected a weight {_shape(expected)} ({names} x {k}) for {spec}, "
                      f"found {found}")
    out = _as_torch(weight)
    return out.transpose(0, 1).contiguous() if old_layout else out


def _vector(m: _Module, name: str, n: int, default: float | None = None) -> torch.Tensor:
    value = m.tensor(name)
    if value is None and default is not None:
        return torch.full((n,), default)
    if value is None or value.size != n:
        found = "nothing" if value is None else _shape(value.shape)
        raise T7Error(f"{m.src}: {m}: expected {name} of {n} values, found {found}")
    return _as_torch(value.reshape(n))


def batchnorm_state(m: _Module, ours: nn.modules.batchnorm._BatchNorm) -> dict[str, torch.Tensor]:
    """A Torch BatchNormalization's parameters and running statistics as our BatchNorm's state.

    Builds of torch/nn before its BatchNormalization version 2 (2016) kept running_std, a running average of
    1/sqrt(var + eps), instead of running_var; nn's own BN:read upgrades old files with
    running_var = running_std^-2 - eps, and so do we (computed in float64).
    """
    n = ours.num_features
    eps = float(m.number("eps", default=1e-5))
    if abs(eps - ours.eps) > 1e-6 * ours.eps:
        raise T7Error(f"{m.src}: {m}: expected BatchNorm eps {ours.eps:g} (what the model uses), found "
                      f"{eps:g}")
    if m.has("running_var"):
        var = _vector(m, "running_var", n)
    elif m.has("running_std"):
        inv_std = _vector(m, "running_std", n).double()
        var = (inv_std.pow(-2) - eps).float()
    else:
        raise T7Error(f"{m.src}: {m}: expected running_var (or the older running_std), found neither")
    return {
        "weight": _vector(m, "weight", n, default=1.0),  # affine=false: the identity scale and shift
        "bias": _vector(m, "bias", n, default=0.0),
        "running_mean": _vector(m, "running_mean", n),
        "running_var": var,
        "num_batches_tracked": torch.zeros((), dtype=torch.long),
    }


_TORCH_KIND = {
    nn.ConvTranspose3d: "VolumetricFullConvolution", nn.ConvTranspose2d: "SpatialFullConvolution",
    nn.Conv3d: "VolumetricConvolution", nn.BatchNorm3d: "VolumetricBatchNormalization",
    nn.BatchNorm2d: "SpatialBatchNormalization", nn.ReLU: "ReLU", nn.LeakyReLU: "LeakyReLU", nn.Tanh: "Tanh",
    nn.Sigmoid: "Sigmoid",
}


def _torch_kind(ours: nn.Module) -> str:
    """The Torch class name of our layer (subclasses included, e.g. the faster ConvTranspose3d of
    ops/upsample.py)."""
    return next(kind for cls, kind in _TORCH_KIND.items() if isinstance(ours, cls))


def layer_state(m: _Module, ours: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """One Torch layer -> the state of our layer `ours` (called `name` in its net), with every check."""
    want = _torch_kind(ours)
    if m.kind != want:
        raise T7Error(f"{m.src}: {m}: expected a {want} here (for {name}), found {m.kind}")
    if isinstance(ours, (nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        spec, need = _torch_conv(m), _our_conv(ours)
        if spec != need:
            raise T7Error(f"{m.src}: {m}: expected {need} (for {name}), found {spec}")
        if m.number("groups", default=1) != 1:
            raise T7Error(f"{m.src}: {m}: expected groups 1, found {_fmt(m.number('groups'))}")
        transposed = not isinstance(ours, nn.Conv3d)
        return {"weight": conv_weight(m, spec, transposed),
                "bias": _vector(m, "bias", spec.cout, default=0.0)}
    if isinstance(ours, nn.modules.batchnorm._BatchNorm):
        return batchnorm_state(m, ours)
    if isinstance(ours, nn.LeakyReLU) and abs(m.number("negval", default=0.01) - ours.negative_slope) > 1e-9:
        raise T7Error(f"{m.src}: {m}: expected negval {ours.negative_slope}, found "
                      f"{m.number('negval', default=0.01)}")
    if isinstance(ours, nn.ReLU) and (m.number("threshold", default=0) != 0
                                      or m.number("val", default=0) != 0):
        raise T7Error(f"{m.src}: {m}: expected a plain ReLU (threshold 0, value 0), found a threshold of "
                      f"{_fmt(m.number('threshold', default=0))} -> {_fmt(m.number('val', default=0))}")
    return {}


def _build_from_file(src: Path, what: str, build: Callable[[], nn.Module],
                     state_of: Callable[[nn.Module], dict[str, torch.Tensor]]) -> nn.Module:
    """build(), holding the state that state_of(net) takes from the file, spending no memory on what the file
    only claims: the net is built first on the meta device (shapes, no storage), its size bounded, and every
    tensor of the file checked against it; it is built for real once the file is found to hold all of it."""
    with torch.device("meta"):
        shapes = build()
    parameters = sum(p.numel() for p in shapes.parameters())
    if parameters > _MAX_PARAMETERS:
        raise T7Error(f"{src}: {what} would hold {parameters:,} parameters; expected at most "
                      f"{_MAX_PARAMETERS:,} (the paper's generator holds 16,245,383)")
    state = state_of(shapes)
    model = build()
    model.load_state_dict(state, strict=True)  # every tensor of ours came from the file
    return model.eval()


def torch_layer(obj: Any, src: str | os.PathLike = "<layer>") -> nn.Module:
    """One parsed Torch (full) convolution, of any kernel, stride and padding -> the equivalent PyTorch
    layer."""
    m = _Module(obj, "layer", Path(src))
    builders = {"VolumetricFullConvolution": nn.ConvTranspose3d, "SpatialFullConvolution": nn.ConvTranspose2d,
                "VolumetricConvolution": nn.Conv3d}
    if m.kind not in builders:
        raise T7Error(f"{src}: expected one of {', '.join(builders)}, found {m.typename}")
    spec = _torch_conv(m)
    extra = {} if m.kind == "VolumetricConvolution" else {"output_padding": spec.output_padding}

    def build() -> nn.Module:
        kind = builders[m.kind]
        return kind(spec.cin, spec.cout, spec.kernel, stride=spec.stride, padding=spec.padding, **extra)

    return _build_from_file(m.src, f"a {m.kind} {spec}", build, lambda layer: layer_state(m, layer, m.kind))


def sequence_state(src: Path, where: str, layers: list[_Module], ours: nn.Sequential,
                   prefix: str) -> dict[str, torch.Tensor]:
    """Pair a Torch Sequential's layers (Views and the L1Penalty left out) with ours, one by one."""
    mine = list(ours)
    if len(layers) != len(mine):
        raise T7Error(f"{src}: {where}: expected {len(mine)} layers "
                      f"({_summary([_torch_kind(o) for o in mine])}), found {len(layers)} ({_kinds(layers)})")
    state = {}
    for i, (m, o) in enumerate(zip(layers, mine, strict=True)):
        state.update({f"{prefix}.{i}.{k}": v for k, v in layer_state(m, o, f"{prefix}.{i}").items()})
    return state


# ----------------------------------------------------------------------------- generator

def _contains(m: _Module, kind: str) -> bool:
    return m.kind == kind or any(_contains(c, kind) for c in m.children())


def _clip_shape(convs: list[_ConvSpec]) -> tuple[int, int, int]:
    """(T, H, W) that a stack of Torch full convolutions makes from a 1x1x1 input:
    out = (in - 1) * stride - 2 * pad + kernel + adj, per axis (nn.VolumetricFullConvolution)."""
    shape = [1, 1, 1]
    for c in convs:
        axes = zip(shape, c.stride, c.padding, c.kernel, c.output_padding, strict=True)
        shape = [(n - 1) * s - 2 * p + k + a for n, s, p, k, a in axes]
    return shape[0], shape[1], shape[2]


def _heads(src: Path, video: _Module) -> tuple[list[_Module], _Module, _Module]:
    """The video stream's shared layers and its two heads (f: ends in Tanh, m: in Sigmoid)."""
    children = video.children()
    if not children or children[-1].kind != "ConcatTable" or len(children[-1].children()) != 2:
        raise T7Error(f"{src}: {video}: expected it to end in a ConcatTable of the video and mask heads, "
                      f"found {_kinds(children[-1:])}")
    heads = children[-1].children()
    by_kind = {kind: [h for h in heads if any(layer.kind == kind for layer in h.layers())]
               for kind in ("Tanh", "Sigmoid")}
    if (len(by_kind["Tanh"]) != 1 or len(by_kind["Sigmoid"]) != 1
        or by_kind["Tanh"][0] is by_kind["Sigmoid"][0]):
        raise T7Error(f"{src}: {children[-1]}: expected a video head ending in Tanh and a mask head ending "
                      f"in Sigmoid, found [{_kinds(heads[0].layers())}] and [{_kinds(heads[1].layers())}]")
    shared = [m for m in children[:-1] if m.kind not in _SKIPPED]
    return shared, by_kind["Tanh"][0], by_kind["Sigmoid"][0]


def _generator_config(src: Path, shared: list[_Module], video_head: _Module) -> Config:
    """Our config for the Torch generator: z, width, channels and clip shape read off its layers."""
    convs = [m for m in shared + video_head.layers() if m.kind == "VolumetricFullConvolution"]
    if len(convs) < 2 or shared[0].kind != "VolumetricFullConvolution":
        raise T7Error(f"{src}: expected the video stream to start with a VolumetricFullConvolution from z, "
                      f"found {_kinds(shared[:1])} and {len(convs)} full convolutions")
    specs = [_torch_conv(m) for m in convs]
    frames, height, width = _clip_shape(specs)
    if height != width:
        raise T7Error(f"{src}: the generator makes {frames}x{height}x{width} clips; expected square frames")
    if max(frames, height) > _MAX_CLIP:
        raise T7Error(f"{src}: the generator makes {frames}x{height}x{width} clips; expected at most "
                      f"{_MAX_CLIP} frames of {_MAX_CLIP}x{_MAX_CLIP}")
    cfg = paper()
    m = cfg.model
    m.z_dim, m.g_width, m.channels = specs[0].cin, specs[0].cout, specs[-1].cout
    m.frames, m.size = frames, height
    return cfg


def _check_composition(src: Path, top: _Module, frames: int, channels: int) -> None:
    """The rest of main.lua's net: flatten {f, m, b}, then video = f .* m + b .* (1 - m), the same as
    compose()."""
    mods = top.children()
    motion = ("Sequential[ConcatTable[SelectTable(1),"
              f"Sequential[SelectTable(2),Squeeze,Replicate({channels},2)]],CMulTable]")
    static = (f"Sequential[ConcatTable[Sequential[SelectTable(3),Replicate({frames},3)],"
              f"Sequential[SelectTable(2),Squeeze,MulConstant(-1),AddConstant(1),Replicate({channels},2)]],"
              "CMulTable]")
    expected = ",".join(["FlattenTable", f"ConcatTable[{motion},{static}]", "CAddTable"])
    found = ",".join(_signature(m) for m in mods[1:])
    if found != expected:
        want, got = _first_difference(expected, found)
        raise T7Error(f"{src}: net.modules[2..4]: expected the original's composition m*f + (1-m)*b "
                      f"(FlattenTable, ConcatTable of main.lua's motion_net and sta_part, CAddTable); "
                      f"where they differ, expected {want}, found {got}")


def convert_generator(obj: Any, src: str | os.PathLike) -> tuple[Config, TwoStreamGenerator]:
    """main.lua's `net` (parsed) -> our config (shape read off the file) and a TwoStreamGenerator holding its
    weights."""
    src = Path(src)
    top = _Module(obj, "net", src)
    mods = top.children()
    streams = mods[0].children() if mods and mods[0].kind == "ConcatTable" else []
    if top.kind != "Sequential" or len(streams) != 2:
        hint = " (this looks like a discriminator: pass it with --discriminator)" \
            if mods and mods[0].kind == "VolumetricConvolution" else ""
        raise T7Error(f"{src}: expected the original generator (main.lua's net: a Sequential starting with a "
                      f"ConcatTable of the video and static streams), found {top.typename} of "
                      f"{_kinds(mods)}{hint}")
    video = [s for s in streams if _contains(s, "VolumetricFullConvolution")]
    static = [s for s in streams if _contains(s, "SpatialFullConvolution")]
    if len(video) != 1 or len(static) != 1 or video[0] is static[0]:
        raise T7Error(f"{src}: {mods[0]}: expected a video stream (VolumetricFullConvolution) and a static "
                      f"stream (SpatialFullConvolution), found [{_kinds(streams[0].layers())}] and "
                      f"[{_kinds(streams[1].layers())}]")
    video, static = video[0], static[0]
    shared, video_head, mask_head = _heads(src, video)
    cfg = _generator_config(src, shared, video_head)
    _check_composition(src, top, cfg.model.frames, cfg.model.channels)
    m = cfg.model

    def state_of(model: TwoStreamGenerator) -> dict[str, torch.Tensor]:
        background = model.background_stream.net
        return {
            **sequence_state(src, str(video), shared, model.foreground_stream.net, "foreground_stream.net"),
            **sequence_state(src, str(video_head), video_head.layers(), model.video_head, "video_head"),
            **sequence_state(src, str(mask_head), mask_head.layers(), model.mask_head, "mask_head"),
            **sequence_state(src, str(static), static.layers(), background, "background_stream.net"),
        }

    what = f"the generator of width {m.g_width} making {m.frames}x{m.size}x{m.size} clips"
    try:
        model = _build_from_file(src, what, lambda: TwoStreamGenerator(m), state_of)
    except ArchitectureError as e:
        raise T7Error(f"{src}: {what}, which videogan's architecture cannot build: {e}") from None
    return cfg, model


# ----------------------------------------------------------------------------- discriminator

def convert_discriminator(obj: Any, src: str | os.PathLike, cfg: Config) -> Discriminator:
    """main.lua's `netD` (parsed) -> our Discriminator for the generator's clip shape; sets cfg's d_width,
    d_bn_eps.

    main.lua trains netD with nn.CrossEntropyCriterion and real_label = 1, fake_label = 2: Lua's 1-based class
    indices, so its first logit means "real". Ours means "real" at index 1 (losses.REAL): the classifier's two
    output rows (weights and biases) are swapped, and our real_probability equals the original's softmax[1].
    """
    src = Path(src)
    top = _Module(obj, "netD", src)
    layers = top.layers()
    if top.kind != "Sequential" or not layers or layers[0].kind != "VolumetricConvolution":
        hint = (" (this looks like a generator: pass it as NET.t7)"
                if layers and layers[0].kind == "ConcatTable" else "")
        raise T7Error(f"{src}: expected the original discriminator (main.lua's netD: a Sequential starting "
                      f"with a VolumetricConvolution), found {top.typename} of {_kinds(layers)}{hint}")
    norms = [m for m in layers if m.kind.endswith("BatchNormalization")]
    eps = {float(m.number("eps", default=1e-5)) for m in norms}
    if len(eps) > 1:
        raise T7Error(f"{src}: expected one BatchNorm eps in the discriminator, found {sorted(eps)}")
    if eps and min(eps) <= 0:
        raise T7Error(f"{src}: expected a positive BatchNorm eps in the discriminator, found {min(eps):g}")
    cfg.model.d_width = layers[0].whole("nOutputPlane", low=1, high=_MAX_PLANES)
    cfg.model.d_bn_eps = eps.pop() if eps else cfg.model.d_bn_eps

    def state_of(model: Discriminator) -> dict[str, torch.Tensor]:
        state = sequence_state(src, str(top), layers[:-1], model.features, "features")
        head = layer_state(layers[-1], model.classifier, "classifier")
        real_first = [1, 0]  # Lua label 1 (our index 0 in the file) is real; ours is index 1
        return {**state, "classifier.weight": head["weight"][real_first],
                "classifier.bias": head["bias"][real_first]}

    what = f"the discriminator of width {cfg.model.d_width}"
    try:
        return _build_from_file(src, what, lambda: Discriminator(cfg.model), state_of)
    except ArchitectureError as e:
        raise T7Error(f"{src}: width {cfg.model.d_width} does not fit videogan's discriminator: "
                      f"{e}") from None


# ----------------------------------------------------------------------------- the run directory

@dataclass
class ImportResult:
    run_dir: Path
    checkpoint: Path
    step: int
    config: Config
    sources: dict[str, Any]


def _source(path: Path) -> dict[str, Any]:
    return {"path": str(path.resolve()), "name": path.name, "bytes": path.stat().st_size,
            "sha256": file_sha256(path)}


def iteration(path: Path) -> int:
    """The training iteration main.lua wrote into the name (checkpoints/NAME/iter65000_net.t7 -> 65000), else
    0."""
    found = re.search(r"iter(\d+)_net", path.name)
    return int(found.group(1)) if found else 0


def import_t7(net: str | os.PathLike, out: str | os.PathLike, discriminator: str | os.PathLike | None = None,
              progress: bool = True) -> ImportResult:
    """Convert the authors' NET.t7 (and NETD.t7) into a run directory that generate / evaluate read."""
    net, out = Path(net), Path(out)
    if list_checkpoints(out):
        raise T7Error(f"{out}: already holds checkpoints; choose another --out")
    steps = tqdm(total=4 if discriminator else 3, desc="import-t7", unit="step", disable=not progress,
                 dynamic_ncols=True)
    with steps as bar:
        bar.set_postfix_str(f"reading {net.name}")
        cfg, generator = convert_generator(read_t7(net), net)
        bar.update()
        netd, netd_state = None, None  # no discriminator: the run can be sampled and evaluated, not resumed
        if discriminator is not None:
            netd = Path(discriminator)
            bar.set_postfix_str(f"reading {netd.name}")
            netd_state = convert_discriminator(read_t7(netd), netd, cfg).state_dict()
            bar.update()
        bar.set_postfix_str("hashing")
        sources = {"format": "torch7", "code": "https://github.com/cvondrick/videogan (main.lua)",
                   "generator": _source(net), "discriminator": _source(netd) if netd else None,
                   "discriminator_labels": "the file's logit 1 (Lua label 1, real) is stored as our index 1 "
                                           "(losses.REAL)"}
        bar.update()
        bar.set_postfix_str("writing")
        step = iteration(net)
        write_json(out / "config.json", cfg.to_dict(), sort_keys=True)  # as train writes it
        ckpt = save_checkpoint(out, step, cfg, generator=generator.state_dict(), discriminator=netd_state,
                               optimizers={}, rng={}, extra={"imported_from": sources})
        bar.update()
    return ImportResult(out, ckpt, step, cfg, sources)
