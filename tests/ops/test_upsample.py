"""The GEMM + overlap-add transposed convolution equals PyTorch's, values and every gradient."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videogan.config import ModelConfig
from videogan.models import build_generator
from videogan.ops.upsample import (
    GEMM_MAX_INPUT_VOXELS,
    GEMM_MIN_WEIGHTS,
    FastConvTranspose3d,
    _Col2Vol,
    col2vol,
    conv_transpose3d_gemm,
    output_size,
    tap_ranges,
    use_gemm,
    vol2col,
)

# (batch, cin, cout, input T H W, kernel, stride, padding): the generator's two geometries at odd sizes and
# batch 1, then other kernels / strides / paddings the overlap-add handles the same way.
CASES = [
    (1, 3, 5, (1, 1, 1), (4, 4, 4), (2, 2, 2), (1, 1, 1)),
    (2, 4, 3, (3, 5, 2), (4, 4, 4), (2, 2, 2), (1, 1, 1)),
    (3, 5, 1, (2, 3, 4), (3, 4, 4), (1, 2, 2), (1, 1, 1)),
    (1, 2, 4, (5, 1, 3), (3, 4, 4), (1, 2, 2), (1, 1, 1)),
    # the generator's first layer (kernel = core, stride 1)
    (2, 3, 2, (2, 3, 3), (2, 4, 4), (1, 1, 1), (0, 0, 0)),
    (2, 3, 2, (3, 2, 4), (5, 3, 2), (3, 2, 1), (2, 0, 1)),
]


def _inputs(case, dtype, seed=0):
    b, cin, cout, n, k, s, p = case
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cin, *n, generator=gen, dtype=dtype, requires_grad=True)
    w = torch.randn(cin, cout, *k, generator=gen, dtype=dtype, requires_grad=True)
    bias = torch.randn(cout, generator=gen, dtype=dtype, requires_grad=True)
    return x, w, bias, s, p


def _value_and_grads(fn, x, w, bias):
    y = fn(x, w, bias)
    grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    return (y, *torch.autograd.grad(y, (x, w, bias), grad_y))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 2e-5)])
def test_gemm_equals_stock_values_and_gradients(case, dtype, tol):
    x, w, bias, s, p = _inputs(case, dtype)
    ours = _value_and_grads(lambda x, w, b: conv_transpose3d_gemm(x, w, b, s, p), x, w, bias)
    stock = _value_and_grads(lambda x, w, b: F.conv_transpose3d(x, w, b, s, p), x, w, bias)
    for name, a, b in zip(("y", "grad x", "grad weight", "grad bias"), ours, stock, strict=True):
        assert a.shape == b.shape, name
        scale = b.abs().max().item() + 1.0
        assert (a - b).abs().max().item() <= tol * scale, name


def test_output_size_and_tap_ranges():
    assert output_size((2, 4, 4), (4, 4, 4), (2, 2, 2), (1, 1, 1)) == (4, 8, 8)
    assert output_size((5, 4, 4), (3, 4, 4), (1, 2, 2), (1, 1, 1)) == (5, 8, 8)
    # kernel 4, stride 2, padding 1, 3 inputs -> 6 outputs: tap 0 lands at 2i - 1 (i >= 1), tap 3 at 2i + 2
    # (i <= 1)
    assert tap_ranges(3, 6, 2, 1, 0) == (slice(1, 3), slice(1, 4, 2))
    assert tap_ranges(3, 6, 2, 1, 3) == (slice(0, 2), slice(2, 5, 2))
    assert tap_ranges(1, 1, 1, 1, 0) == (slice(0, 0), slice(0, 0))  # lands at -1: misses


def test_overlap_add_backward_is_its_adjoint():
    # <col2vol(c), y> = <c, vol2col(y)> for random c and y, and gradcheck of the autograd Function on
    # a tiny case.
    gen = torch.Generator().manual_seed(0)
    n_in, kernel, stride, padding = (2, 3, 2), (3, 4, 4), (1, 2, 2), (1, 1, 1)
    n_out = output_size(n_in, kernel, stride, padding)
    # [C, kT, kH, kW, B, T, H, W]
    cols = torch.randn(3, *kernel, 2, *n_in, generator=gen, dtype=torch.float64)
    y = torch.randn(3, 2, *n_out, generator=gen, dtype=torch.float64)  # [C, B, T', H', W']
    lhs = (col2vol(cols, n_out, stride, padding) * y).sum()
    rhs = (cols * vol2col(y, n_in, kernel, stride, padding)).sum()
    assert abs(lhs.item() - rhs.item()) <= 1e-10 * abs(rhs.item())
    tiny = torch.randn(1, 3, 4, 4, 1, 1, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    tiny_out = output_size((1, 2, 2), kernel, stride, padding)
    assert torch.autograd.gradcheck(lambda c: _Col2Vol.apply(c, tiny_out, stride, padding), (tiny,))


def test_module_is_a_convtranspose3d_with_the_same_parameters():
    torch.manual_seed(0)
    stock = nn.ConvTranspose3d(6, 4, (3, 4, 4), stride=(1, 2, 2), padding=1)
    fast = FastConvTranspose3d(6, 4, (3, 4, 4), stride=(1, 2, 2), padding=1)
    assert isinstance(fast, nn.ConvTranspose3d)
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape
                                                                  for k, v in stock.state_dict().items()}
    fast.load_state_dict(stock.state_dict())
    x = torch.randn(2, 6, 3, 5, 5)
    expected = stock(x)
    for impl in ("auto", "gemm", "stock"):
        fast.impl = impl
        torch.testing.assert_close(fast(x), expected, rtol=1e-5, atol=1e-5)


def test_output_keeps_the_input_layout():
    layer = FastConvTranspose3d(4, 3, 4, stride=2, padding=1, impl="gemm")
    x = torch.randn(2, 4, 2, 3, 3)
    y = layer(x)
    assert y.is_contiguous()
    y_cl = layer(x.contiguous(memory_format=torch.channels_last_3d))
    assert y_cl.is_contiguous(memory_format=torch.channels_last_3d) and not y_cl.is_contiguous()
    torch.testing.assert_close(y_cl, y)


def test_auto_rule_uses_gemm_only_for_wide_layers_with_small_inputs_on_cpu():
    small = torch.zeros(1, 512, 2, 4, 4)  # 32 voxels: the paper generator's first upsampling, 512 -> 256
    assert 2 * 4 * 4 <= GEMM_MAX_INPUT_VOXELS and 512 * 256 >= GEMM_MIN_WEIGHTS
    assert use_gemm(small, 256)
    assert not use_gemm(small[:, :64], 32)  # the tiny preset's 64 -> 32: too narrow
    assert not use_gemm(torch.zeros(1, 512, 4, 8, 8), 256)  # 256 voxels: oneDNN
    assert not use_gemm(torch.zeros(1, 512, 2, 4, 4, device="meta"), 256)  # not CPU (e.g. CUDA): stock


def test_gemm_path_rejects_what_it_does_not_implement():
    with pytest.raises(ValueError, match="groups 1"):
        FastConvTranspose3d(4, 4, 4, stride=2, padding=1, groups=2)
    with pytest.raises(ValueError, match="impl"):
        FastConvTranspose3d(4, 4, 4, impl="fast")
    FastConvTranspose3d(4, 4, 4, stride=2, padding=1, groups=2, impl="stock")  # stock handles anything


def test_generator_uses_it_and_is_unchanged():
    cfg = ModelConfig(frames=4, size=32, g_width=16, z_dim=8)  # time strides (1, 2, 2)
    torch.manual_seed(0)
    G = build_generator(cfg)
    ups = [m for m in G.modules() if isinstance(m, FastConvTranspose3d)]
    assert len(ups) == 4  # two upsampling stages (the first keeps time: kernel 3) + video head + mask head
    assert {m.kernel_size for m in ups} == {(3, 4, 4), (4, 4, 4)}
    z = torch.randn(3, 8)

    def run(impl):
        for m in ups:
            m.impl = impl
        G.zero_grad()
        out = G(z)
        out.video.square().mean().backward()
        return out.video.detach(), [p.grad.clone() for p in G.parameters()]

    video, grads = run("stock")
    for impl in ("auto", "gemm"):
        v, g = run(impl)
        torch.testing.assert_close(v, video, rtol=1e-5, atol=1e-6)
        for a, b in zip(g, grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
