"""A writer of Torch7's binary serialisation, for test fixtures only (Torch7 itself no longer installs).

It writes what torch.save(path, object) writes on a 64-bit little-endian machine, following torch7's
File.lua (writeObject) and generic/Tensor.c, generic/Storage.c (write):
  object  = int type (0 nil, 1 number, 2 string, 3 table, 4 torch object, 5 boolean, 6 function), then
  number  : double;   boolean: int 0/1;   string: int length, bytes
  table   : int reference index; if first seen: int #pairs, then key, value objects
  function: int reference index; if first seen: int length, the bytecode, then the upvalues object
  torch   : int reference index; if first seen: string "V <version>", string class name, then the payload:
            Tensor : int nDimension, long sizes[n], long strides[n], long storageOffset + 1, storage object
            Storage: long size, the raw elements
            other classes (nn modules): their fields, as one table
Tables and torch objects are written once and referenced by index afterwards (by identity, as Torch does
with torch.pointer), so tensors sharing one storage share it in the file too, as after getParameters().

The nn constructors below set the fields torch/nn's constructors set (as left by :clearState()).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_STORAGE_DTYPES = {
    "torch.FloatStorage": np.float32, "torch.DoubleStorage": np.float64, "torch.LongStorage": np.int64,
    "torch.IntStorage": np.int32, "torch.ByteStorage": np.uint8, "torch.CudaStorage": np.float32,
}


@dataclass(eq=False)
class Storage:
    data: np.ndarray | None  # 1-D (None until Parameters.finish())
    typename: str = "torch.FloatStorage"
    count: int | None = None  # the element count written, if not len(data): a file claiming what it lacks


@dataclass(eq=False)
class Tensor:
    storage: Storage | None  # None: an empty torch.Tensor()
    size: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    offset: int = 0  # 0-based (the file holds offset + 1, Lua's convention)
    typename: str = "torch.FloatTensor"

    def array(self) -> np.ndarray:
        """The tensor's values as Torch sees them (a numpy view, strides in elements -> bytes)."""
        if self.storage is None:
            return np.empty(0, dtype=np.float32)
        data = self.storage.data
        return np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.size,
                                               strides=[s * data.itemsize for s in self.stride])


@dataclass(eq=False)
class Object:
    """An instance of a Torch class serialised the default way: its fields as a table."""

    typename: str
    fields: dict[str, Any]
    version: int = 1

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]

    @property
    def kind(self) -> str:
        return self.typename.rsplit(".", 1)[-1]


@dataclass(eq=False)
class Table:
    """A table written from explicit (key, value) pairs: keys of any kind, tables included, as Lua allows."""

    pairs: list[tuple[Any, Any]]


@dataclass(eq=False)
class Function:
    """A Lua function as torch.save writes one: its bytecode's length, the bytecode, then its upvalues."""

    bytecode: bytes
    upvalues: Any = None
    length: int | None = None  # the length written, if not len(bytecode): a file claiming what it lacks


def empty(typename: str = "torch.FloatTensor") -> Tensor:
    return Tensor(None, typename=typename)


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def tensor(array: np.ndarray, typename: str = "torch.FloatTensor") -> Tensor:
    """A contiguous tensor with a storage of its own."""
    storage_type = typename.replace("Tensor", "Storage")
    data = np.ascontiguousarray(array, dtype=_STORAGE_DTYPES[storage_type]).reshape(-1)
    return Tensor(Storage(data, storage_type), tuple(array.shape), _contiguous_strides(tuple(array.shape)), 0,
                  typename)


def expanded(value: float, shape: tuple[int, ...]) -> Tensor:
    """What Torch's expand() makes: one stored value, with stride 0 on every axis, as a tensor of `shape`."""
    return Tensor(Storage(np.array([value], np.float32)), tuple(shape), (0,) * len(shape), 0)


def nested_tables(depth: int) -> bytes:
    """The bytes of {[1] = {[1] = ... {} ...}}, `depth` tables deep, written without recursion (dumps recurses
    once per level, as a reader does)."""
    # Per level: a table (type 3), its reference index, 1 pair, the key (a number, 1) and then the value.
    levels = b"".join(struct.pack("<iiiid", 3, i + 1, 1, 1, 1.0) for i in range(depth))
    return levels + struct.pack("<iii", 3, depth + 1, 0)


@dataclass(eq=False)
class Parameters:
    """Like Torch's module:getParameters(): tensors made by `add` are views into one flat storage."""

    typename: str = "torch.FloatTensor"
    storage: Storage = field(default=None)
    _chunks: list[np.ndarray] = field(default_factory=list)
    _length: int = 0

    def __post_init__(self):
        self.storage = Storage(None, self.typename.replace("Tensor", "Storage"))

    def add(self, array: np.ndarray) -> Tensor:
        array = np.asarray(array, dtype=np.float32)
        view = Tensor(self.storage, tuple(array.shape), _contiguous_strides(tuple(array.shape)), self._length,
                      self.typename)
        self._chunks.append(array.reshape(-1))
        self._length += array.size
        return view

    def finish(self) -> None:
        """Gather the added arrays into the one storage (after the last add; before reading or writing)."""
        self.storage.data = np.concatenate(self._chunks) if self._chunks else np.empty(0, np.float32)


