"""A faster transposed 3-D convolution for CPU: one matrix multiply + an overlap-add.

A transposed convolution scatters every input voxel, times the kernel, into the output:

    y[b, o, t*s_t - p_t + a, h*s_h - p_h + c, w*s_w - p_w + e] += x[b, i, t, h, w] * weight[i, o, a, c, e]

so it is exactly (1) one GEMM, cols[(o, a, c, e), (b, t, h, w)] = weight.view(Cin, -1)^T @ x[:, i, ...], which
gives every voxel's contribution for every kernel tap, followed by (2) an overlap-add of the kT*kH*kW tap
slices of cols into the output, each at its own offset and stride ("col2vol"; F.fold is the 2-D version,
3-D has none). This is what Torch7's VolumetricFullConvolution did, batched: one GEMM for the whole batch.

Why: oneDNN, PyTorch's CPU kernel for ConvTranspose3d, runs the paper generator's first upsampling (512 -> 256
channels at 2x4x4, 32 voxels per clip) well below the matrix-multiply peak, its backward most of all
(its weight gradient goes through an im2col GEMM). There the GEMM has a good shape (K = Cin = 512, M*N large),
the overlap-add only moves a little memory, and the backward is three plain GEMMs
(see benchmarks/RESULTS.md, "Faster transposed convolutions"). Where oneDNN does as well or better
(the wider-voxel layers, the thin RGB and mask heads, where the cols buffer, 64 times the output, makes the
GEMM path memory-bound) it stays in charge, as does cuDNN on GPUs: `use_gemm` is the rule.

The phase rewrite (8 stride-1 convolutions with 2x2x2 sub-kernels and a depth-to-space shuffle) is exact too,
but oneDNN ran it slower than the stock layer on every generator shape, so it is not used (RESULTS.md).

The maths is unchanged: the same parameters (weight [Cin, Cout, kT, kH, kW], bias [Cout]) and the same sums,
in a different order (float32 results agree to rounding; tests compare values and all gradients with the stock
module). Groups, dilation and output_padding are not needed by the generator: those layers stay stock.
"""
from __future__ import annotations

import torch
from torch import nn

Triple = tuple[int, int, int]

# The shape rule, from CPU measurements (benchmarks/RESULTS.md, "Faster transposed convolutions"): the
# GEMM path wins for wide layers with few input voxels per clip (the paper's first upsampling, 512 -> 256
# at 2x4x4). On narrow ones (the tiny preset's 64 -> 32) the overlap-add's kT*kH*kW small operations cost
# more than the GEMM saves, and on the thin heads (64 -> 3, 64 -> 1) its cols buffer, 64 times the
# output, is memory-bound.
GEMM_MAX_INPUT_VOXELS = 64
GEMM_MIN_WEIGHTS = 1 << 16  # Cin * Cout


