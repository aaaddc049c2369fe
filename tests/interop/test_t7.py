"""import-t7: the authors' Torch7 files -> a run directory.

Fixtures are written in the true Torch7 binary format (tests/interop/t7_writer.py) with main.lua's exact
module structure. Correctness is shown two ways: every weight carries a unique value and must land in its
place; and a converted network must reproduce, to float precision, an independent forward pass that interprets
the Torch module tree itself (numpy, float64, from the raw Torch tensors and fields, with Torch's own axis
order).
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import t7_writer as w
import torch

from videogan.cli import main
from videogan.config import paper
from videogan.generation.loading import load_generator
from videogan.interop import t7
from videogan.interop.t7 import T7Error, convert_discriminator, convert_generator, read_t7, torch_layer
from videogan.models import Discriminator, TwoStreamGenerator, geometry
from videogan.training.checkpoint import (
    CheckpointError,
    TrainingState,
    load_checkpoint,
    restore_training_state,
)
from videogan.training.losses import real_probability

# --------------------------------------------------------------------------- main.lua's networks, as fixtures


class Values:
    """Fills tensors: "ids" gives every parameter element a unique integer (exact in float32, below 2**24),
    so that where each one lands can be checked; "random" gives weights for forward passes."""

    def __init__(self, mode: str, seed: int = 0):
        self.mode, self.next, self.rng = mode, 1, np.random.default_rng(seed)

    def __call__(self, shape, scale: float = 1.0, positive: bool = False) -> np.ndarray:
        n = int(np.prod(shape))
        if self.mode == "ids":
            out = np.arange(self.next, self.next + n, dtype=np.float64).reshape(shape)
            self.next += n
            return out
        if positive:
            return self.rng.uniform(0.5, 1.5, shape)
        return self.rng.normal(0.0, scale, shape)


class Flavor:
    """How the file was written: CPU nn.* classes, or GPU training (cudnn.* classes, torch.CudaTensor);
    BatchNorm with running_var or the 2016 running_std; the current or the early-2016
    VolumetricFullConvolution."""

    def __init__(self, gpu: bool = False, running_std: bool = False, legacy: bool = False,
                 grads: bool = True):
        self.package = "cudnn" if gpu else "nn"
        self.tensor_type = "torch.CudaTensor" if gpu else "torch.FloatTensor"
        self.running_std, self.legacy, self.grads = running_std, legacy, grads


def _batchnorm(kind, n, values, params, grads, flavor, eps=1e-5):
    weight = params.add(values((n,), 0.2) + (1 if values.mode == "random" else 0))
    bias = params.add(values((n,), 0.1))
    mean = w.tensor(values((n,), 0.1), flavor.tensor_type)
    spread = values((n,), positive=True)  # var (or, in 2016 files, the average of 1/sqrt(var + eps))
    stats = {"running_std": w.tensor(spread, flavor.tensor_type)} if flavor.running_std else \
        {"running_var": w.tensor(spread, flavor.tensor_type)}
    return w.BatchNormalization(kind, weight=weight, bias=bias, running_mean=mean, eps=eps, grads=grads,
                                package=flavor.package, **stats)


def original_net(z_dim=100, width=512, frames=32, size=64, channels=3, values=None, flavor=None):
    """main.lua's generator `net`, layer by layer, at any width and clip shape (the geometry's time-keeping
    stages, never used by the original, use kernel 3, stride 1, as ours do)."""
    values, flavor = values or Values("random"), flavor or Flavor()
    geo = geometry(frames, size)
    widths = geo.widths(width, "halve")
    params = w.Parameters(flavor.tensor_type)
    grads = w.Parameters(flavor.tensor_type) if flavor.grads else None
    pkg = flavor.package

    def vfc(cin, cout, kt, dt, dhw, pad):
        # Weights scaled by the fan-in of one output position, so that activations neither
        # vanish nor saturate.
        shape = (cout, cin, kt, 4, 4) if flavor.legacy else (cin, cout, kt, 4, 4)  # legacy: [nOut, nIn, ...]
        weight = params.add(values(shape, 2 / np.sqrt(cin * (kt * 16 / (dt * dhw * dhw) if pad else 1))))
        bias = params.add(values((cout,), 0.1))
        return w.VolumetricFullConvolution(cin, cout, kt, 4, 4, dt, dhw, dhw, pad, pad, pad, weight=weight,
                                           bias=bias, grads=grads, package=pkg, legacy=flavor.legacy)

    def sfc(cin, cout, dhw, pad):
        weight = params.add(values((cin, cout, 4, 4), 1 / np.sqrt(cin * (4 if pad else 1))))
        bias = params.add(values((cout,), 0.1))
        return w.SpatialFullConvolution(cin, cout, 4, 4, dhw, dhw, pad, pad, weight=weight, bias=bias,
                                        grads=grads, package=pkg)

    # The video stream first: net:getParameters() lays parameters out in module order.
    # main.lua: VolumetricFullConvolution(100, 512, 2,4,4), then (.., 4,4,4, 2,2,2, 1,1,1) per stage.
    video = [w.View(-1, z_dim, 1, 1, 1), vfc(z_dim, widths[0], geo.core_frames, 1, 1, 0),
             _batchnorm("VolumetricBatchNormalization", widths[0], values, params, grads, flavor),
             w.ReLU(pkg)]
    for i in range(1, len(widths)):
        st = geo.time_strides[i - 1]
        video += [vfc(widths[i - 1], widths[i], 4 if st == 2 else 3, st, 2, 1),
                  _batchnorm("VolumetricBatchNormalization", widths[i], values, params, grads, flavor),
                  w.ReLU(pkg)]
    st = geo.time_strides[-1]
    gen_net = w.Sequential(vfc(widths[-1], channels, 4 if st == 2 else 3, st, 2, 1), w.Tanh(pkg))
    mask_net = w.Sequential(vfc(widths[-1], 1, 4 if st == 2 else 3, st, 2, 1), w.Sigmoid(pkg),
                            w.L1Penalty(0.1, True))
    net_video = w.Sequential(*video, w.ConcatTable(gen_net, mask_net))

    static = [w.View(-1, z_dim, 1, 1), sfc(z_dim, widths[0], 1, 0),
              _batchnorm("SpatialBatchNormalization", widths[0], values, params, grads, flavor), w.ReLU(pkg)]
    for i in range(1, len(widths)):
        static += [sfc(widths[i - 1], widths[i], 2, 1),
                   _batchnorm("SpatialBatchNormalization", widths[i], values, params, grads, flavor),
                   w.ReLU(pkg)]
    static_net = w.Sequential(*static, sfc(widths[-1], channels, 2, 1), w.Tanh(pkg))

    motion_net = w.Sequential(w.ConcatTable(w.SelectTable(1),
                                            w.Sequential(w.SelectTable(2), w.Squeeze(), w.Replicate(3, 2))),
                              w.CMulTable())
    sta_part = w.Sequential(w.ConcatTable(w.Sequential(w.SelectTable(3), w.Replicate(frames, 3)),
                                          w.Sequential(w.SelectTable(2), w.Squeeze(), w.MulConstant(-1),
                                                       w.AddConstant(1), w.Replicate(3, 2))),
                            w.CMulTable())
    net = w.Sequential(w.ConcatTable(net_video, static_net), w.FlattenTable(),
                       w.ConcatTable(motion_net, sta_part), w.CAddTable())
    params.finish()
    if grads is not None:
        grads.finish()
    return net


def original_netd(width=64, frames=32, size=64, channels=3, values=None, flavor=None):
    """main.lua's `netD`: VolumetricConvolution 4x4x4 stride 2, LeakyReLU 0.2, BatchNorm eps 1e-3 from the
    second stage, the last VolumetricConvolution(.., 2, 2,4,4) and View(2):setNumInputDims(4)."""
    values, flavor = values or Values("random"), flavor or Flavor()
    geo = geometry(frames, size)
    widths, strides = geo.widths(width, "double"), geo.time_strides[::-1]
    params = w.Parameters(flavor.tensor_type)
    grads = w.Parameters(flavor.tensor_type) if flavor.grads else None

    def vc(cin, cout, kt, dt, dhw, pad):
        weight = params.add(values((cout, cin, kt, 4, 4), 1 / np.sqrt(cin * kt * 16)))
        bias = params.add(values((cout,), 0.1))
        return w.VolumetricConvolution(cin, cout, kt, 4, 4, dt, dhw, dhw, pad, pad, pad,
                                       weight=weight, bias=bias, grads=grads, package=flavor.package)

    layers = [vc(channels, widths[0], 4 if strides[0] == 2 else 3, strides[0], 2, 1), w.LeakyReLU(0.2)]
    for i in range(1, len(widths)):
        layers += [vc(widths[i - 1], widths[i], 4 if strides[i] == 2 else 3, strides[i], 2, 1),
                   _batchnorm("VolumetricBatchNormalization", widths[i], values, params, grads, flavor,
                              eps=1e-3),
                   w.LeakyReLU(0.2)]
    layers += [vc(widths[-1], 2, geo.core_frames, 1, 1, 0), w.View(2, num_input_dims=4)]
    params.finish()
    if grads is not None:
        grads.finish()
    return w.Sequential(*layers)


# --------------------------------------------------------------------------- an independent Torch interpreter

def _conv_geometry(m: w.Object, dims: int):
    axes = "THW"[3 - dims:]  # Torch's tensors are [B, C, (T,) H, W]; kernel, stride, pad fields are per axis
    pad = "p" if "pT" in m.fields else "pad"
    return ([m[f"k{a}"] for a in axes], [m.fields.get(f"d{a}", 1) for a in axes],
            [m.fields.get(f"{pad}{a}", 0) for a in axes])


def full_convolution(x, m: w.Object, dims: int):
    """nn.VolumetricFullConvolution / SpatialFullConvolution: out[o, i*d - pad + k] += in[c, i] * w[c, o, k];
    weight [nIn, nOut, (kT,) kH, kW] (the legacy class: [nOut, nIn, ...]); out = (in - 1) * d - 2 pad + k."""
    k, d, p = _conv_geometry(m, dims)
    weight = m["weight"].array().astype(np.float64)
    if "pT" in m.fields:
        weight = weight.swapaxes(0, 1)
    assert weight.shape == (m["nInputPlane"], m["nOutputPlane"], *k)
    spatial = x.shape[2:]
    full = [(n - 1) * s + kk for n, s, kk in zip(spatial, d, k, strict=True)]
    out = np.zeros((x.shape[0], weight.shape[1], *full))
    for offset in np.ndindex(*k):
        tap = weight[(slice(None), slice(None), *offset)]
        contribution = np.moveaxis(np.tensordot(x, tap, axes=([1], [0])), -1, 1)
        where = tuple(slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offset, spatial, d, strict=True))
        out[(slice(None), slice(None), *where)] += contribution
    out = out[(slice(None), slice(None), *(slice(pp, f - pp) for pp, f in zip(p, full, strict=True)))]
    return out + m["bias"].array().reshape(1, -1, *[1] * dims)


def convolution(x, m: w.Object):
    """nn.VolumetricConvolution: out[o, i] = sum w[o, c, k] * in_padded[c, i*d + k]; weight
    [nOut, nIn, kT, kH, kW]."""
    k, d, p = _conv_geometry(m, 3)
    weight = m["weight"].array().astype(np.float64)
    assert weight.shape == (m["nOutputPlane"], m["nInputPlane"], *k)
    x = np.pad(x, [(0, 0), (0, 0)] + [(pp, pp) for pp in p])
    windows = np.lib.stride_tricks.sliding_window_view(x, k, axis=(2, 3, 4))[:, :, :: d[0], :: d[1], :: d[2]]
    out = np.tensordot(windows, weight, axes=([1, 5, 6, 7], [1, 2, 3, 4]))  # [B, T', H', W', nOut]
    return np.moveaxis(out, -1, 1) + m["bias"].array().reshape(1, -1, 1, 1, 1)


def batch_normalization(x, m: w.Object):
    """Evaluation mode. The 2016 running_std is used as THNN used it then: invstd = running_std."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    get = lambda name: m[name].array().astype(np.float64).reshape(shape)  # noqa: E731
    inv_std = get("running_std") if "running_std" in m.fields else 1 / np.sqrt(get("running_var") + m["eps"])
    return (x - get("running_mean")) * inv_std * get("weight") + get("bias")


