"""Generators: the paper's two-stream net (Fig. 1) and its one-stream ablation.

Layout is PyTorch's: video tensors are [B, C, T, H, W], images [B, C, H, W].
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..ops.upsample import FastConvTranspose3d
from .geometry import Geometry, check_width, geometry
from .init import init_weights

if TYPE_CHECKING:  # annotations only: config imports the models' geometry rules to check a config
    from ..config import ModelConfig


@dataclass
class GeneratorOutput:
    """What a generator produces for a batch of B noise vectors."""

    video: torch.Tensor  # [B, 3, T, H, W] in [-1, 1]: the composite m*f + (1-m)*b
    foreground: torch.Tensor  # [B, 3, T, H, W] in [-1, 1]: f (equal to video for one-stream)
    mask: torch.Tensor | None  # [B, 1, T, H, W] in [0, 1]: m (None for one-stream)
    background: torch.Tensor | None  # [B, 3, H, W] in [-1, 1]: b, one static image (None for one-stream)
    # [B, 2, T, H, W]: where f's pixels come from in the image (model.warp_foreground)
    flow: torch.Tensor | None = None
    # [B, K + 1, T, H, W]: each motion layer's share of each pixel (model.motion_layers)
    layers: torch.Tensor | None = None

    def apply(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> GeneratorOutput:
        """The same output with `fn` applied to every tensor it holds (the fields that are None stay None)."""
        return GeneratorOutput(**{f.name: None if (t := getattr(self, f.name)) is None else fn(t)
                                  for f in fields(self)})


def upsampling_conv3d(cin: int, cout: int, time_stride: int) -> nn.ConvTranspose3d:
    """One upsampling stage's transposed convolution: x2 in H and W, and in T where time_stride is 2."""
    # Paper: kernel 4, stride 2, padding 1 doubles T, H, W. Where time must stay, kernel 3 / stride 1 / pad 1.
    # FastConvTranspose3d: the same layer (parameters, maths), with a faster CPU kernel where measured faster.
    kt = 4 if time_stride == 2 else 3
    return FastConvTranspose3d(cin, cout, (kt, 4, 4), stride=(time_stride, 2, 2), padding=1)


def upsampling_stack(first: nn.Module, widths: list[int], geo: Geometry,
                     skips: bool = False) -> nn.Sequential:
    """`first` (-> widths[0] x core_frames x 4 x 4), then BatchNorm + ReLU, then per later width one
    `upsampling_conv3d` stage with BatchNorm + ReLU: the 3-D half of the generator, shared by the
    unconditional and conditional models. With `skips` each `upsampling_conv3d` takes twice its input's width:
    the conditional model concatenates a skip to it."""
    layers: list[nn.Module] = [first, nn.BatchNorm3d(widths[0]), nn.ReLU(inplace=True)]
    for i in range(1, len(widths)):
        layers += [upsampling_conv3d(widths[i - 1] * (2 if skips else 1), widths[i], geo.time_strides[i - 1]),
                   nn.BatchNorm3d(widths[i]), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ForegroundStream(nn.Module):
    """z [B, Z] -> shared features [B, width_last, T/2, H/2, W/2] (paper: 64 x 16 x 32 x 32)."""

    def __init__(self, z_dim: int, widths: list[int], geo: Geometry):
        super().__init__()
        # Paper: ConvTranspose3d 100 -> 512, kernel (2, 4, 4) -> 512 x 2 x 4 x 4.
        self.net = upsampling_stack(nn.ConvTranspose3d(z_dim, widths[0], (geo.core_frames, 4, 4)), widths,
                                    geo)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None, None])


def image_upsampling_layers(widths: list[int], channels: int) -> list[nn.Module]:
    """[B, widths[0], 4, 4] -> [B, channels, H, W] in [-1, 1]: per later width a stride-2 ConvTranspose2d +
    BatchNorm + ReLU, then one more to `channels` and tanh (the background of both generator kinds)."""
    layers: list[nn.Module] = []
    for i in range(1, len(widths)):
        layers += [nn.ConvTranspose2d(widths[i - 1], widths[i], 4, stride=2, padding=1),
                   nn.BatchNorm2d(widths[i]), nn.ReLU(inplace=True)]
    return layers + [nn.ConvTranspose2d(widths[-1], channels, 4, stride=2, padding=1), nn.Tanh()]