def tap_ranges(n_in: int, n_out: int, stride: int, padding: int, tap: int) -> tuple[slice, slice]:
    """Along one dimension: the input indices i whose output o = i*stride - padding + tap lands in [0, n_out),
    as (input slice, output slice with the stride). Empty slices when the tap misses the output entirely."""
    first = max(0, -((tap - padding) // stride))  # smallest i with i*stride - padding + tap >= 0
    last = min(n_in - 1, (n_out - 1 + padding - tap) // stride)  # largest i with o <= n_out - 1
    if last < first:
        return slice(0, 0), slice(0, 0)
    o_first = first * stride - padding + tap
    return slice(first, last + 1), slice(o_first, o_first + (last - first) * stride + 1, stride)


def output_size(n_in: Triple, kernel: Triple, stride: Triple, padding: Triple) -> Triple:
    return tuple((n - 1) * s - 2 * p + k for n, k, s, p in zip(n_in, kernel, stride, padding, strict=True))  # type: ignore[return-value]


def _taps(n_in: Triple, n_out: Triple, kernel: Triple, stride: Triple, padding: Triple):
    """Every kernel tap (a, c, e) that reaches the output, with its input and output index slices per dim."""
    for a in range(kernel[0]):
        it, ot = tap_ranges(n_in[0], n_out[0], stride[0], padding[0], a)
        for c in range(kernel[1]):
            ih, oh = tap_ranges(n_in[1], n_out[1], stride[1], padding[1], c)
            for e in range(kernel[2]):
                iw, ow = tap_ranges(n_in[2], n_out[2], stride[2], padding[2], e)
                if it.stop > it.start and ih.stop > ih.start and iw.stop > iw.start:
                    yield (a, c, e), (it, ih, iw), (ot, oh, ow)


def col2vol(cols: torch.Tensor, n_out: Triple, stride: Triple, padding: Triple) -> torch.Tensor:
    """Overlap-add: cols [C, kT, kH, kW, B, T, H, W] (the GEMM's output) -> y [C, B, T', H', W']. Each tap's
    slice is a contiguous [C, B, T, H, W] block, added into its strided output window."""
    C, kT, kH, kW, B, *n_in = cols.shape
    n_in, kernel = tuple(n_in), (kT, kH, kW)
    out = cols.new_zeros(C, B, *n_out)
    for (a, c, e), (it, ih, iw), (ot, oh, ow) in _taps(n_in, n_out, kernel, stride, padding):
        out[:, :, ot, oh, ow] += cols[:, a, c, e, :, it, ih, iw]
    return out


def vol2col(grad: torch.Tensor, n_in: Triple, kernel: Triple, stride: Triple,
            padding: Triple) -> torch.Tensor:
    """The adjoint of col2vol (its backward): gather every tap's output window.
    grad [C, B, T', H', W'] -> cols [C, kT, kH, kW, B, T, H, W]; taps that fall off the output read zeros."""
    C, B, *n_out = grad.shape
    cols = grad.new_zeros(C, *kernel, B, *n_in)
    for (a, c, e), (it, ih, iw), (ot, oh, ow) in _taps(n_in, tuple(n_out), kernel, stride, padding):
        cols[:, a, c, e, :, it, ih, iw] = grad[:, :, ot, oh, ow]
    return cols


class _Col2Vol(torch.autograd.Function):
    """col2vol with vol2col as its backward: autograd's own backward of 64 in-place slice additions would
    materialise a zero-filled copy of cols per tap."""

    @staticmethod
    def forward(ctx, cols: torch.Tensor, n_out: Triple, stride: Triple, padding: Triple) -> torch.Tensor:
        ctx.geometry = (tuple(cols.shape[5:8]), tuple(cols.shape[1:4]), stride, padding)
        return col2vol(cols, n_out, stride, padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        n_in, kernel, stride, padding = ctx.geometry
        return vol2col(grad, n_in, kernel, stride, padding), None, None, None


def conv_transpose3d_gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          stride: Triple, padding: Triple) -> torch.Tensor:
    """F.conv_transpose3d(x, weight, bias, stride, padding) as GEMM + overlap-add (groups 1, dilation 1, no
    output_padding). x [B, Cin, T, H, W], weight [Cin, Cout, kT, kH, kW] -> y [B, Cout, T', H', W']
    (contiguous). Differentiable by autograd in x, weight and bias."""
    B, cin, *n_in = x.shape
    _, cout, *kernel = weight.shape
    assert x.ndim == 5 and weight.shape[0] == cin, \
        f"x {list(x.shape)} does not fit weight {list(weight.shape)}"
    n_in, kernel = tuple(n_in), tuple(kernel)
    n_out = output_size(n_in, kernel, stride, padding)
    # cols = W^T X with W^T a transposed view: BLAS reads it in place, and autograd's mm backward
    # returns the weight gradient in the weight's own layout, so the (large) weight is never copied. X
    # is the (small) input.
    w_t = weight.reshape(cin, -1).t()  # [Cout*kT*kH*kW, Cin], a view
    x_cols = x.transpose(0, 1).reshape(cin, -1)  # [Cin, B*T*H*W]
    cols = (w_t @ x_cols).view(cout, *kernel, B, *n_in)  # [Cout, kT, kH, kW, B, T, H, W]
    # [B, Cout, T', H', W'], a view
    y = _Col2Vol.apply(cols, n_out, tuple(stride), tuple(padding)).transpose(0, 1)
    y = y.contiguous()
    return y if bias is None else y + bias.view(1, -1, 1, 1, 1)


def use_gemm(x: torch.Tensor, out_channels: int) -> bool:
    """The measured rule (GEMM_*): GEMM + overlap-add on CPU for wide layers with few input voxels; stock
    otherwise, and always on GPUs (cuDNN's kernels are not measured against it here)."""
    voxels = x.shape[2] * x.shape[3] * x.shape[4]
    wide = x.shape[1] * out_channels >= GEMM_MIN_WEIGHTS
    return x.device.type == "cpu" and wide and voxels <= GEMM_MAX_INPUT_VOXELS


def _layout(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
    return torch.channels_last_3d if channels_last else torch.contiguous_format


class FastConvTranspose3d(nn.ConvTranspose3d):
    """nn.ConvTranspose3d (same parameters, state_dict and maths) with the GEMM + overlap-add kernel where it
    is faster. `impl`: "auto" (the `use_gemm` rule: CPU only), "gemm" (always, any device) or "stock"
    (PyTorch's kernel). The output has the input's memory layout (contiguous or channels_last_3d), as with the
    stock layer."""

    def __init__(self, *args, impl: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        if impl not in ("auto", "gemm", "stock"):
            raise ValueError(f"impl must be auto, gemm or stock, got {impl!r}")
        if impl != "stock" and (self.groups != 1 or self.dilation != (1, 1, 1) or any(self.output_padding)
                                or self.padding_mode != "zeros" or isinstance(self.padding, str)):
            raise ValueError("FastConvTranspose3d's GEMM path needs groups 1, dilation 1, no output_padding")
        self.impl = impl

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.impl == "stock" or output_size is not None or x.ndim != 5:
            return super().forward(x, output_size)
        if self.impl == "gemm" or use_gemm(x, self.out_channels):
            return conv_transpose3d_gemm(x, self.weight, self.bias, self.stride, self.padding).contiguous(
                memory_format=_layout(x))  # the input's layout, so that everything downstream keeps it
        return super().forward(x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", impl={self.impl}"