def torch_forward(m: w.Object, x):
    """What Torch's m:forward(x) computes in evaluation mode, for the classes main.lua uses."""
    kind = m.kind
    if kind == "Sequential":
        for child in m["modules"]:
            x = torch_forward(child, x)
        return x
    if kind == "ConcatTable":
        return [torch_forward(child, x) for child in m["modules"]]
    if kind == "FlattenTable":
        flat = lambda t: [y for item in t for y in flat(item)] if isinstance(t, list) else [t]  # noqa: E731
        return flat(x)
    if kind == "SelectTable":
        return x[m["index"] - 1]  # Lua indices start at 1
    if kind == "Squeeze":
        return np.squeeze(x)  # every singleton dimension (a batch of one would lose its batch axis too)
    if kind == "Replicate":  # a new axis at `dim` (1-based), repeated nfeatures times
        return np.repeat(np.expand_dims(x, m["dim"] - 1), m["nfeatures"], axis=m["dim"] - 1)
    if kind == "CMulTable":
        return x[0] * x[1]
    if kind == "CAddTable":
        return x[0] + x[1]
    if kind == "MulConstant":
        return x * m["constant_scalar"]
    if kind == "AddConstant":
        return x + m["constant_scalar"]
    if kind == "View":
        size = tuple(m["size"].data)
        batch = x.shape[: x.ndim - m["numInputDims"]] if "numInputDims" in m.fields else ()
        return x.reshape(batch + size)
    if kind == "L1Penalty":
        return x
    if kind == "ReLU":
        return np.maximum(x, 0)
    if kind == "LeakyReLU":
        return np.where(x > 0, x, m["negval"] * x)
    if kind == "Tanh":
        return np.tanh(x)
    if kind == "Sigmoid":
        return 1 / (1 + np.exp(-x))
    if kind == "VolumetricFullConvolution":
        return full_convolution(x, m, 3)
    if kind == "SpatialFullConvolution":
        return full_convolution(x, m, 2)
    if kind == "VolumetricConvolution":
        return convolution(x, m)
    if kind.endswith("BatchNormalization"):
        return batch_normalization(x, m)
    raise NotImplementedError(kind)


