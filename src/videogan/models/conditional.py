"""Image to video: the paper's future generation (Sec. 4.3; the original's main_conditional.lua).

An encoder turns the input image into a 4x4 code. A 2-D decoder draws the static background b from the code
and a 3-D decoder the foreground f and the mask m over time; the clip is m*f + (1-m)*b, as in the two-stream
generator. Training adds an L1 term that makes the first generated frame the input image
(training.losses.first_frame_l1). Layout is PyTorch's: video tensors are [B, C, T, H, W], images [B, C, H, W].

Beyond the paper (model.stochastic): the paper's model gives exactly one future per image. The stochastic
variant also takes noise z: z is projected to a code of the image code's shape ([B, W, 4, 4], as the
unconditional background stream's first layer does) and concatenated to it, doubling the video decoder's input
channels. Only the video decoder sees z: the background is the image's static part, the motion is what is
uncertain. Because the projected noise enters with as many channels as the image, G cannot start out ignoring
it; benchmarks/image_to_video.py measures that different z still give different motion after training.

Beyond the paper (model.input_background): b is the input image itself instead of the background stream's
redrawing of it from the 4x4 code. The paper's b is blurred by that bottleneck, and so is every pixel the mask
leaves to it; with the image as b, the still part of the scene stays sharp in every frame, the first frame can
equal the input wherever m is 0, and the 3-D decoder only draws what moves (including what a moving object
uncovers).

Beyond the paper (model.image_skips): U-Net skips. The encoder's output at each resolution (H/2 ... 4x4),
repeated over the frames, is concatenated to the video decoder's features of the same size before each of its
upsampling layers and before the f and m heads (which then take twice the channels), so that f can draw the
image's objects from their detail rather than from the 4x4 code alone.

Beyond the paper (model.warp_foreground): f is the input image warped, frame by frame, by a flow field that
the video decoder predicts in place of f's colours (2 channels instead of 3: where each pixel of frame t comes
from in the image). Redrawn by transposed convolutions, a moving object turned into a noisy, multicoloured
smear within a few frames (benchmarks/RESULTS.md, "Image to video"); warped, it keeps the image's own pixels,
and what it uncovers is filled by pulling in pixels from beside it. The flow starts near zero, so an untrained
model repeats the image. `train.flow_tv_weight` adds the flow's total variation
(training.losses.flow_total_variation) to G's loss, favouring objects that move as a whole over stretching
ones.

Beyond the paper (model.motion_layers = K > 0, with warp_foreground): the free flow above lets every pixel of
an object move its own way, so outlines deform (benchmarks/RESULTS.md). Layered, the flow is built from K
moving layers and one still one: the 3-D decoder's head predicts, per frame and pixel, K + 1 layer logits
(softmax: how much of the pixel each layer owns), and a linear head on the 4x4 code predicts one translation
per moving layer and frame (zero in frame 0). A pixel's flow is its layers' translations weighted by ownership
(layered_flow), so where a layer owns pixels outright they all sample the image at the same offset: a rigid
copy. Frame 0 is the image exactly. `train.layer_entropy_weight` penalises shared pixels
(training.losses.ownership_entropy).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .generator import (
    GeneratorOutput,
    compose,
    image_upsampling_layers,
    upsampling_conv3d,
    upsampling_stack,
    video_and_mask,
)
from .geometry import Geometry, check_width, geometry
from .init import init_weights

if TYPE_CHECKING:  # annotations only: config imports the models' geometry rules to check a config
    from ..config import ModelConfig

# main_conditional.lua: SpatialBatchNormalization(.., 1e-3) in the encoder; the decoders use 1e-5
ENCODER_BN_EPS = 1e-3
# grid_sample's units per frame width: model.max_flow (in frame widths) times this is the flow head's range
# (its tanh's scale); 1 frame width lets a pixel come from anywhere in the image.
GRID_UNITS_PER_WIDTH = 2.0
FLOW_INIT_SCALE = 0.1  # the flow head's initial weights, scaled down: the flow starts within ~1 pixel of zero


class LayerTranslations(nn.Module):
    """code [B, C, 4, 4] -> translations [B, K, T, 2] (x, y in [-1, 1] (tanh), units of the generator's flow
    range), one per moving layer and frame; frame 0's are exactly zero, so the first frame is the image
    (model.motion_layers)."""

    def __init__(self, code_width: int, layers: int, frames: int):
        super().__init__()
        self.layers, self.frames = layers, frames
        self.net = nn.Linear(code_width * 4 * 4, layers * (frames - 1) * 2)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        B = len(code)
        moves = torch.tanh(self.net(code.flatten(1))).view(B, self.layers, self.frames - 1, 2)
        return torch.cat([moves.new_zeros(B, self.layers, 1, 2), moves], dim=2)  # [B, K, T, 2]


class ImageEncoder(nn.Module):
    """image [B, 3, H, W] -> code [B, widths[0], 4, 4].

    Paper: Conv2d 3->128 (kernel 4, stride 2, padding 1, ReLU, no BatchNorm), then 256, 512, 1024 with
    BatchNorm + ReLU: the generator's widths read from the clip inwards.
    """

    def __init__(self, channels: int, widths: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        cin = channels
        for i, width in enumerate(reversed(widths)):
            layers.append(nn.Conv2d(cin, width, 4, stride=2, padding=1))
            if i > 0:
                layers.append(nn.BatchNorm2d(width, eps=ENCODER_BN_EPS))
            layers.append(nn.ReLU(inplace=True))
            cin = width
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)

    def levels(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Every level's output, coarsest first: [B, widths[0], 4, 4], [B, widths[1], 8, 8], ...,
        [B, widths[-1], H/2, W/2]."""
        out = []
        for layer in self.net:
            image = layer(image)
            if isinstance(layer, nn.ReLU):
                out.append(image)
        return out[::-1]