class BackgroundStream(nn.Module):
    """z [B, Z] -> one static image b [B, 3, H, W] in [-1, 1]."""

    def __init__(self, z_dim: int, widths: list[int], channels: int):
        super().__init__()
        first = [nn.ConvTranspose2d(z_dim, widths[0], 4), nn.BatchNorm2d(widths[0]),
                 nn.ReLU(True)]  # -> 4 x 4
        self.net = nn.Sequential(*first, *image_upsampling_layers(widths, channels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


def with_discrete_code(z: torch.Tensor, modes: int) -> torch.Tensor:
    """z [B, Z] ~ N(0, I) with its first `modes` entries replaced by the one-hot of their argmax, scaled by
    sqrt(modes) to keep their expected squared norm: a categorical code, uniform over the modes (the argmax of
    i.i.d. normals), beside Z - modes continuous ones (ClusterGAN's prior, Mukherjee et al. 2019; not in the
    paper). 0 modes: z unchanged."""
    if not modes:
        return z
    code = nn.functional.one_hot(z[:, :modes].argmax(dim=1), modes).to(z.dtype) * modes ** 0.5
    return torch.cat([code, z[:, modes:]], dim=1)


class _VideoGenerator(nn.Module):
    """What both generators share: the 3-D foreground stream and its video head f."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        geo = self.geometry = geometry(cfg.frames, cfg.size)
        check_width("model.g_width", cfg.g_width, geo, "halve")
        self.widths = geo.widths(cfg.g_width, "halve")
        self.last_time_stride = geo.time_strides[-1]
        self.z_dim = cfg.z_dim
        self.z_modes = cfg.z_modes
        self.clip_shape = (cfg.channels, cfg.frames, cfg.size, cfg.size)
        self.foreground_stream = ForegroundStream(cfg.z_dim, self.widths, geo)
        self.video_head = nn.Sequential(upsampling_conv3d(self.widths[-1], cfg.channels,
                                                          self.last_time_stride),
                                        nn.Tanh())

    def _latent(self, z: torch.Tensor) -> torch.Tensor:
        """The checked noise [B, Z] as both streams read it (with model.z_modes, its discrete code)."""
        assert z.ndim == 2 and z.shape[1] == self.z_dim, f"z must be [B, {self.z_dim}], got {list(z.shape)}"
        return with_discrete_code(z, self.z_modes)

    def _check_video(self, video: torch.Tensor) -> None:
        assert video.shape[1:] == self.clip_shape, \
            f"generated {list(video.shape[1:])}, expected {self.clip_shape}"


class TwoStreamGenerator(_VideoGenerator):
    """Foreground video f and mask m from a 3-D stream, background b from a 2-D stream (paper Sec. 3.1).

    video = m * f + (1 - m) * b, with b repeated over time; the same z feeds both streams.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.mask_head = nn.Sequential(upsampling_conv3d(self.widths[-1], 1, self.last_time_stride),
                                       nn.Sigmoid())
        background_widths = (self.geometry.widths(cfg.background_width, "halve") if cfg.background_width
                             else self.widths)
        self.background_stream = BackgroundStream(cfg.z_dim, background_widths, cfg.channels)
        init_weights(self)
        nn.init.constant_(self.mask_head[0].bias, cfg.mask_bias_init)

    def forward(self, z: torch.Tensor) -> GeneratorOutput:
        z = self._latent(z)
        features = self.foreground_stream(z)
        # [B, 3, T, H, W], [B, 1, T, H, W]
        foreground, mask = video_and_mask(self.video_head, self.mask_head, features)
        background = self.background_stream(z)  # [B, 3, H, W]
        video = compose(foreground, mask, background)
        self._check_video(video)
        return GeneratorOutput(video=video, foreground=foreground, mask=mask, background=background)


class OneStreamGenerator(_VideoGenerator):
    """The paper's ablation: the foreground stream alone produces the video (no mask, no background)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> GeneratorOutput:
        z = self._latent(z)
        video = self.video_head(self.foreground_stream(z))
        self._check_video(video)
        return GeneratorOutput(video=video, foreground=video, mask=None, background=None)


def video_and_mask(video_head: nn.Sequential, mask_head: nn.Sequential,
                   features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f = tanh(video_head's conv(features)), m = sigmoid(mask_head's conv(features)), computed as one
    transposed convolution with 3 + 1 output channels: the same maths and parameters
    (the two heads stay separate modules, as in the paper and in checkpoints), one pass over the widest,
    largest activation instead of two; on CPU oneDNN takes about as long for 4 output channels as for 1 or 3
    (benchmarks/RESULTS.md)."""
    video_conv, mask_conv = video_head[0], mask_head[0]
    assert video_conv.stride == mask_conv.stride and video_conv.padding == mask_conv.padding
    # ConvTranspose3d weights are [in, out, kT, kH, kW]
    weight = torch.cat([video_conv.weight, mask_conv.weight], dim=1)
    bias = torch.cat([video_conv.bias, mask_conv.bias])
    out = nn.functional.conv_transpose3d(features, weight, bias, stride=video_conv.stride,
                                         padding=video_conv.padding)
    channels = video_conv.out_channels
    return video_head[1](out[:, :channels]), mask_head[1](out[:, channels:])


def compose(foreground: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """m * f + (1 - m) * b: f [B,C,T,H,W], m [B,1,T,H,W], b [B,C,H,W] (static, broadcast over T)."""
    return mask * foreground + (1 - mask) * background.unsqueeze(2)


def build_generator(cfg: ModelConfig) -> TwoStreamGenerator | OneStreamGenerator:
    return TwoStreamGenerator(cfg) if cfg.kind == "two-stream" else OneStreamGenerator(cfg)