# ----------------------------------------------------------------------------- helpers

def _convert(tmp_path, net=None, netd=None):
    cfg, generator = (convert_generator(read_t7(w.save(tmp_path / "net.t7", net)), tmp_path / "net.t7")
                      if net else (None, None))
    d = (convert_discriminator(read_t7(w.save(tmp_path / "netD.t7", netd)), tmp_path / "netD.t7", cfg)
         if netd else None)
    return cfg, generator, d


def _modules(m: w.Object):
    """Every module of a tree, depth first."""
    yield m
    for child in m.fields.get("modules", []):
        yield from _modules(child)


def _expected_state(net: w.Object, netd: w.Object) -> dict[str, np.ndarray]:
    """Our state-dict names -> the values they must hold, spelled out from main.lua's structure."""
    video, static = net["modules"][0]["modules"]
    gen_net, mask_net = video["modules"][-1]["modules"]
    out = {}

    def add(prefix, modules, swap_rows=False):
        for i, m in enumerate(x for x in modules if x.kind not in ("View", "L1Penalty")):
            if "weight" not in m.fields:
                continue
            weight = m["weight"].array()
            if "pT" in m.fields:  # the legacy VolumetricFullConvolution stored [nOut, nIn, ...]
                weight = weight.swapaxes(0, 1)
            name = prefix if prefix.endswith("classifier") else f"{prefix}.{i}"
            out[f"{name}.weight"] = weight[::-1] if swap_rows else weight
            out[f"{name}.bias"] = m["bias"].array()[::-1] if swap_rows else m["bias"].array()
            if "running_mean" in m.fields:
                out[f"{name}.running_mean"] = m["running_mean"].array()
                out[f"{name}.running_var"] = m["running_var"].array()

    add("foreground_stream.net", video["modules"][:-1])
    add("video_head", gen_net["modules"])
    add("mask_head", mask_net["modules"])
    add("background_stream.net", static["modules"])
    if netd is not None:
        add("discriminator.features", netd["modules"][:-2])
        # Lua label 1 = real -> our index 1
        add("discriminator.classifier", netd["modules"][-2:-1], swap_rows=True)
    return out


