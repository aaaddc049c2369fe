"""GAN losses of the paper, as small pure functions.

The discriminator emits two logits per clip (index 0 = fake, 1 = real) and is trained
with cross-entropy, as the original's nn.CrossEntropyCriterion on a 2-way output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

REAL, FAKE = 1, 0


def _cross_entropy_to(logits: torch.Tensor, label: int) -> torch.Tensor:
    """Mean cross-entropy of [B, 2] logits against one label for the whole batch."""
    assert logits.ndim == 2 and logits.shape[1] == 2, f"expected [B, 2] logits, got {list(logits.shape)}"
    target = torch.full((logits.shape[0],), label, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(real) - log(1 - D(fake)), each averaged over its batch (the original sums the two)."""
    return _cross_entropy_to(real_logits, REAL) + _cross_entropy_to(fake_logits, FAKE)


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating loss -log D(G(z)) (Goodfellow et al. 2014), as in the original."""
    return _cross_entropy_to(fake_logits, REAL)


def real_log_odds(logits: torch.Tensor) -> torch.Tensor:
    """log D / (1 - D) of each clip, [B]: the scalar the 2-way softmax turns into D's probability (sigmoid of it)."""
    return logits[:, REAL] - logits[:, FAKE]


def r1_penalty(clips: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018, "Which training methods for GANs do actually converge?"): the mean over the batch
    of |d log-odds / d clip|^2 at the real clips that gave `logits`, kept differentiable (create_graph) so that D's
    step can descend it. `clips` must require grad. (With BatchNorm in D, clip i's gradient of the batch's summed
    log-odds also carries its effect on the batch statistics, as in every BatchNorm GAN that uses R1.)"""
    (grad,) = torch.autograd.grad(real_log_odds(logits).sum(), clips, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def mask_l1_penalty(mask: torch.Tensor) -> torch.Tensor:
    """Mean |m| over the whole batch: the sparsity prior that pushes static content to the background."""
    return mask.abs().mean()


def real_probability(logits: torch.Tensor) -> torch.Tensor:
    """D's probability that each clip is real, [B]."""
    return logits.softmax(dim=1)[:, REAL]
