import json
import math
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from videogan import cli
from videogan.config import ConfigError, preset
from videogan.generation.noise import generate_from_noise
from videogan.metrics.measures import motion, motion_spread
from videogan.models import (
    ArchitectureError,
    Discriminator,
    ImageToVideoGenerator,
    OnFixedImages,
    build_generator,
)
from videogan.models.conditional import GRID_UNITS_PER_WIDTH, layered_flow, warp
from videogan.training.loop import train


@pytest.fixture
def conditional_config(small_config):
    small_config.model.kind = "conditional"
    small_config.train.mask_l1_weight = 0.0
    small_config.data.workers = 0
    return small_config


def _images(n: int, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _layers(module: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in module.modules() if type(m) is kind]


def test_paper_preset_is_the_original_architecture():
    """main_conditional.lua: encoder 3->128->256->512->1024, decoders back to 128, D 128..1024, batch 32,
    lambda 10."""
    cfg = preset("paper", "conditional")
    assert ((cfg.train.batch_size, cfg.train.first_frame_l1_weight, cfg.train.mask_l1_weight)
            == (32, 10.0, 0.0))
    with torch.device("meta"):  # shapes only: no memory, no time for 112M random weights
        g, d = ImageToVideoGenerator(cfg.model), Discriminator(cfg.model)
    assert [(c.in_channels, c.out_channels) for c in _layers(g.encoder, nn.Conv2d)] == \
           [(3, 128), (128, 256), (256, 512), (512, 1024)]
    assert [b.eps for b in _layers(g.encoder, nn.BatchNorm2d)] == [1e-3] * 3  # none after the first conv
    assert isinstance(g.encoder.net[1], nn.ReLU)
    assert [(c.in_channels, c.out_channels) for c in _layers(g.background_decoder, nn.ConvTranspose2d)] == \
           [(1024, 512), (512, 256), (256, 128), (128, 3)]
    first = g.video_decoder.net[0]
    assert (first.in_channels, first.out_channels, first.kernel_size) == (1024, 1024, (2, 1, 1))
    widths = [m.num_features for m in _layers(g.video_decoder, nn.BatchNorm3d)]
    assert widths == [1024, 512, 256, 128] and g.noise_projection is None and g.z_dim == 0
    assert [c.out_channels for c in _layers(d, nn.Conv3d)] == [128, 256, 512, 1024, 2]
    conv = lambda cin, cout, k: cin * cout * k + cout  # noqa: E731  (weights + biases)
    bn = lambda c: 2 * c  # noqa: E731
    encoder = (conv(3, 128, 16) + conv(128, 256, 16) + bn(256) + conv(256, 512, 16) + bn(512)
               + conv(512, 1024, 16) + bn(1024))
    background = (conv(1024, 512, 16) + bn(512) + conv(512, 256, 16) + bn(256) + conv(256, 128, 16) + bn(128)
                  + conv(128, 3, 16))
    video = (conv(1024, 1024, 2) + bn(1024) + conv(1024, 512, 64) + bn(512) + conv(512, 256, 64) + bn(256)
             + conv(256, 128, 64) + bn(128) + conv(128, 3, 64) + conv(128, 1, 64))
    assert (sum(p.numel() for p in g.parameters()) == encoder + background + video
            == 68_216_455)  # the layer list


def test_shapes_layers_and_composite():
    cfg = preset("tiny", "conditional").model
    cfg.frames, cfg.size, cfg.g_width = 4, 16, 16
    g = build_generator(cfg).eval()
    out = g(_images(2, 16), None)
    assert (out.video.shape == (2, 3, 4, 16, 16) and out.mask.shape == (2, 1, 4, 16, 16)
            and out.background.shape == (2, 3, 16, 16))
    assert torch.allclose(out.video, out.mask * out.foreground + (1 - out.mask) * out.background[:, :, None])
    # z None and [B, 0] are the same
    assert torch.equal(out.video, g(_images(2, 16), torch.zeros(2, 0)).video)
    with pytest.raises(AssertionError, match="image must be"):
        g(_images(2, 8), None)


def test_stochastic_noise_changes_the_motion_not_the_background():
    cfg = preset("tiny", "conditional").model
    cfg.frames, cfg.size, cfg.g_width, cfg.z_dim, cfg.stochastic = 4, 16, 16, 8, True
    torch.manual_seed(0)
    # in training mode: BatchNorm normalises, so the untrained net's output is not ~0
    g = build_generator(cfg)
    image = _images(1, 16).expand(3, -1, -1, -1)  # one image, three noise vectors
    out = g(image, torch.randn(3, 8, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(out.background[0], out.background[1])  # z only reaches the video decoder
    futures = out.video[:, None]  # [K=3, B=1, ...]
    # the futures differ as much as they move
    assert motion_spread(futures).item() > 0.2 * motion(out.video).mean().item() > 0
    with pytest.raises(AssertionError, match="stochastic model: z must be"):
        g(image, None)
    grads = torch.autograd.grad(g.train()(image, torch.randn(3, 8)).video.sum(),
                                g.noise_projection.net[0].weight)
    assert grads[0].abs().sum() > 0


def test_input_background_is_the_image_itself():
    """model.input_background: no background stream; where the mask is 0 every frame is the input, exactly."""
    cfg = preset("tiny", "conditional").model
    cfg.frames, cfg.size, cfg.g_width, cfg.input_background = 4, 16, 16, True
    g = build_generator(cfg).eval()
    assert g.background_decoder is None
    redrawn = build_generator(replace(cfg, input_background=False))
    assert sum(p.numel() for p in g.parameters()) < sum(p.numel() for p in redrawn.parameters())
    image = _images(2, 16)
    out = g(image, None)
    assert torch.equal(out.background, image)
    assert torch.allclose(out.video, out.mask * out.foreground + (1 - out.mask) * image[:, :, None])
    nn.init.constant_(g.mask_head[0].bias, -60.0)  # mask ~0: the clip is the image, still
    assert torch.allclose(g(image, None).video, image[:, :, None].expand(-1, -1, 4, -1, -1), atol=1e-6)


@pytest.mark.parametrize("stochastic", [False, True])
def test_image_skips_feed_every_encoder_level_to_the_video_decoder(stochastic):
    cfg = preset("tiny", "conditional").model
    cfg.frames, cfg.size, cfg.g_width, cfg.z_dim = 4, 16, 16, 8
    cfg.stochastic, cfg.image_skips = stochastic, True
    g = build_generator(cfg)
    image = _images(2, 16)
    levels = g.encoder.levels(image)
    # coarsest first; the last is the code
    assert [tuple(x.shape[1:]) for x in levels] == [(16, 4, 4), (8, 8, 8)]
    assert torch.equal(levels[0], g.encoder(image))
    ups = [m for m in g.video_decoder.modules() if isinstance(m, nn.ConvTranspose3d)]
    assert [(c.in_channels, c.out_channels) for c in ups] == [(16 * (2 if stochastic else 1), 16), (32, 8)]
    # 8 decoded + 8 of the finest level
    assert g.video_head[0].in_channels == g.mask_head[0].in_channels == 16
    z = torch.randn(2, 8) if stochastic else None
    out = g(image, z)
    assert out.video.shape == (2, 3, 4, 16, 16)
    # the finest level reaches f directly: its gradient flows through the skip, not only through the code
    finest = g.encoder.levels(image)[-1].detach().requires_grad_()
    features = g.video_decoder(levels[0].detach() if not stochastic
                               else torch.cat([levels[0], g.noise_projection(z)], 1).detach(),
                               [levels[0].detach(), finest])
    assert features.shape == (2, 16, 2, 8, 8)
    assert torch.equal(features[:, 8:], finest[:, :, None].expand(-1, -1, 2, -1, -1))  # held over the frames
    (grad,) = torch.autograd.grad(g.video_head(features).sum(), finest)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("field", ["stochastic", "input_background", "image_skips", "warp_foreground"])
def test_conditional_options_apply_to_the_conditional_model_only(small_config, field):
    setattr(small_config.model, field, True)
    with pytest.raises(ArchitectureError, match=f"model.{field} applies to the conditional model only"):
        build_generator(small_config.model)


def test_warp_moves_the_image_by_the_flow():
    image = _images(2, 16)
    flow = torch.zeros(2, 2, 3, 16, 16)
    assert torch.allclose(warp(image, flow), image[:, :, None].expand(-1, -1, 3, -1, -1), atol=1e-6)
    flow[:, 0, 1] = 2 / 16  # frame 1: every pixel takes the image's pixel one to its right (x)
    flow[:, 1, 2] = -4 / 16  # frame 2: two pixels above it (y)
    frames = warp(image, flow)
    assert torch.allclose(frames[:, :, 1, :, :-1], image[:, :, :, 1:], atol=1e-5)
    # beyond the border: the border pixel
    assert torch.allclose(frames[:, :, 1, :, -1], image[:, :, :, -1], atol=1e-5)
    assert torch.allclose(frames[:, :, 2, 2:], image[:, :, :-2], atol=1e-5)
    half_pixel = torch.zeros(2, 2, 1, 16, 16)
    half_pixel[:, 0] = 1 / 16  # half a pixel to the right: bilinear, the mean of the two neighbours
    half = warp(image, half_pixel)
    assert torch.allclose(half[:, :, 0, :, :-1], (image[:, :, :, :-1] + image[:, :, :, 1:]) / 2, atol=1e-5)


def test_warp_foreground_draws_f_from_the_image_by_a_learned_flow():
    """model.warp_foreground: the video head predicts 2 flow channels; f is the image warped by 2 grid units
    (model.max_flow = 1 frame width) times tanh of them, starting within about a pixel of the image itself;
    gradients reach the flow head through the warp."""
    cfg = preset("tiny", "conditional").model
    cfg.frames, cfg.size, cfg.g_width, cfg.input_background, cfg.warp_foreground = 4, 16, 16, True, True
    g = build_generator(cfg)
    assert g.video_head[0].out_channels == 2 and g.mask_head[0].out_channels == 1
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    image = torch.stack([xx / 8 - 1, yy / 8 - 1, (xx + yy) / 16 - 1])[None].repeat(2, 1, 1, 1)  # smooth ramps
    out = g(image, None)
    assert out.foreground.shape == out.video.shape == (2, 3, 4, 16, 16)
    assert (out.foreground - image[:, :, None]).abs().mean() < 1 / 8  # within a pixel of the ramp's step
    # f is exactly the image warped by the head's output
    features = g.video_decoder(g.encoder(image))
    flow = g.video_head(features)
    assert flow.shape == (2, 2, 4, 16, 16) and flow.abs().max() <= 1
    assert torch.allclose(out.foreground, warp(image, 2 * flow), atol=1e-6)
    assert torch.allclose(out.flow, 2 * flow, atol=1e-6)
    (grad,) = torch.autograd.grad(out.video.sum(), g.video_head[0].weight)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("motion_layers", [0, 3])
def test_max_flow_bounds_how_far_a_pixel_is_drawn_from(motion_layers):
    """model.max_flow: the flow, free or layered, never reaches further than max_flow frame widths, even with
    its head driven to saturation, and the same weights reach four times as far with four times max_flow."""
    cfg = preset("tiny", "conditional").model
    cfg.frames, cfg.size, cfg.g_width = 4, 16, 16
    cfg.input_background, cfg.warp_foreground, cfg.motion_layers = True, True, motion_layers
    image = _images(2, 16)
    flows = []
    for max_flow in (0.125, 0.5):
        cfg.max_flow = max_flow
        torch.manual_seed(0)
        g = build_generator(cfg)
        with torch.no_grad():  # saturate the tanh that bounds the flow
            head = g.video_head[0] if motion_layers == 0 else g.layer_translations.net
            head.weight.mul_(1e3)
            flows.append(g(image, None).flow)
    reach = GRID_UNITS_PER_WIDTH * 0.125
    assert reach / 2 < flows[0].abs().max() <= reach + 1e-6  # layered: a mix of saturated translations
    assert torch.allclose(flows[1], 4 * flows[0], atol=1e-5)


def test_layered_flow_moves_each_layer_as_a_whole():
    """A pixel owned outright by a layer takes exactly that layer's translation (the still layer 0: none); a
    shared pixel takes the ownership-weighted mean of its layers' translations."""
    # [1, K=2, T=2, 2]
    translations = torch.tensor([[[[0.0, 0.0], [0.5, -0.25]], [[0.0, 0.0], [-1.0, 0.75]]]])
    ownership = torch.zeros(1, 3, 2, 4, 4)
    ownership[:, 0, :, :2] = 1  # rows 0-1: still
    ownership[:, 1, :, 2:, :2] = 1  # rows 2-3, columns 0-1: layer 1
    ownership[:, 2, :, 2:, 2:] = 1  # rows 2-3, columns 2-3: layer 2
    flow = layered_flow(ownership, translations)
    assert flow.shape == (1, 2, 2, 4, 4)
    assert flow[:, :, 0].abs().max() == 0  # frame 0 stands still
    assert torch.all(flow[0, :, 1, :2] == 0)
    assert torch.all(flow[0, :, 1, 2:, :2] == torch.tensor([0.5, -0.25])[:, None, None])
    assert torch.all(flow[0, :, 1, 2:, 2:] == torch.tensor([-1.0, 0.75])[:, None, None])
    shared = torch.full((1, 3, 2, 4, 4), 1 / 3)  # every layer a third of every pixel
    assert torch.allclose(layered_flow(shared, translations)[0, :, 1],
                          torch.tensor([-0.5, 0.5])[:, None, None] / 3)
    with pytest.raises(AssertionError, match="needs K"):
        layered_flow(ownership[:, :2], translations)


def test_motion_layers_make_the_flow_from_a_few_translations():
    """model.motion_layers = K: the video head gives K + 1 layer logits, a linear head on the code K
    translations per frame; the flow is layered_flow of the two, frame 0 is the image exactly, and both heads
    get gradients."""
    cfg = preset("tiny", "conditional").model
    cfg.frames, cfg.size, cfg.g_width = 4, 16, 16
    cfg.input_background, cfg.warp_foreground, cfg.motion_layers = True, True, 3
    g = build_generator(cfg)
    assert g.video_head[0].out_channels == 4 and isinstance(g.video_head[1], nn.Identity)
    image = _images(2, 16)
    out = g(image, None)
    assert out.video.shape == out.foreground.shape == (2, 3, 4, 16, 16) and out.flow.shape == (2, 2, 4, 16,
                                                                                               16)
    assert torch.allclose(out.video[:, :, 0], image, atol=1e-6)  # no layer moves in frame 0
    code = g.encoder(image)
    translations = g.layer_translations(code)
    assert translations.shape == (2, 3, 4, 2) and translations[:, :, 0].abs().max() == 0
    # starts within two pixels (of 16) of still: 1/4 of grid_sample's units, 1/8 of the flow range (2)
    assert 0 < translations.abs().max() < 1 / 8
    assert out.layers.shape == (2, 4, 4, 16, 16) and torch.allclose(out.layers.sum(1),
                                                                    torch.ones(2, 4, 16, 16))
    assert torch.allclose(out.layers, g.video_head(g.video_decoder(code)).softmax(1), atol=1e-6)
    assert torch.allclose(out.flow, 2 * layered_flow(out.layers, translations), atol=1e-6)
    assert torch.allclose(out.foreground, warp(image, out.flow), atol=1e-6)
    grads = torch.autograd.grad(out.video.sum(), [g.video_head[0].weight, g.layer_translations.net.weight])
    assert all(grad.abs().sum() > 0 for grad in grads)
    # a checkpoint of the free-flow model does not load into a layered one
    cfg.motion_layers = 0
    with pytest.raises(RuntimeError):
        g.load_state_dict(build_generator(cfg).state_dict())


@pytest.mark.parametrize(("layers", "warp_foreground", "message"), [
    (2, False, "needs model.warp_foreground"), (-1, True, "must be 0"),
])
def test_motion_layers_need_a_warping_model(layers, warp_foreground, message):
    cfg = preset("tiny", "conditional").model
    cfg.warp_foreground, cfg.motion_layers = warp_foreground, layers
    with pytest.raises(ArchitectureError, match=message):
        build_generator(cfg)


@pytest.mark.parametrize("motion_layers", [0, 2])
def test_flow_tv_weight_trains_a_warping_model_only(conditional_config, tmp_path, motion_layers):
    conditional_config.train.flow_tv_weight = 1.0
    with pytest.raises(ConfigError, match="needs model.warp_foreground"):
        train(conditional_config, tmp_path / "plain", progress=False)
    conditional_config.model.input_background = conditional_config.model.warp_foreground = True
    conditional_config.train.layer_entropy_weight = 1.0
    if not motion_layers:
        with pytest.raises(ConfigError, match="layer_entropy_weight=1.0 needs model.motion_layers"):
            train(conditional_config, tmp_path / "free", progress=False)
        conditional_config.train.layer_entropy_weight = 0.0
    conditional_config.model.motion_layers = motion_layers
    conditional_config.train.steps, conditional_config.train.log_every = 2, 1
    train(conditional_config, tmp_path / "warp", progress=False)
    logged = [json.loads(line) for line in (tmp_path / "warp" / "metrics.jsonl").read_text().splitlines()]
    assert all(row["flow_tv"] > 0 for row in logged if "flow_tv" in row) and any("flow_tv" in row
                                                                                 for row in logged)
    entropies = [row["layer_entropy"] for row in logged if "layer_entropy" in row]
    assert ((len(entropies) > 0 and all(0 < e <= math.log(motion_layers + 1) for e in entropies))
            if motion_layers else not entropies)


def test_on_fixed_images_cycles_through_them():
    cfg = preset("tiny", "conditional").model
    cfg.frames, cfg.size, cfg.g_width = 4, 8, 8
    g = build_generator(cfg).eval()
    images = _images(3)
    wrapped = OnFixedImages(g, images)
    first, second = wrapped(torch.zeros(2, 0)), wrapped(torch.zeros(2, 0))
    expected = g(images[[0, 1, 2, 0]], None).video
    assert torch.allclose(torch.cat([first.video, second.video]), expected)
    with pytest.raises(ConfigError, match="videogan animate"):
        generate_from_noise(g, torch.zeros(2, 0))


def test_conditional_training_loss_files_and_resume(tmp_path, conditional_config):
    cfg = conditional_config
    cfg.model.stochastic = True
    cfg.train.steps = 4
    train(cfg, tmp_path / "full", progress=False)
    run = tmp_path / "full"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in rows:  # no mask prior (main_conditional.lua), lambda 10 on the first frame
        assert r["g_loss"] == pytest.approx(r["g_adv"] + 10 * r["first_frame_l1"], rel=1e-5)
    fixed = load_file(run / "conditioning.safetensors")["images"]
    assert fixed.dtype == torch.uint8 and fixed.shape == (64, 3, 8, 8)
    for name in ("progress/inputs.png", "progress/step_00000004.gif", "progress/step_00000004_mask.gif"):
        assert (run / name).is_file()

    cfg.train.steps = 2
    train(cfg, tmp_path / "split", progress=False)
    cfg.train.steps = 4
    train(cfg, tmp_path / "split", resume=True, progress=False)
    # EMA BatchNorm statistics come from the fixed inputs
    for name in ("generator", "generator_ema", "discriminator"):
        a = load_file(run / "checkpoints" / "step_00000004" / f"{name}.safetensors")
        b = load_file(tmp_path / "split" / "checkpoints" / "step_00000004" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_model_conditional_selects_the_conditional_preset(capsys):
    """`--model conditional` picks the preset's conditional variant (the paper one is checked above; tiny is
    cheap)."""
    assert cli.main(["info", "--preset", "tiny", "--model", "conditional", "--stochastic"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["generator"] == "ImageToVideoGenerator" and info["config"]["model"]["stochastic"] is True
    assert info["config"]["train"]["mask_l1_weight"] == 0.0
    cfg = preset("tiny", "conditional")
    cfg.model.stochastic = True
    assert info["generator_params"] == sum(p.numel() for p in ImageToVideoGenerator(cfg.model).parameters())
    assert info["config"] == cfg.to_dict()
