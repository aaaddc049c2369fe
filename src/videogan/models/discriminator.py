"""The paper's discriminator: a 3-D conv net judging appearance and motion together, and optionally a 2-D head
that judges single frames (model.d_frame_width)."""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .geometry import check_width, geometry
from .init import init_weights

if TYPE_CHECKING:  # annotations only: config imports the models' geometry rules to check a config
    from ..config import ModelConfig


def _down3d(cin: int, cout: int, time_stride: int) -> nn.Conv3d:
    kt = 4 if time_stride == 2 else 3
    return nn.Conv3d(cin, cout, (kt, 4, 4), stride=(time_stride, 2, 2), padding=1)


def _stages(convs: list[nn.Module], batch_norm: type[nn.Module], cfg: ModelConfig) -> list[nn.Module]:
    """D's stage pattern around its downsampling convolutions: each conv, then `batch_norm` with D's eps
    after all but the first (where model.d_norm is "batch"), then LeakyReLU 0.2."""
    layers: list[nn.Module] = []
    for i, conv in enumerate(convs):
        layers.append(conv)
        if i > 0 and cfg.d_norm == "batch":
            layers.append(batch_norm(conv.out_channels, eps=cfg.d_bn_eps))
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class Discriminator(nn.Module):
    """Clip [B, 3, T, H, W] in [-1, 1] -> two logits [B, 2] (index 1 = real), trained with cross-entropy; with
    a frame head (model.d_frame_width), [B, 2 heads, 2]: the clip head's logits, then the frame head's.

    Paper: Conv3d 3->64 (no BatchNorm), 128, 256, 512 (BatchNorm eps 1e-3), LeakyReLU 0.2 throughout,
    then Conv3d 512->2 with kernel (2, 4, 4) over the remaining 2 x 4 x 4 volume. With
    model.d_frame_differences (not in the paper) the first conv also takes each frame minus the first frame;
    with model.d_norm="spectral" (not in the paper) every conv is spectrally normalised, with no BatchNorm.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        geo = geometry(cfg.frames, cfg.size)
        check_width("model.d_width", cfg.d_width, geo, "double")
        widths = geo.widths(cfg.d_width, "double")
        strides = geo.time_strides[::-1]  # mirror of the generator: time halves first
        self.clip_shape = (cfg.channels, cfg.frames, cfg.size, cfg.size)
        ins = [cfg.channels * (2 if cfg.d_frame_differences else 1), *widths[:-1]]
        layers = _stages([_down3d(a, b, t) for a, b, t in zip(ins, widths, strides, strict=True)],
                         nn.BatchNorm3d, cfg)
        named = OrderedDict((str(i), layer) for i, layer in enumerate(layers))
        if cfg.d_frame_differences:  # first, in `features`, so that D's representation (representation/)
            # sees what D saw; by name, so the convolutions keep their parameter names
            named = OrderedDict([("frame_differences", FrameDifferences()), *named.items()])
        self.features = nn.Sequential(named)  # -> [B, width_last, core_frames, 4, 4]
        self.classifier = nn.Conv3d(widths[-1], 2, (geo.core_frames, 4, 4))
        # Not in `features`, so that D's representation (representation/) stays the paper's clip features.
        self.frame_head = FrameDiscriminator(cfg) if cfg.d_frame_width else None
        init_weights(self)
        if cfg.d_norm == "spectral":  # after the init, whose scale the normalisation then removes
            for conv in self.modules():
                if isinstance(conv, (nn.Conv3d, nn.Conv2d)):
                    spectral_norm(conv)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        assert video.shape[1:] == self.clip_shape, \
            f"D expects [B, {self.clip_shape}], got {list(video.shape)}"
        clip_logits = self.classifier(self.features(video)).flatten(1)  # [B, 2]
        if self.frame_head is None:
            return clip_logits
        return torch.stack([clip_logits, self.frame_head(video)], dim=1)  # [B, 2 heads, 2]


class FrameDiscriminator(nn.Module):
    """Clip [B, 3, T, H, W] -> two logits [B, 2]: the mean over `d_frame_samples` distinct frames, drawn at
    random per clip and call, of a 2-D conv net's logits for each frame (DVD-GAN's spatial discriminator sums
    its per-frame scores; the mean keeps the scale of one frame's).

    D's layers in 2-D: Conv2d 4x4 stride 2 per stage, widths d_frame_width doubling, BatchNorm (or spectral
    normalisation, as model.d_norm says) after all but the first, LeakyReLU 0.2, then a 4x4 conv to 2 logits.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        geo = geometry(cfg.frames, cfg.size)
        check_width("model.d_frame_width", cfg.d_frame_width, geo, "double")
        self.samples = cfg.d_frame_samples
        widths = geo.widths(cfg.d_frame_width, "double")
        ins = [cfg.channels, *widths[:-1]]
        convs = [nn.Conv2d(a, b, 4, stride=2, padding=1) for a, b in zip(ins, widths, strict=True)]
        self.net = nn.Sequential(*_stages(convs, nn.BatchNorm2d, cfg),
                                 nn.Conv2d(widths[-1], 2, 4))  # the 4x4 core -> [N, 2, 1, 1]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        frames = sample_frames(video, self.samples)  # [B, k, C, H, W]
        B, k = frames.shape[:2]
        return self.net(frames.flatten(0, 1)).view(B, k, 2).mean(dim=1)  # [B, 2]


def sample_frames(video: torch.Tensor, k: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, k, C, H, W]: k distinct frames of each clip, in random order, drawn with torch's
    generator on the clip's device (so a seeded run draws the same frames, and a resumed one goes on
    drawing)."""
    B, C, T, H, W = video.shape
    assert 1 <= k <= T, f"cannot draw {k} distinct frames from {T}"
    picks = torch.rand(B, T, device=video.device).argsort(dim=1)[:, :k]  # [B, k]
    chosen = video.gather(2, picks[:, None, :, None, None].expand(B, C, k, H, W))  # [B, C, k, H, W]
    return chosen.transpose(1, 2)


def with_frame_differences(video: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, 2C, T, H, W]: the clip, then each frame minus its first (all 0 for a still)."""
    return torch.cat([video, video - video[:, :, :1]], dim=1)


class FrameDifferences(nn.Module):
    """D's input view with model.d_frame_differences: with_frame_differences as a layer."""

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return with_frame_differences(video)
