"""Measures of generated clips, as small pure functions: how much they move, how differently one image's
futures move, how rigidly a warping model's objects move, and how well the two-stream model's mask holds the
motion."""
from __future__ import annotations

import torch

from ..models import GeneratorOutput

# still_share's threshold for clips in 0-255 levels, as the benchmarks read it: on the held-out people clips
# the median pixel changes by 3.7 levels (JPEG and what stabilisation leaves), so 2 calls little still
STILL_LEVELS = 4.0


def changes_from_first(video: torch.Tensor) -> torch.Tensor:
    """The frame-difference field frame t - frame 0 for t >= 1: [..., C, T, H, W] -> [..., C, T-1, H, W]."""
    return video[..., 1:, :, :] - video[..., :1, :, :]


def motion(video: torch.Tensor) -> torch.Tensor:
    """Per clip, mean |frame t - frame 0| over t >= 1 and all pixels: [B, 3, T, H, W] -> [B]; 0 for a frozen
    frame."""
    return changes_from_first(video).abs().mean(dim=(1, 2, 3, 4))


def still_share(video: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per clip, the fraction of pixels that stay put: [B, 3, T, H, W] -> [B] in [0, 1].

    A pixel is still when its mean |frame t - frame 0| over t >= 1 and the channels is below `threshold` (in
    the video's own units: 2 / 127.5 is 2 levels of 0-255 for clips in [-1, 1]). Where motion says how much a
    clip moves, this says where: real footage keeps most of its background still while something moves, and a
    model that makes the whole frame drift (or shimmer) scores low; 1.0 for a frozen frame.
    """
    assert video.ndim == 5 and video.shape[2] >= 2, f"expected [B, C, T >= 2, H, W], got {list(video.shape)}"
    change = changes_from_first(video).abs().mean(dim=(1, 2))  # [B, H, W]
    return (change < threshold).float().mean(dim=(1, 2))


def motion_spread(videos: torch.Tensor) -> torch.Tensor:
    """How much the motion of one image's K futures differs: [K, B, 3, T, H, W] -> [B].

    Each future's motion is its frame-difference field d_k = video_k[t] - video_k[0] (t >= 1); the spread is
    the mean over the K(K-1)/2 pairs of mean |d_i - d_j|. Exactly 0 when all K futures move the same way (the
    deterministic model), whatever their first frames.
    """
    k = videos.shape[0]
    assert videos.ndim == 6 and k >= 2, f"expected [K >= 2, B, C, T, H, W], got {list(videos.shape)}"
    fields = changes_from_first(videos)  # [K, B, C, T-1, H, W]
    pairs = [(fields[i] - fields[j]).abs().mean(dim=(1, 2, 3, 4)) for i in range(k) for j in range(i + 1, k)]
    return torch.stack(pairs).mean(0)


def object_flow_spread(flow: torch.Tensor, objects: torch.Tensor) -> torch.Tensor:
    """How far a warping model's objects are from moving rigidly: flow [B, 2, T, H, W] (grid_sample units),
    objects [B, H, W] int (0 = background, 1..n = the input image's objects) -> [B], in pixels.

    In frame t >= 1 an object's pixels are those whose source (p + flow, nearest pixel, clamped at the border
    as the warp clamps) lies on it; their spread is the mean distance of their flow vectors from the vector
    median (per component). Averaged over an image's objects and frames; 0 where every object is copied at one
    offset per frame, whatever the offset, so read it beside motion (a still image is also 0). NaN for an
    image without objects.
    """
    B, _, T, H, W = flow.shape
    assert objects.shape == (B, H, W), f"objects must be [{B}, {H}, {W}], got {list(objects.shape)}"
    pixels = flow * torch.tensor([W / 2, H / 2], dtype=flow.dtype).view(1, 2, 1, 1, 1)  # grid units -> pixels
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    src_x = (xs + pixels[:, 0]).round().long().clamp(0, W - 1)  # [B, T, H, W]
    src_y = (ys + pixels[:, 1]).round().long().clamp(0, H - 1)
    spreads = torch.full((B,), float("nan"))
    for b in range(B):
        source_object = objects[b][src_y[b], src_x[b]]  # [T, H, W]: which object each pixel draws from
        values = []
        for label in [label for label in objects[b].unique().tolist() if label]:
            for t in range(1, T):
                vectors = pixels[b, :, t][:, source_object[t] == label]  # [2, n]
                if vectors.shape[1]:
                    values.append((vectors - vectors.median(dim=1, keepdim=True).values).norm(dim=0).mean())
        if values:
            spreads[b] = torch.stack(values).mean()
    return spreads


def mask_statistics(out: GeneratorOutput) -> dict[str, float | None]:
    """How well the model separated foreground from background.

    mask_mean: mean of m (0 = all background, 1 = all foreground).
    motion_in_mask: share of frame-to-frame change |x[t+1] - x[t]| that falls where m > 0.5
    (in either frame); near 1 means the motion is explained by the foreground stream.
    """
    if out.mask is None:
        return {"mask_mean": None, "motion_in_mask": None}
    change = (out.video[:, :, 1:] - out.video[:, :, :-1]).abs().sum(1)  # [B, T-1, H, W]
    inside = ((out.mask[:, 0, 1:] > 0.5) | (out.mask[:, 0, :-1] > 0.5)).float()
    total = change.sum()
    share = (change * inside).sum() / total if total > 0 else torch.tensor(float("nan"))
    return {"mask_mean": out.mask.mean().item(), "motion_in_mask": share.item()}