def _check_placement(net, netd, generator, discriminator):
    ours = {k: v for k, v in generator.state_dict().items()}
    ours.update({f"discriminator.{k}": v for k, v in discriminator.state_dict().items()})
    expected = _expected_state(net, netd)
    assert set(expected) == {k for k in ours if not k.endswith("num_batches_tracked")}
    for name, values in expected.items():
        assert tuple(ours[name].shape) == values.shape, name
        np.testing.assert_array_equal(ours[name].numpy(), values.astype(np.float32), err_msg=name)
    # Every value of both files used exactly once (the ids are 1..N within each file).
    for model in (generator, discriminator):
        ids = np.concatenate([v.numpy().ravel() for k, v in model.state_dict().items()
                              if "num_batches" not in k])
        assert np.bincount(ids.astype(np.int64), minlength=ids.size + 1)[1:].tolist() == [1] * ids.size


# ----------------------------------------------------------------------------- tests

def test_paper_shapes_every_weight_lands_in_place(tmp_path):
    """The released models' shapes (32x64x64, G 512..64, D 64..512), as saved from GPU training."""
    gpu = Flavor(gpu=True, grads=False)
    net = original_net(values=Values("ids"), flavor=gpu)
    netd = original_netd(values=Values("ids"), flavor=gpu)
    cfg, generator, discriminator = _convert(tmp_path, net, netd)
    assert cfg.model == paper().model  # the whole model section read off the files: the paper preset
    assert sum(p.numel() for p in generator.parameters()) == 16_245_383
    assert sum(p.numel() for p in discriminator.parameters()) == 11_057_858
    _check_placement(net, netd, generator, discriminator)


def test_small_width_every_weight_lands_in_place(tmp_path):
    net = original_net(width=16, values=Values("ids"))
    netd = original_netd(width=8, values=Values("ids"))
    cfg, generator, discriminator = _convert(tmp_path, net, netd)
    assert (cfg.model.g_width, cfg.model.d_width, cfg.model.frames, cfg.model.size) == (16, 8, 32, 64)
    _check_placement(net, netd, generator, discriminator)


@pytest.mark.parametrize("flavor", [
    Flavor(),
    Flavor(gpu=True, running_std=True, legacy=True),  # GPU training with the early-2016 nn classes
], ids=["cpu-nn", "gpu-2016"])
def test_converted_generator_reproduces_torch(tmp_path, flavor):
    net = original_net(z_dim=20, width=16, values=Values("random", seed=1), flavor=flavor)
    _, generator, _ = _convert(tmp_path, net)
    z = np.random.default_rng(2).normal(size=(2, 20))
    with torch.no_grad():
        out = generator(torch.from_numpy(z).float())
    f, m, b = torch_forward(w.Sequential(*net["modules"][:2]), z)  # {f, m, b} after FlattenTable
    video = torch_forward(net, z)
    assert video.shape == (2, 3, 32, 64, 64) and 0.05 < m.std()  # a mask that varies, not a saturated one
    for ours, theirs in ((out.foreground, f), (out.mask, m), (out.background, b), (out.video, video)):
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=2e-5)


def test_converted_discriminator_reproduces_torch_and_its_labels(tmp_path):
    net, netd = original_net(width=16), original_netd(width=8, values=Values("random", seed=3))
    _, _, discriminator = _convert(tmp_path, net, netd)
    clips = np.random.default_rng(4).uniform(-1, 1, (2, 3, 32, 64, 64))
    theirs = torch_forward(netd, clips)  # [2, 2]: CrossEntropyCriterion targets real_label = 1 -> column 0
    with torch.no_grad():
        ours = discriminator(torch.from_numpy(clips).float())
    np.testing.assert_allclose(ours.numpy(), theirs[:, ::-1], rtol=0, atol=2e-5)
    p_real_torch = np.exp(theirs[:, 0]) / np.exp(theirs).sum(1)
    np.testing.assert_allclose(real_probability(ours).numpy(), p_real_torch, rtol=0, atol=1e-6)


def test_a_discriminator_sure_of_real_stays_sure_of_real(tmp_path):
    """The label convention end to end: a netD whose last layer always says Lua class 1
    (main.lua's real_label)."""
    netd = original_netd(width=8, values=Values("random", seed=5))
    head = netd["modules"][-2]
    head["weight"].array()[...] = 0
    head["bias"].array()[...] = [6.0, -6.0]  # logit of class 1 (real) high, class 2 (fake) low
    _, _, discriminator = _convert(tmp_path, original_net(width=16), netd)
    with torch.no_grad():
        p = real_probability(discriminator(torch.zeros(2, 3, 32, 64, 64)))
    assert torch.all(p > 0.999)


