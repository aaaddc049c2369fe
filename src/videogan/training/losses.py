"""GAN losses of the paper and the image-to-video model's priors, as small pure functions.

The discriminator emits two logits per clip (index 0 = fake, 1 = real) and is trained
with cross-entropy, as the original's nn.CrossEntropyCriterion on a 2-way output. With a frame head
(model.d_frame_width) it emits two per clip and head, [B, heads, 2], and each head's loss is added.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

REAL, FAKE = 1, 0


def _cross_entropy_to(logits: torch.Tensor, label: int) -> torch.Tensor:
    """Cross-entropy of [B, 2] logits against one label, the mean over the batch; of [B, heads, 2] logits,
    the sum over the heads of each head's mean (as DVD-GAN adds its two discriminators' losses)."""
    assert logits.ndim in (2, 3) and logits.shape[-1] == 2, \
        f"expected [B, 2] or [B, heads, 2] logits, got {list(logits.shape)}"
    flat = logits.reshape(-1, 2)
    target = torch.full((flat.shape[0],), label, dtype=torch.long, device=logits.device)
    heads = logits.shape[1] if logits.ndim == 3 else 1
    return F.cross_entropy(flat, target) * heads


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(real) - log(1 - D(fake)), each averaged over its batch (the original sums the two)."""
    return _cross_entropy_to(real_logits, REAL) + _cross_entropy_to(fake_logits, FAKE)


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating loss -log D(G(z)) (Goodfellow et al. 2014), as in the original."""
    return _cross_entropy_to(fake_logits, REAL)


def real_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """log D / (1 - D) of each clip, [B] (or of each clip and head, [B, heads]): the scalar the 2-way softmax
    turns into D's probability (sigmoid of it)."""
    return logits[..., REAL] - logits[..., FAKE]


def r1_penalty(clips: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018, "Which training methods for GANs do actually converge?"): the mean over the
    batch of |d log-odds / d clip|^2 (with several heads, of their summed log-odds) at the real clips that
    gave `logits`, kept differentiable (create_graph) so that D's step can descend it. `clips` must require
    grad. (With BatchNorm in D, clip i's gradient of the batch's summed log-odds also carries its effect on
    the batch statistics, as in every BatchNorm GAN that uses R1.)"""
    (grad,) = torch.autograd.grad(real_log_odds(logits).sum(), clips, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def mask_l1_penalty(mask: torch.Tensor) -> torch.Tensor:
    """Mean |m| over the whole batch: the sparsity prior that pushes static content to the background."""
    return mask.abs().mean()


def real_probability(logits: torch.Tensor) -> torch.Tensor:
    """D's probability that each clip is real, [B] (with several heads, each head's, [B, heads])."""
    return logits.softmax(dim=-1)[..., REAL]


# ------------------------------------------------------------------------ the image-to-video model's priors

def first_frame_l1(video: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """mean |video[:, :, 0] - image|: video [B, 3, T, H, W], image [B, 3, H, W], in model units ([-1, 1]).

    The original's reconstruction term (main_conditional.lua: AbsCriterion on the first frame, times lambda).
    """
    assert video.ndim == 5 and image.shape == video[:, :, 0].shape, \
        f"video {list(video.shape)} vs image {list(image.shape)}"
    return (video[:, :, 0] - image).abs().mean()


def flow_total_variation(flow: torch.Tensor) -> torch.Tensor:
    """mean |difference of horizontally and of vertically neighbouring flow vectors| over both components:
    flow [B, 2, T, H, W] -> a 0-dim tensor; 0 for a flow constant in each frame. As a penalty it favours the
    piecewise-constant flow of rigidly moving objects over a stretching one (train.flow_tv_weight)."""
    assert flow.ndim == 5 and flow.shape[1] == 2, f"flow must be [B, 2, T, H, W], got {list(flow.shape)}"
    horizontal = (flow[..., :, 1:] - flow[..., :, :-1]).abs().mean()
    vertical = (flow[..., 1:, :] - flow[..., :-1, :]).abs().mean()
    return horizontal + vertical


def ownership_entropy(ownership: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of each pixel's shares over the layers: ownership [B, K + 1, T, H, W] -> a 0-dim
    tensor; 0 where one layer owns each pixel outright, log(K + 1) for equal shares. As a penalty
    (train.layer_entropy_weight) it pushes each pixel to one layer, so that it moves with that layer's
    translation instead of a mixture of several (a mixture stretches the objects)."""
    assert ownership.ndim == 5, f"ownership must be [B, K + 1, T, H, W], got {list(ownership.shape)}"
    return -(ownership * ownership.clamp_min(1e-12).log()).sum(dim=1).mean()
