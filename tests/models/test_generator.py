import pytest
import torch

from videogan.config import ModelConfig, paper, tiny
from videogan.models import (
    ArchitectureError,
    GeneratorOutput,
    OneStreamGenerator,
    TwoStreamGenerator,
    build_generator,
    compose,
    geometry,
    with_discrete_code,
)


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_generator_matches_the_original_exactly():
    g = TwoStreamGenerator(paper().model)
    assert n_params(g) == 16_245_383
    out = g(torch.randn(2, 100))
    assert out.video.shape == (2, 3, 32, 64, 64)
    assert out.foreground.shape == (2, 3, 32, 64, 64)
    assert out.mask.shape == (2, 1, 32, 64, 64)
    assert out.background.shape == (2, 3, 64, 64)


def test_paper_layer_shapes():
    g = TwoStreamGenerator(paper().model)
    feats = g.foreground_stream.net[:3](torch.randn(2, 100)[:, :, None, None, None])
    assert feats.shape == (2, 512, 2, 4, 4)  # ConvTranspose3d 100 -> 512, kernel (2, 4, 4)
    assert g.foreground_stream(torch.randn(2, 100)).shape == (2, 64, 16, 32, 32)


def test_value_ranges():
    g = build_generator(tiny().model)
    out = g(torch.randn(4, 100) * 3)
    assert out.mask.min() >= 0 and out.mask.max() <= 1
    for t in (out.video, out.foreground, out.background):
        assert t.min() >= -1 and t.max() <= 1


def test_zero_mask_gives_the_background_in_every_frame():
    g = build_generator(tiny().model)
    mask_conv = g.mask_head[0]
    with torch.no_grad():
        mask_conv.weight.zero_()
        mask_conv.bias.fill_(-100.0)  # sigmoid(-100) == 0 in float32
    out = g(torch.randn(3, 100))
    assert torch.all(out.mask == 0)
    for t in range(out.video.shape[2]):
        assert torch.equal(out.video[:, :, t], out.background)


def test_compose_is_the_convex_combination():
    f = torch.rand(2, 3, 4, 8, 8) * 2 - 1
    b = torch.rand(2, 3, 8, 8) * 2 - 1
    m = torch.rand(2, 1, 4, 8, 8)
    expected = m * f + (1 - m) * b[:, :, None].expand_as(f)
    assert torch.allclose(compose(f, m, b), expected)
    assert torch.equal(compose(f, torch.ones_like(m), b), f)


def test_one_stream_is_the_foreground_stream_alone():
    cfg = paper().model
    cfg.kind = "one-stream"
    g = build_generator(cfg)
    assert isinstance(g, OneStreamGenerator)
    # The two-stream count less the mask head (64*1*64 + 1) and the background stream.
    two = TwoStreamGenerator(paper().model)
    assert n_params(g) == n_params(two) - n_params(two.mask_head) - n_params(two.background_stream)
    out = g(torch.randn(2, 100))
    assert out.video.shape == (2, 3, 32, 64, 64) and out.mask is None and out.background is None


@pytest.mark.parametrize("frames,size", [(8, 64), (24, 32), (1, 16), (32, 128), (16, 8)])
def test_other_shapes_build(frames, size):
    cfg = ModelConfig(frames=frames, size=size, g_width=32, d_width=4)
    out = TwoStreamGenerator(cfg)(torch.randn(2, 100))
    assert out.video.shape == (2, 3, frames, size, size)


def test_geometry_of_the_paper():
    geo = geometry(32, 64)
    assert (geo.stages, geo.core_frames, geo.time_strides) == (4, 2, (2, 2, 2, 2))
    geo = geometry(8, 64)  # time doubles at the last three stages only
    assert (geo.core_frames, geo.time_strides) == (1, (1, 2, 2, 2))


@pytest.mark.parametrize("frames,size,width,message", [
    (32, 48, 512, "size 48 is not supported"),
    (32, 4, 512, "size 4 is not supported"),
    (0, 64, 512, "frames 0 is not supported"),
    (32, 64, 100, "g_width 100 must be divisible by 8"),
])
def test_unsupported_shapes_are_clear_errors(frames, size, width, message):
    with pytest.raises(ArchitectureError, match=message):
        TwoStreamGenerator(ModelConfig(frames=frames, size=size, g_width=width))


def test_mask_bias_init_sets_the_starting_share_of_foreground():
    cfg = tiny().model
    cfg.mask_bias_init = -3.0
    g = TwoStreamGenerator(cfg)
    assert torch.all(g.mask_head[0].bias == -3.0)
    with torch.no_grad():
        m = g(torch.randn(8, 100)).mask.mean().item()
    assert abs(m - torch.sigmoid(torch.tensor(-3.0)).item()) < 0.02  # small init weights: m ~ sigmoid(bias)