@pytest.mark.parametrize("layer,dims", [
    # Non-square kernels, strides and paddings on every axis: an H/W or T/H mix-up changes the output.
    # VolumetricFullConvolution(nIn 3, nOut 4, kT 2, kW 3, kH 5, dT 1, dW 2, dH 3, padT 0, padW 1, padH 2)
    (lambda weight, bias: w.VolumetricFullConvolution(3, 4, 2, 3, 5, 1, 2, 3, 0, 1, 2, weight=weight,
                                                      bias=bias),
     (3, 4, 2, 5, 3)),
    (lambda weight, bias: w.VolumetricConvolution(3, 4, 2, 3, 5, 1, 2, 3, 0, 1, 2, weight=weight, bias=bias),
     (4, 3, 2, 5, 3)),
    (lambda weight, bias: w.SpatialFullConvolution(3, 4, 3, 5, 2, 3, 1, 2, weight=weight, bias=bias),
     (3, 4, 5, 3)),
    # The early-2016 VolumetricFullConvolution: [nOut, nIn, kT, kH, kW], square in H and W (THNN required it).
    (lambda weight, bias: w.VolumetricFullConvolution(3, 4, 2, 3, 3, 1, 2, 2, 0, 1, 1, weight=weight,
                                                      bias=bias, legacy=True),
     (4, 3, 2, 3, 3)),
], ids=["VolumetricFullConvolution", "VolumetricConvolution", "SpatialFullConvolution",
        "legacy-VolumetricFullConvolution"])
def test_axis_order_of_each_layer(tmp_path, layer, dims):
    rng = np.random.default_rng(6)
    m = layer(w.tensor(rng.normal(size=dims)), w.tensor(rng.normal(size=4)))
    ours = torch_layer(read_t7(w.save(tmp_path / "layer.t7", m)))
    x = rng.normal(size=(2, 3, 4, 6, 7) if len(dims) == 5 else (2, 3, 6, 7))
    expected = torch_forward(m, x)
    with torch.no_grad():
        got = ours(torch.from_numpy(x).float()).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_old_batchnorm_running_std(tmp_path):
    """running_std (2016) holds the average of 1/sqrt(var + eps): var = running_std^-2 - eps, as nn's
    BN:read."""
    old = original_net(width=16, values=Values("random", seed=7), flavor=Flavor(running_std=True))
    _, generator, _ = _convert(tmp_path, old)
    bn_torch = old["modules"][0]["modules"][0]["modules"][2]
    std = bn_torch["running_std"].array().astype(np.float64)
    np.testing.assert_allclose(generator.foreground_stream.net[1].running_var.numpy(), std ** -2 - 1e-5,
                               rtol=1e-6)


# ----------------------------------------------------------------------------- errors

def _one_line_error(path, match, discriminator=None, net=None):
    with pytest.raises(T7Error) as info:
        if discriminator is None:
            convert_generator(read_t7(path), path)
        else:
            cfg, _ = convert_generator(read_t7(net), net)
            convert_discriminator(read_t7(discriminator), discriminator, cfg)
    message = str(info.value)
    assert match in message and "\n" not in message and str(path) in message, message
    return message