class BackgroundDecoder(nn.Module):
    """code [B, widths[0], 4, 4] -> b [B, 3, H, W] in [-1, 1].

    Paper: ConvTranspose2d 1024->512->256->128 (kernel 4, stride 2, padding 1, BatchNorm + ReLU), then ->3,
    tanh.
    """

    def __init__(self, widths: list[int], channels: int):
        super().__init__()
        self.net = nn.Sequential(*image_upsampling_layers(widths, channels))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code)


class VideoDecoder(nn.Module):
    """code [B, code_width, 4, 4] -> features [B, widths[-1], T/2, H/2, W/2] for the f and m heads.

    Paper: the code as 1024 x 1 x 4 x 4, ConvTranspose3d 1024->1024 with kernel (2, 1, 1) -> 1024 x 2 x 4 x 4,
    BatchNorm + ReLU, then 512, 256, 128 (kernel 4, stride 2, padding 1, BatchNorm + ReLU).
    With skips (model.image_skips), the encoder's levels are concatenated before each upsampling layer and to
    the output (whose width is then 2 * widths[-1]).
    """

    def __init__(self, code_width: int, widths: list[int], geo: Geometry, skips: bool = False):
        super().__init__()
        # 1 frame -> core_frames, then the upsampling stages
        first = nn.ConvTranspose3d(code_width, widths[0], (geo.core_frames, 1, 1))
        self.net = upsampling_stack(first, widths, geo, skips=skips)
        self.skips = skips

    def forward(self, code: torch.Tensor, levels: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = code[:, :, None]  # [B, C, 4, 4] -> [B, C, 1, 4, 4]
        if not self.skips:
            return self.net(x)
        assert levels is not None, "a decoder with skips needs the encoder's levels"
        layers = list(self.net)
        for stage in range(0, len(layers), 3):  # (transposed conv, BatchNorm, ReLU) per stage
            if stage:
                x = with_level(x, levels[stage // 3 - 1])
            conv, norm, relu = layers[stage : stage + 3]
            x = relu(norm(conv(x)))
        return with_level(x, levels[-1])


def with_level(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """x [B, C, T, S, S] and an image level [B, C', S, S] held over the T frames -> [B, C + C', T, S, S]."""
    assert level.shape[-2:] == x.shape[-2:], \
        f"skip of size {list(level.shape[-2:])} for features {list(x.shape)}"
    return torch.cat([x, level[:, :, None].expand(-1, -1, x.shape[2], -1, -1)], dim=1)


class NoiseProjection(nn.Module):
    """z [B, Z] -> [B, width, 4, 4], a code of the image code's shape (stochastic variant; not in the
    paper)."""

    def __init__(self, z_dim: int, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.ConvTranspose2d(z_dim, width, 4), nn.BatchNorm2d(width),
                                 nn.ReLU(inplace=True))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class ImageToVideoGenerator(nn.Module):
    """(image [B, 3, H, W] in [-1, 1], z [B, z_dim]) -> GeneratorOutput of a clip [B, 3, T, H, W].

    z_dim is model.z_dim for the stochastic variant and 0 for the paper's deterministic model, whose z is an
    empty [B, 0] tensor (or None): every caller can draw z the same way for both.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        geo = geometry(cfg.frames, cfg.size)
        check_width("model.g_width", cfg.g_width, geo, "halve")
        widths = geo.widths(cfg.g_width, "halve")  # core outwards, paper: [1024, 512, 256, 128]
        self.z_dim = cfg.z_dim if cfg.stochastic else 0
        self.image_shape = (cfg.channels, cfg.size, cfg.size)
        self.clip_shape = (cfg.channels, cfg.frames, cfg.size, cfg.size)
        self.encoder = ImageEncoder(cfg.channels, widths)
        # None with model.input_background: the image is the background.
        self.background_decoder = None if cfg.input_background else BackgroundDecoder(widths, cfg.channels)
        self.noise_projection = NoiseProjection(cfg.z_dim, widths[0]) if cfg.stochastic else None
        code_width = widths[0] * (2 if cfg.stochastic else 1)  # the image code, with the noise's beside it
        self.video_decoder = VideoDecoder(code_width, widths, geo, skips=cfg.image_skips)
        head_width = widths[-1] * (2 if cfg.image_skips else 1)
        self.warp_foreground = cfg.warp_foreground
        # the flow's reach in grid_sample's units: both flow heads give [-1, 1], scaled by this in forward
        self.flow_range = GRID_UNITS_PER_WIDTH * cfg.max_flow
        # f's colours; with warp_foreground the flow (x, y) that f samples the image at; with
        # motion_layers the K + 1 layer logits (the still layer first), whose softmax mixes the layers'
        # translations into the flow
        if cfg.motion_layers:
            self.video_head = nn.Sequential(upsampling_conv3d(head_width, cfg.motion_layers + 1,
                                                              geo.time_strides[-1]),
                                            nn.Identity())
        else:
            self.video_head = nn.Sequential(
                upsampling_conv3d(head_width, 2 if cfg.warp_foreground else cfg.channels,
                                  geo.time_strides[-1]), nn.Tanh())
        self.layer_translations = (LayerTranslations(code_width, cfg.motion_layers, cfg.frames)
                                   if cfg.motion_layers else None)
        self.mask_head = nn.Sequential(upsampling_conv3d(head_width, 1, geo.time_strides[-1]),
                                       nn.Sigmoid())
        init_weights(self)  # main_conditional.lua applies the same weights_init as main.lua
        nn.init.constant_(self.mask_head[0].bias, cfg.mask_bias_init)
        if cfg.warp_foreground:
            with torch.no_grad():
                flow_head = (self.video_head[0] if self.layer_translations is None
                             else self.layer_translations.net)
                flow_head.weight.mul_(FLOW_INIT_SCALE)

    def forward(self, image: torch.Tensor, z: torch.Tensor | None = None) -> GeneratorOutput:
        assert image.shape[1:] == self.image_shape, \
            f"image must be [B, {self.image_shape}], got {list(image.shape)}"
        if self.noise_projection is None:
            assert z is None or z.shape == (len(image), 0), \
                f"deterministic model: z must be None or [B, 0], got {list(z.shape)}"
        else:
            assert z is not None and z.shape == (len(image), self.z_dim), (
                f"stochastic model: z must be [{len(image)}, {self.z_dim}], "
                f"got {None if z is None else list(z.shape)}")
        levels = self.encoder.levels(image) if self.video_decoder.skips else None  # coarsest first
        code = self.encoder(image) if levels is None else levels[0]  # [B, W, 4, 4]
        background = (image if self.background_decoder is None
                      else self.background_decoder(code))  # [B, 3, H, W]
        if self.noise_projection is not None:
            code = torch.cat([code, self.noise_projection(z)], dim=1)  # [B, 2W, 4, 4]
        features = self.video_decoder(code, levels)
        # [B, 3 (2: flow, K + 1: layer logits), T, H, W], [B, 1, T, H, W]
        foreground, mask = video_and_mask(self.video_head, self.mask_head, features)
        flow = layers = None
        if self.warp_foreground:
            if self.layer_translations is None:
                flow = self.flow_range * foreground  # [B, 2, T, H, W]
            else:
                layers = foreground.softmax(dim=1)  # [B, K + 1, T, H, W]
                flow = self.flow_range * layered_flow(layers, self.layer_translations(code))
            foreground = warp(image, flow)  # [B, 3, T, H, W]
        video = compose(foreground, mask, background)
        assert video.shape[1:] == self.clip_shape, \
            f"generated {list(video.shape[1:])}, expected {self.clip_shape}"
        return GeneratorOutput(video=video, foreground=foreground, mask=mask, background=background,
                               flow=flow, layers=layers)


class OnFixedImages(nn.Module):
    """An image-to-video G seen as a noise-only generator z -> G(image, z) over fixed images, so that the
    tools written for noise generators apply unchanged (training.ema.recalibrate_batchnorm,
    generation.noise.generate_from_noise).

    Call k with z [B, Z] animates the next B images, cycling: a fresh wrapper starts again at image 0.
    """

    def __init__(self, generator: ImageToVideoGenerator, images: torch.Tensor):
        super().__init__()
        assert images.ndim == 4 and images.is_floating_point(), \
            f"images must be float [N, 3, H, W], got {images.dtype} {list(images.shape)}"
        self.generator = generator
        self.images = images  # [N, 3, H, W] in [-1, 1]
        self.z_dim = generator.z_dim
        self._next = 0

    def forward(self, z: torch.Tensor) -> GeneratorOutput:
        index = (self._next + torch.arange(len(z))) % len(self.images)
        self._next += len(z)
        return self.generator(self.images[index].to(z.device), z)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """image [B, C, H, W], flow [B, 2, T, H, W] -> frames [B, C, T, H, W]: frame t at pixel p is the image at
    p + flow[:, :, t] at p (x then y, in grid_sample's units: 2 = the frame's width or height), bilinear; a
    position outside the image takes the nearest border pixel. Zero flow gives the image in every frame."""
    B, C, H, W = image.shape
    T = flow.shape[2]
    assert flow.shape == (B, 2, T, H, W), f"flow must be [{B}, 2, T, {H}, {W}], got {list(flow.shape)}"
    # pixel centres in grid_sample's coordinates (align_corners=False): -1 and 1 are the image's outer edges
    ys = torch.linspace(-1 + 1 / H, 1 - 1 / H, H, device=flow.device, dtype=flow.dtype)
    xs = torch.linspace(-1 + 1 / W, 1 - 1 / W, W, device=flow.device, dtype=flow.dtype)
    centres = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H, W, 2], (x, y) per pixel
    grid = centres + flow.permute(0, 2, 3, 4, 1).reshape(B * T, H, W, 2)
    frames = F.grid_sample(image[:, None].expand(B, T, C, H, W).reshape(B * T, C, H, W), grid,
                           mode="bilinear", padding_mode="border", align_corners=False)
    return frames.view(B, T, C, H, W).transpose(1, 2)


def layered_flow(ownership: torch.Tensor, translations: torch.Tensor) -> torch.Tensor:
    """ownership [B, K + 1, T, H, W] (each layer's share of each pixel, summing to 1; layer 0 stands still),
    translations [B, K, T, 2] of the moving layers -> flow [B, 2, T, H, W]: each pixel's flow is the moving
    layers' translations weighted by their shares of it."""
    B, layers, T = translations.shape[:3]
    assert ownership.shape[:3] == (B, layers + 1, T) and translations.shape[3] == 2, (
        f"ownership {list(ownership.shape)} needs K + 1 = {layers + 1} layers "
        f"for translations {list(translations.shape)}")
    return torch.einsum("bkthw,bktc->bcthw", ownership[:, 1:], translations)