def test_background_width_widens_the_background_stream_alone():
    narrow = TwoStreamGenerator(ModelConfig(frames=8, size=16, g_width=16))
    wide = TwoStreamGenerator(ModelConfig(frames=8, size=16, g_width=16, background_width=64))
    assert n_params(wide.foreground_stream) == n_params(narrow.foreground_stream)
    assert n_params(wide.background_stream) > 4 * n_params(narrow.background_stream)
    first = wide.background_stream.net[0]
    assert (first.in_channels, first.out_channels) == (100, 64)  # z -> 64 x 4 x 4, then halved per stage
    with torch.no_grad():
        out = wide(torch.randn(2, 100))
    assert out.background.shape == (2, 3, 16, 16) and out.video.shape == (2, 3, 8, 16, 16)
    default = TwoStreamGenerator(ModelConfig(frames=8, size=16, g_width=16, background_width=0))
    assert n_params(default) == n_params(narrow)  # 0: the paper's, as wide as the foreground stream


def test_heads_as_one_convolution_equal_the_two_heads():
    """video_and_mask runs both heads as one 3 + 1 channel transposed convolution: same values, same
    gradients."""
    from videogan.models.generator import video_and_mask

    torch.manual_seed(0)
    g = TwoStreamGenerator(ModelConfig(frames=8, size=16, g_width=16, mask_bias_init=-2.0)).double()
    features = torch.randn(2, g.widths[-1], 4, 8, 8, dtype=torch.float64, requires_grad=True)
    f, m = video_and_mask(g.video_head, g.mask_head, features)
    f_ref, m_ref = g.video_head(features), g.mask_head(features)
    assert torch.allclose(f, f_ref) and torch.allclose(m, m_ref)
    weights = [g.video_head[0].weight, g.mask_head[0].weight, g.mask_head[0].bias, features]
    seed_f, seed_m = torch.randn_like(f), torch.randn_like(m)
    grads = torch.autograd.grad((f * seed_f).sum() + (m * seed_m).sum(), weights)
    grads_ref = torch.autograd.grad((f_ref * seed_f).sum() + (m_ref * seed_m).sum(), weights)
    assert all(torch.allclose(a, b) for a, b in zip(grads, grads_ref, strict=True))


def test_generator_output_apply_maps_every_tensor_and_keeps_none():
    video = torch.zeros(1, 3, 2, 4, 4)
    out = GeneratorOutput(video=video, foreground=video, mask=None, background=video[:, :, 0],
                          flow=torch.ones(1, 2, 2, 4, 4))
    doubled = out.apply(lambda t: t + 2)
    assert doubled.mask is None and doubled.layers is None
    assert torch.equal(doubled.video, video + 2) and torch.equal(doubled.flow,
                                                                 torch.full((1, 2, 2, 4, 4), 3.0))


def test_discrete_code_is_the_scaled_one_hot_of_the_argmax_and_keeps_the_rest():
    z = torch.randn(64, 20, generator=torch.Generator().manual_seed(0))
    coded = with_discrete_code(z, 4)
    assert torch.equal(coded[:, 4:], z[:, 4:])
    assert torch.equal(coded[:, :4].argmax(dim=1), z[:, :4].argmax(dim=1))
    assert torch.equal(coded[:, :4], torch.nn.functional.one_hot(z[:, :4].argmax(dim=1), 4) * 2.0)  # sqrt(4)
    assert torch.equal(with_discrete_code(z, 0), z)


def test_discrete_code_draws_every_mode_about_equally_often():
    z = torch.randn(16_000, 100, generator=torch.Generator().manual_seed(1))
    counts = with_discrete_code(z, 16)[:, :16].sum(dim=0) / 4  # one-hot scaled by sqrt(16)
    assert counts.sum() == 16_000
    assert counts.min() > 0.8 * 1000 and counts.max() < 1.2 * 1000


@pytest.mark.parametrize("kind", ["two-stream", "one-stream"])
def test_with_z_modes_only_the_argmax_of_the_code_entries_matters(kind):
    torch.manual_seed(0)
    g = build_generator(ModelConfig(kind=kind, frames=16, size=32, g_width=32, d_width=8, z_modes=8)).eval()
    z = torch.randn(3, 100)
    moved = z.clone()
    moved[:, :8] *= 2.0  # the same argmax, other values
    other_mode = z.clone()
    other_mode[:, :8] = z[:, :8].roll(1, dims=1)  # the same values, another argmax
    with torch.no_grad():
        assert torch.equal(g(z).video, g(moved).video)
        assert not torch.allclose(g(z).video, g(other_mode).video)