@pytest.mark.parametrize("content,match", [
    (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a Torch7 file: expected a serialized Torch object"),
    (b"hello, world\n", "not a Torch7 file"),
    (b"", "found an empty file"),
    (b"4\n1\n3\nV 1\n", "ASCII format"),
])
def test_not_a_torch7_file(tmp_path, content, match):
    path = tmp_path / "x.t7"
    path.write_bytes(content)
    _one_line_error(path, match)


@pytest.mark.parametrize("keep", [10, 0.3, 0.7, -3],
                         ids=["in-a-header", "in-the-parameters", "later", "in-the-last-field"])
def test_truncated_file(tmp_path, keep):
    data = w.dumps(original_net(width=16))
    cut = int(len(data) * keep) if isinstance(keep, float) else keep if keep > 0 else len(data) + keep
    path = tmp_path / "iter1000_net.t7"
    path.write_bytes(data[:cut])
    _one_line_error(path, f"truncated Torch7 file: it ends at byte {cut}")


def test_truncated_in_the_last_storage(tmp_path):
    """A file ending inside a storage: plain torchfile returns a short array and views memory past it."""
    data = w.dumps(w.tensor(np.arange(100.0)))
    path = tmp_path / "tensor.t7"
    path.write_bytes(data[:-6])
    with pytest.raises(T7Error, match=f"truncated Torch7 file: it ends at byte {len(data) - 6}"):
        read_t7(path)
    path.write_bytes(data)
    np.testing.assert_array_equal(read_t7(path), np.arange(100.0))


def test_network_of_another_shape(tmp_path):
    # The static stream one stage short: a layer count mismatch, naming the stream and the layers.
    net = original_net(width=16)
    static = net["modules"][0]["modules"][1]
    del static["modules"][-5:-2]
    msg = _one_line_error(w.save(tmp_path / "short.t7", net), "expected 14 layers")
    assert "net.modules[1].modules[2] (nn.Sequential)" in msg and "found 11" in msg
    # A channel count that does not halve: names the module, its shape and the one expected.
    net = original_net(width=16)
    video = net["modules"][0]["modules"][0]
    conv = video["modules"][4]
    conv.fields["nOutputPlane"] = 6
    conv.fields["weight"] = w.tensor(np.zeros((16, 6, 4, 4, 4)))
    msg = _one_line_error(w.save(tmp_path / "narrow.t7", net),
                          "net.modules[1].modules[1].modules[5] (nn.VolumetricFullConvolution)")
    assert "expected 16->8, kernel 4x4x4" in msg and "found 16->6" in msg
    # A weight whose shape disagrees with the module's own fields.
    net = original_net(width=16)
    net["modules"][0]["modules"][1]["modules"][1].fields["weight"] = w.tensor(np.zeros((100, 16, 4, 5)))
    _one_line_error(w.save(tmp_path / "bad_weight.t7", net),
                    "expected a weight 100x16x4x4 (nInputPlane x nOutputPlane x kH x kW)")
    # A composition that is not m*f + (1-m)*b over the generator's 32 frames.
    net = original_net(width=16)
    sta_part = net["modules"][2]["modules"][1]
    sta_part["modules"][0]["modules"][0]["modules"][1].fields["nfeatures"] = 16
    msg = _one_line_error(w.save(tmp_path / "composition.t7", net),
                          "expected the original's composition m*f + (1-m)*b")
    assert "expected Replicate(32,3)" in msg and "found Replicate(16,3)" in msg


def test_swapped_files(tmp_path):
    net = w.save(tmp_path / "net.t7", original_net(width=16))
    netd = w.save(tmp_path / "netD.t7", original_netd(width=8))
    _one_line_error(netd, "this looks like a discriminator: pass it with --discriminator")
    _one_line_error(net, "this looks like a generator", discriminator=net, net=net)
    # A discriminator for other clips than the generator's.
    other = w.save(tmp_path / "netD16.t7", original_netd(width=8, frames=16, size=32))
    msg = _one_line_error(other, "expected 11 layers", discriminator=other, net=net)
    assert "found 8" in msg


# ----------------------------------------------------------------------------- hostile files: claims not held

def _first_conv(net: w.Object) -> w.Object:
    """The video stream's first VolumetricFullConvolution (from z): its nOutputPlane sets G's width."""
    return net["modules"][0]["modules"][0]["modules"][1]


def _claiming_planes(planes: int, z_dim: int = 100, stored: bool = False) -> w.Object:
    """A width-16 generator whose first layer claims `planes` output planes. Its weight and bias are stride-0
    views of one stored value (a file under a megabyte claiming any width), or with `stored`, values held."""
    net = original_net(z_dim=z_dim, width=16)
    conv = _first_conv(net)
    conv.fields["nOutputPlane"] = planes
    shape = (z_dim, planes, 2, 4, 4)
    conv.fields["weight"] = w.tensor(np.zeros(shape)) if stored else w.expanded(0.0, shape)
    conv.fields["bias"] = w.tensor(np.zeros(planes)) if stored else w.expanded(0.0, (planes,))
    return net


@pytest.fixture
def generators_built(monkeypatch) -> list[str]:
    """The device of every generator that the conversion builds ("meta": shapes only, no memory)."""
    built = []

    def spy(cfg):
        built.append(torch.get_default_device().type)
        return TwoStreamGenerator(cfg)

    monkeypatch.setattr(t7, "TwoStreamGenerator", spy)
    return built


@pytest.mark.parametrize("planes", [8192, 65536])
def test_planes_claimed_by_an_expanded_weight(tmp_path, planes):
    """A stride-0 weight passing for 8,192 (65,536) planes: refused while reading, before any net is built."""
    path = w.save(tmp_path / "net.t7", _claiming_planes(planes))
    _one_line_error(path, f"found a tensor of size [100, {planes}, 2, 4, 4] whose strides [0, 0, 0, 0, 0] "
                          "reach some element twice")


def test_planes_claimed_beyond_any_paper_net(tmp_path, generators_built):
    """A first layer that holds its 8,192 planes (z of 1 keeps the file small) makes a generator of billions
    of parameters: refused from its shapes alone, before any memory is spent on it."""
    path = w.save(tmp_path / "net.t7", _claiming_planes(8192, z_dim=1, stored=True))
    _one_line_error(path, "the generator of width 8192 making 32x64x64 clips would hold 3,524,012,039 "
                          "parameters; expected at most 67,108,864")
    assert generators_built == ["meta"]


def test_planes_claimed_within_bounds_are_checked_against_every_layer(tmp_path, generators_built):
    """Width 1,024 stays under the bound, but the next layer holds 16 planes: refused before any real net."""
    path = w.save(tmp_path / "net.t7", _claiming_planes(1024, z_dim=1, stored=True))
    _one_line_error(path, "net.modules[1].modules[1].modules[3] (nn.VolumetricBatchNormalization): expected "
                          "running_var of 1024 values, found 16")
    assert generators_built == ["meta"]
    _convert(tmp_path, original_net(width=16))  # a file that holds its net: built for real once checked
    assert generators_built == ["meta", "meta", "cpu"]


def _storage(n: int = 100) -> w.Storage:
    return w.Storage(np.zeros(n, np.float32))


@pytest.mark.parametrize("obj,match", [
    (w.Tensor(_storage(), (16, 8), (1, 1)), "size [16, 8] whose strides [1, 1] reach some element twice"),
    (w.Tensor(_storage(), (10, 10), (0, 1)), "size [10, 10] whose strides [0, 1] reach some element twice"),
    (w.Tensor(_storage(), (-1, 10), (10, 1)), "a tensor of size [-1, 10], stride [10, 1], offset 0"),
    (w.Tensor(_storage(), (10, 10), (-10, 1)), "a tensor of size [10, 10], stride [-10, 1]"),
    (w.Tensor(_storage(), (10,), (1,), offset=-5), "a tensor of size [10], stride [1], offset -5"),
    (w.Tensor(_storage(), (10,), (1,), offset=2**62), f"a tensor reaching element {2**62 + 10} of a storage"),
    (w.Tensor(_storage(), (2**40, 2**40), (2**40, 1)), f"a tensor reaching element {2**80} of a storage"),
    (w.Tensor(w.Storage(np.zeros(4, np.uint8), "torch.ByteStorage"), (4,), (1,)),
     "a tensor of float32 over a storage of uint8"),
    (w.Tensor(w.tensor(np.zeros(4)), (4,), (1,)), "a tensor whose storage is not a storage"),
    (w.Storage(np.zeros(4, np.float32), count=-1), "a storage of -1 elements"),
    (w.Function(b"\x1bLua", length=-1), "a length of -1"),
    (w.Table([(w.Table([(1, 1)]), 1)]), "unhashable type: 'list'"),  # a key torchfile turns into a list
], ids=["overlapping", "stride-0-axis", "negative-size", "negative-stride", "negative-offset",
        "offset-past-storage", "past-storage", "another-type", "storage-a-tensor", "negative-storage",
        "negative-function", "table-key"])
def test_objects_claiming_what_they_do_not_hold(tmp_path, obj, match):
    path = tmp_path / "x.t7"
    path.write_bytes(w.dumps(obj))
    msg = _one_line_error(path, match)
    assert "not a readable Torch7 file" in msg


@pytest.mark.parametrize("obj", [
    w.Storage(np.zeros(4, np.float32), count=2**60),
    w.Function(b"\x1bLua", length=2**31 - 1),  # torchfile reads the bytecode with f.read(length)
    w.Table([(1, "x" * 10)]),  # the string's length field is patched below
], ids=["storage", "function", "string"])
def test_lengths_beyond_the_end_of_the_file(tmp_path, obj):
    data = w.dumps(obj)
    if isinstance(obj, w.Table):
        data = data.replace(struct.pack("<i", 10) + b"x" * 10, struct.pack("<i", 2**31 - 1) + b"x" * 10)
    path = tmp_path / "x.t7"
    path.write_bytes(data)
    _one_line_error(path, f"truncated Torch7 file: it ends at byte {len(data)}")


def test_tables_nested_too_deep_to_read(tmp_path):
    path = tmp_path / "deep.t7"
    path.write_bytes(w.nested_tables(100_000))
    _one_line_error(path, "not a readable Torch7 file: found tables nested too deep to read")
    path.write_bytes(w.nested_tables(50))  # a few levels read as they are
    inner = read_t7(path)
    for _ in range(50):
        inner = inner[0]
    assert inner == []  # torchfile reads the innermost, empty table as a list


def test_a_module_containing_itself(tmp_path):
    """A cycle in the module tree, which the checks walk recursively."""
    net = original_net(width=16)
    loop = w.Sequential()
    loop.fields["modules"].append(loop)
    net["modules"][0]["modules"][1]["modules"].append(loop)  # in the static stream
    _one_line_error(w.save(tmp_path / "loop.t7", net),
                    "modules nested more than 32 deep (a module containing itself?)")


@pytest.mark.parametrize("field,value,match", [
    ("nOutputPlane", 10**12, "expected nOutputPlane a whole number from 1 to 65536, found 1000000000000"),
    ("nOutputPlane", -16, "expected nOutputPlane a whole number from 1 to 65536, found -16"),
    ("nOutputPlane", 2.5, "expected nOutputPlane a whole number from 1 to 65536, found 2.5"),
    ("nOutputPlane", float("nan"), "expected field nOutputPlane a finite number, found nan"),
    ("nInputPlane", float("inf"), "expected field nInputPlane a finite number, found inf"),
    ("kT", 0, "expected kT a whole number from 1 to 256, found 0"),
    ("dT", 10**9, "expected dT a whole number from 1 to 256, found 1000000000"),
    ("padT", -1, "expected padT a whole number from 0 to 256, found -1"),
])
def test_absurd_layer_fields(tmp_path, field, value, match):
    net = original_net(width=16)
    _first_conv(net).fields[field] = value
    msg = _one_line_error(w.save(tmp_path / "net.t7", net), match)
    assert "net.modules[1].modules[1].modules[2] (nn.VolumetricFullConvolution)" in msg


def test_a_clip_shape_beyond_bounds(tmp_path):
    """Kernels and strides within bounds that multiply into clips of half a million frames."""
    net = original_net(width=16)
    video = net["modules"][0]["modules"][0]
    video["modules"][1].fields["kT"] = 256  # 256 frames from z
    video["modules"][4].fields["dT"] = 256  # (256 - 1) * 256 - 2 + 4 frames, then doubled three times
    _one_line_error(w.save(tmp_path / "net.t7", net),
                    "the generator makes 522256x64x64 clips; expected at most 4096 frames of 4096x4096")


def test_absurd_sizes_of_a_single_layer(tmp_path):
    """torch_layer: a layer claiming 65,536 x 65,536 planes and 256**3 kernels, held by an expanded weight,
    then by stored values of another shape: refused before any layer exists."""
    shape = (2**16, 2**16, 256, 256, 256)
    m = w.VolumetricFullConvolution(2**16, 2**16, 256, 256, 256, weight=w.expanded(0.0, shape),
                                    bias=w.expanded(0.0, (2**16,)))
    with pytest.raises(T7Error, match="reach some element twice"):
        torch_layer(read_t7(w.save(tmp_path / "layer.t7", m)))
    m.fields["weight"], m.fields["bias"] = w.tensor(np.zeros((2, 2, 1, 1, 1))), w.tensor(np.zeros(2))
    with pytest.raises(T7Error, match="would hold 72,057,594,037,993,472 parameters; expected at most "):
        torch_layer(read_t7(w.save(tmp_path / "layer.t7", m)))


@pytest.mark.parametrize("eps,match", [
    (float("nan"), "expected field eps a finite number, found nan"),
    (-1e-3, "expected a positive BatchNorm eps in the discriminator, found -0.001"),
])
def test_absurd_discriminator_eps(tmp_path, eps, match):
    net, netd = w.save(tmp_path / "net.t7", original_net(width=16)), original_netd(width=8)
    for m in _modules(netd):
        if m.kind.endswith("BatchNormalization"):
            m.fields["eps"] = eps
    path = w.save(tmp_path / "netD.t7", netd)
    _one_line_error(path, match, discriminator=path, net=net)


_PEAK_MEMORY = """
import json, resource, sys
import videogan.interop.t7  # imported before the limit: the limit is on what the import itself allocates
from videogan.cli import main

# The address space now plus 1 GiB: a net of the claimed widths (13 GB and more) cannot be allocated, so a
# regression fails at once instead of filling the machine.
with open("/proc/self/status") as status:
    now = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
limit = now + 2**30 if hard == resource.RLIM_INFINITY else min(now + 2**30, hard)
resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
codes = [main(["import-t7", path, "--out", path + ".run", "--quiet"]) for path in sys.argv[1:]]
# VmHWM, this process image's own peak: ru_maxrss would carry over the parent's peak through exec.
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"codes": codes, "peak": peak}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_peak_memory_of_hostile_files(tmp_path):
    """`import-t7` on files claiming 8,192 and 65,536 planes (nets of 13 GB and 550 GB), one that holds a
    width of 8,192 in its first layer, and one claiming a 2 GB Lua function: one-line errors, under 1 GiB."""
    files = [w.save(tmp_path / "expanded_8192.t7", _claiming_planes(8192)),
             w.save(tmp_path / "expanded_65536.t7", _claiming_planes(65536)),
             w.save(tmp_path / "stored_8192.t7", _claiming_planes(8192, z_dim=1, stored=True)),
             w.save(tmp_path / "function.t7", w.Function(b"\x1bLua", length=2**31 - 1))]
    done = subprocess.run([sys.executable, "-c", _PEAK_MEMORY, *map(str, files)], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    errors = done.stderr.splitlines()
    assert result["codes"] == [2] * len(files) and len(errors) == len(files), done.stderr
    for path, error in zip(files, errors, strict=True):
        assert error.startswith(f"videogan: error: {path}: "), error
    assert "truncated Torch7 file" in errors[-1]
    assert result["peak"] < 2**30
    assert not any(path.with_name(path.name + ".run").exists() for path in files)


# ----------------------------------------------------------------------------- the command line

def test_cli_import_then_generate(tmp_path, capsys):
    originals = tmp_path / "models" / "golf"
    originals.mkdir(parents=True)
    # 16 frames of 32x32 (three stages) keep the GIFs cheap; the paper's shapes are tested above.
    net = w.save(originals / "iter65000_net.t7", original_net(width=16, frames=16, size=32,
                                                              flavor=Flavor(gpu=True)))
    netd = w.save(originals / "iter65000_netD.t7",
                  original_netd(width=8, frames=16, size=32, flavor=Flavor(gpu=True)))
    run = tmp_path / "golf"
    assert main(["import-t7", str(net), "--discriminator", str(netd), "--out", str(run), "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 65000 and Path(result["checkpoint"]).name == "step_00065000"
    ckpt = load_checkpoint(run)
    m = ckpt.config.model
    assert (m.g_width, m.d_width, m.frames, m.size) == (16, 8, 16, 32)
    assert ckpt.discriminator is not None and ckpt.generator_ema is None
    source = ckpt.meta["imported_from"]
    assert source["generator"]["sha256"] == hashlib.sha256(net.read_bytes()).hexdigest()
    assert source["discriminator"]["name"] == "iter65000_netD.t7"
    assert json.loads((run / "config.json").read_text()) == ckpt.config.to_dict()

    samples = tmp_path / "samples"
    assert main(["generate", str(run), "--num", "2", "--out", str(samples), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == "live"
    assert (samples / "composite.gif").is_file() and (samples / "background.png").is_file()

    # evaluate --fake reads the run as it reads a trained one
    from videogan.metrics.evaluate import Protocol, run_clips
    clips = next(run_clips(str(run), Protocol(num=2, frames=16, size=32, seed=0), batch_size=2,
                           device=torch.device("cpu")))
    assert clips.shape == (2, 3, 16, 32, 32) and clips.dtype == torch.uint8

    # Again into the same folder: refused, nothing overwritten.
    assert main(["import-t7", str(net), "--out", str(run), "--quiet"]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def test_cli_without_discriminator_and_errors(tmp_path, capsys):
    net = w.save(tmp_path / "net.t7", original_net(width=16, frames=16, size=32))
    run = tmp_path / "run"
    assert main(["import-t7", str(net), "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    ckpt = load_checkpoint(run)
    assert (ckpt.discriminator is None and not (ckpt.path / "discriminator.safetensors").exists()
            and ckpt.step == 0)
    assert load_generator(run).weights == "live"
    # Training cannot resume from it (no discriminator, no optimiser state): a clear error, not a KeyError.
    cfg = ckpt.config
    state = TrainingState(TwoStreamGenerator(cfg.model), Discriminator(cfg.model), opt_g=None, opt_d=None)
    with pytest.raises(CheckpointError, match="training cannot resume from it"):
        restore_training_state(run, cfg, state)
    (tmp_path / "junk.t7").write_bytes(b"junk data")
    assert main(["import-t7", str(tmp_path / "junk.t7"), "--out", str(tmp_path / "r2"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("videogan: error:") and "not a Torch7 file" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r2").exists()



def test_file_sha256_reads_files_larger_than_one_block(tmp_path):
    """media.file_sha256 (the sources' digests here, and the I3D weights'): the whole file, across 1 MiB
    blocks."""
    from videogan.media import file_sha256

    data = bytes(range(256)) * ((1 << 20) // 256 * 2 + 3)  # 2 MiB + 768 bytes: three blocks, the last short
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == file_sha256(str(path)) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
