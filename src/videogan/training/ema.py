"""An exponential moving average (EMA) of the generator's weights, for sampling.

Not in the paper: averaging the weights smooths out the GAN's step-to-step oscillation (as in
DiT and StyleGAN). The average has no BatchNorm statistics of its own, and the live G's do not
fit its weights; since G's inputs are only noise, they are re-estimated from the EMA generator's
own activations on fresh noise (`recalibrate_batchnorm`) before it is saved or sampled.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, for parameters (buffers: see recalibrate_batchnorm)."""
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1.0 - decay)


def ema_decay_at(step: int, decay: float) -> float:
    """Warm-up: the average starts short (1 - decay ramps down from 0.9), so early weights fade fast."""
    return min(decay, (1 + step) / (10 + step))


@contextmanager
def cumulative_batchnorm(module: nn.Module) -> Iterator[list[_BatchNorm]]:
    """Inside the block, `module` is in training mode and each of its BatchNorms starts from fresh running
    statistics (mean 0, variance 1) accumulated as the exact average over the batches run (momentum None).
    Yields those BatchNorms (empty: nothing to re-estimate); on exit their momenta and the module's mode are
    restored."""
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    was_training = module.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    module.train()
    try:
        yield norms
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        module.train(was_training)


@torch.no_grad()
def recalibrate_batchnorm(generator: nn.Module, batches: int = 16, batch_size: int = 16,
                          seed: int = 0) -> None:
    """Set every BatchNorm's running statistics to the exact average over `batches` batches of G(z),
    z ~ N(0, 1) from a fixed seed (deterministic: a resumed run recalibrates identically)."""
    with cumulative_batchnorm(generator) as norms:
        if not norms:
            return
        device = next(generator.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        for _ in range(batches):
            generator(torch.randn(batch_size, generator.z_dim, generator=gen).to(device))