# ----------------------------------------------------------------------------- serialisation

class _Writer:
    def __init__(self):
        self.out = bytearray()
        self.index: dict[int, int] = {}
        self.alive: list[Any] = []  # keeps written objects alive, so that id() stays unique

    def int(self, v: int) -> None:
        self.out += struct.pack("<i", v)

    def long(self, v: int) -> None:
        self.out += struct.pack("<q", v)

    def string(self, s: str | bytes) -> None:
        data = s.encode() if isinstance(s, str) else s
        self.int(len(data))
        self.out += data

    def obj(self, o: Any) -> None:
        if o is None:
            self.int(0)
        elif isinstance(o, bool):
            self.int(5)
            self.int(1 if o else 0)
        elif isinstance(o, (int, float)):
            self.int(1)
            self.out += struct.pack("<d", float(o))
        elif isinstance(o, (str, bytes)):
            self.int(2)
            self.string(o)
        elif isinstance(o, (dict, list, Table, Function, Tensor, Storage, Object)):
            self.int(3 if isinstance(o, (dict, list, Table)) else 6 if isinstance(o, Function) else 4)
            if id(o) in self.index:
                self.int(self.index[id(o)])
                return
            self.index[id(o)] = len(self.index) + 1
            self.alive.append(o)
            self.int(self.index[id(o)])
            if isinstance(o, Function):
                self.int(len(o.bytecode) if o.length is None else o.length)
                self.out += o.bytecode
                self.obj(o.upvalues)
                return
            if isinstance(o, (dict, list, Table)):
                pairs = o.pairs if isinstance(o, Table) else \
                    list(enumerate(o, 1)) if isinstance(o, list) else list(o.items())
                self.int(len(pairs))
                for k, v in pairs:
                    self.obj(k)
                    self.obj(v)
                return
            version = o.version if isinstance(o, Object) else 1
            self.string(f"V {version}")
            self.string(o.typename)
            if isinstance(o, Tensor):
                self.int(len(o.size))
                for n in o.size:
                    self.long(n)
                for s in o.stride:
                    self.long(s)
                self.long(o.offset + 1)
                self.obj(o.storage)
            elif isinstance(o, Storage):
                if o.data is None:
                    raise ValueError("Parameters.finish() was not called before writing")
                self.long(len(o.data) if o.count is None else o.count)
                little_endian = np.dtype(_STORAGE_DTYPES[o.typename]).newbyteorder("<")
                self.out += np.ascontiguousarray(o.data, dtype=little_endian).tobytes()
            else:
                self.obj(o.fields)
        else:
            raise TypeError(f"cannot serialise {type(o).__name__}")


def dumps(o: Any) -> bytes:
    w = _Writer()
    w.obj(o)
    return bytes(w.out)


def save(path: str | Path, o: Any) -> Path:
    """torch.save(path, o)."""
    Path(path).write_bytes(dumps(o))
    return Path(path)


# ----------------------------------------------------------------------------- nn classes, with their fields

def module(typename: str, version: int = 1, tensor_type: str = "torch.FloatTensor", **fields: Any) -> Object:
    """nn.Module:__init() sets output, gradInput and _type; the class adds its own fields."""
    base = {"output": empty(tensor_type), "gradInput": empty(tensor_type), "_type": tensor_type,
            "train": True}
    return Object(typename, {**base, **fields}, version)


def container(typename: str, modules: list[Object], **fields: Any) -> Object:
    return module(typename, modules=list(modules), **fields)


def Sequential(*modules: Object) -> Object:
    return container("nn.Sequential", list(modules))


def ConcatTable(*modules: Object) -> Object:
    return container("nn.ConcatTable", list(modules), output={})


def _conv_fields(weight: Tensor, bias: Tensor, grads: Parameters | None) -> dict[str, Any]:
    t = weight.typename
    grad = (lambda a: grads.add(np.zeros(a.size))) if grads is not None else (lambda a: empty(t))  # noqa: E731
    return {"weight": weight, "bias": bias, "gradWeight": grad(weight), "gradBias": grad(bias),
            "finput": empty(t), "fgradInput": empty(t)}


def VolumetricFullConvolution(nin: int, nout: int, kT: int, kW: int, kH: int, dT: int = 1, dW: int = 1,
                              dH: int = 1, padT: int = 0, padW: int = 0, padH: int = 0, *, weight: Tensor,
                              bias: Tensor, grads: Parameters | None = None, package: str = "nn",
                              legacy: bool = False) -> Object:
    """torch/nn VolumetricFullConvolution(nIn, nOut, kT, kW, kH, dT, dW, dH, padT, padW, padH): weight
    [nIn, nOut, kT, kH, kW]. legacy: the early-2016 class (fields pT/pW/pH, weight [nOut, nIn, kT, kH,
    kW])."""
    extra = {"groups": 1} if package == "cudnn" else {}
    if legacy:
        geometry = dict(kT=kT, kW=kW, kH=kH, dT=dT, dW=dW, dH=dH, pT=padT, pW=padW, pH=padH)
    else:
        geometry = dict(kT=kT, kW=kW, kH=kH, dT=dT, dW=dW, dH=dH, padT=padT, padW=padW, padH=padH, adjT=0,
                        adjW=0, adjH=0)
    return module(f"{package}.VolumetricFullConvolution", tensor_type=weight.typename, nInputPlane=nin,
                  nOutputPlane=nout, **geometry, **_conv_fields(weight, bias, grads), **extra)


