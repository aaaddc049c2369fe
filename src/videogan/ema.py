"""An exponential moving average (EMA) of the generator's weights, for sampling.

Not in the paper: averaging the weights smooths out the GAN's step-to-step oscillation (as in
DiT and StyleGAN). The average has no BatchNorm statistics of its own, and the live G's do not
fit its weights; since G's inputs are only noise, they are re-estimated from the EMA generator's
own activations on fresh noise (`recalibrate_batchnorm`) before it is saved or sampled.
"""
from __future__ import annotations

import torch
from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for parameters (buffers: see recalibrate_batchnorm)."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)


def ema_decay_at(step: int, decay: float) -> float:
    """Warm-up: the average starts short (1 - decay ramps down from 0.9), so early weights fade fast."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def recalibrate_batchnorm(generator: nn.Module, batches: int = 16, batch_size: int = 16, seed: int = 0) -> None:
    """Set every BatchNorm's running statistics to the exact average over `batches` batches of G(z),
    z ~ N(0, 1) from a fixed seed (deterministic: a resumed run recalibrates identically)."""
    norms = [m for m in generator.modules() if isinstance(m, _NORMS)]
    if not norms:
        return
    device = next(generator.parameters()).device
    was_training = generator.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    generator.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        generator(torch.randn(batch_size, generator.z_dim, generator=gen).to(device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    generator.train(was_training)