def SpatialFullConvolution(nin: int, nout: int, kW: int, kH: int, dW: int = 1, dH: int = 1, padW: int = 0,
                           padH: int = 0, *, weight: Tensor, bias: Tensor, grads: Parameters | None = None,
                           package: str = "nn") -> Object:
    """torch/nn SpatialFullConvolution(nIn, nOut, kW, kH, dW, dH, padW, padH): weight [nIn, nOut, kH, kW]."""
    extra = {"groups": 1} if package == "cudnn" else {}
    return module(f"{package}.SpatialFullConvolution", tensor_type=weight.typename, nInputPlane=nin,
                  nOutputPlane=nout, kW=kW, kH=kH, dW=dW, dH=dH, padW=padW, padH=padH, adjW=0, adjH=0,
                  **_conv_fields(weight, bias, grads), **extra)


def VolumetricConvolution(nin: int, nout: int, kT: int, kW: int, kH: int, dT: int = 1, dW: int = 1,
                          dH: int = 1, padT: int = 0, padW: int = 0, padH: int = 0, *, weight: Tensor,
                          bias: Tensor, grads: Parameters | None = None, package: str = "nn") -> Object:
    """torch/nn VolumetricConvolution(nIn, nOut, kT, kW, kH, dT, dW, dH, padT, padW, padH): weight
    [nOut, nIn, kT, kH, kW]."""
    extra = {"groups": 1} if package == "cudnn" else {}
    return module(f"{package}.VolumetricConvolution", tensor_type=weight.typename, nInputPlane=nin,
                  nOutputPlane=nout, kT=kT, kW=kW, kH=kH, dT=dT, dW=dW, dH=dH, padT=padT, padW=padW,
                  padH=padH, **_conv_fields(weight, bias, grads), **extra)


def BatchNormalization(kind: str, *, weight: Tensor, bias: Tensor, running_mean: Tensor,
                       running_var: Tensor | None = None, running_std: Tensor | None = None,
                       eps: float = 1e-5, grads: Parameters | None = None, package: str = "nn") -> Object:
    """nn.{Spatial,Volumetric}BatchNormalization(n, eps): running_var from BatchNormalization version 2 on;
    before it (2016), running_std (an average of 1/sqrt(var + eps)) and class version 1."""
    t = weight.typename
    stats = {"running_var": running_var} if running_std is None else {"running_std": running_std}
    grad = (lambda a: grads.add(np.zeros(a.size))) if grads is not None else (lambda a: empty(t))  # noqa: E731
    return module(f"{package}.{kind}", version=1 if running_std is not None else 2, tensor_type=t,
                  affine=True, eps=eps, momentum=0.1, running_mean=running_mean, **stats, weight=weight,
                  bias=bias, gradWeight=grad(weight), gradBias=grad(bias))


def ReLU(package: str = "nn") -> Object:
    return module(f"{package}.ReLU", threshold=0, val=0, inplace=True)


def LeakyReLU(negval: float) -> Object:
    return module("nn.LeakyReLU", negval=negval, inplace=True)


def Tanh(package: str = "nn") -> Object:
    return module(f"{package}.Tanh")


def Sigmoid(package: str = "nn") -> Object:
    return module(f"{package}.Sigmoid")


def View(*size: int, num_input_dims: int | None = None) -> Object:
    fields = {"size": Storage(np.array(size, np.int64), "torch.LongStorage"),
              "numElements": int(np.prod([s for s in size if s > 0]))}
    if num_input_dims is not None:
        fields["numInputDims"] = num_input_dims
    return module("nn.View", **fields)


def L1Penalty(l1weight: float, size_average: bool = True) -> Object:
    return module("nn.L1Penalty", l1weight=l1weight, sizeAverage=size_average, provideOutput=True)


def FlattenTable() -> Object:
    return module("nn.FlattenTable", output={}, input_map={}, gradInput={})


def SelectTable(index: int) -> Object:
    return module("nn.SelectTable", index=index, gradInput={})


def Squeeze() -> Object:
    return module("nn.Squeeze")


def Replicate(nfeatures: int, dim: int) -> Object:
    return module("nn.Replicate", nfeatures=nfeatures, dim=dim)


def MulConstant(c: float) -> Object:
    return module("nn.MulConstant", constant_scalar=c, inplace=False)


def AddConstant(c: float) -> Object:
    return module("nn.AddConstant", constant_scalar=c, inplace=False)


def CMulTable() -> Object:
    return module("nn.CMulTable", gradInput={})


def CAddTable() -> Object:
    return module("nn.CAddTable", gradInput={}, inplace=False)
