"""One training step (paper Sec. 3 / the original main.lua): one discriminator step on real and fake clips,
then one generator step that scores the same fake batch with the just-updated discriminator.

Real and fake go through D in separate forward passes, so each has its own BatchNorm statistics, as in the
paper. (The original reused D's output from before its update for the G step; we re-score.)
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from ..config import TrainConfig
from ..models import GeneratorOutput
from .distributed import DistributedContext
from .losses import (
    discriminator_loss,
    first_frame_l1,
    flow_total_variation,
    generator_adversarial_loss,
    mask_l1_penalty,
    ownership_entropy,
    r1_penalty,
    real_probability,
)
from .runtime import autocast


@dataclass
class StepSetup:
    """What every step of a run uses: the networks as the step calls them (runtime.prepare_networks: maybe
    under DistributedDataParallel or torch.compile), their optimisers, the train settings and the process
    group."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    train: TrainConfig
    ctx: DistributedContext
    conditional: bool = False  # G animates the first frame of each real clip (model.kind conditional)


def train_step(setup: StepSetup, real: torch.Tensor, z: torch.Tensor,
               augment: Callable[[torch.Tensor], torch.Tensor] | None = None, r1: bool = False) -> dict:
    """One iteration of the paper's algorithm on this rank's batch; returns its mean losses (0-dim tensors).

    real [B, 3, T, H, W] in [-1, 1], z [B, Z]. The conditional model (the original's main_conditional.lua)
    animates the first frame of each real clip, and its G loss adds train.first_frame_l1_weight * mean |first
    generated frame - input|. With train.grad_accumulation K > 1 the batch runs as K micro-batches whose
    gradients add up before each optimiser step (BatchNorm then normalises each micro-batch on its own); G
    runs forward twice per micro-batch (without gradients for D's step, with them for its own), since keeping
    K graphs alive would cost the memory accumulation is meant to save. `augment` (train.augment,
    diffaugment.py) transforms every clip D sees, real and fake, in both steps, each call with fresh random
    draws. `r1` (the steps where r1_due says so) adds train.r1_weight * r1_every / 2 * the R1 penalty to D's
    loss, taken with respect to the real clips before augmentation (as StyleGAN2-ADA does).
    """
    G, D, tc, ctx = setup.generator, setup.discriminator, setup.train, setup.ctx
    K = tc.grad_accumulation
    micro = list(zip(real.chunk(K), z.chunk(K), strict=True))
    assert len(micro) == K and all(len(r) == len(micro[0][0]) for r, _ in micro), \
        "batch not divisible into micro-batches"
    precision = autocast(tc, real.device)
    seen = augment if augment is not None else (lambda clips: clips)  # what D is shown of a clip
    totals: dict[str, torch.Tensor] = {}

    def record(values: dict) -> None:
        for name, value in values.items():
            totals[name] = totals.get(name, 0) + value.detach().float() / K

    def generate(clips: torch.Tensor, noise: torch.Tensor):
        # conditional input: the first frame [B, 3, H, W]
        return G(clips[:, :, 0], noise) if setup.conditional else G(noise)

    # Discriminator step: real and fake in separate passes (each with its own BatchNorm statistics, as in the
    # paper).
    setup.opt_d.zero_grad(set_to_none=True)
    kept = None  # with one micro-batch, G's forward pass is kept for its own step
    for i, (r, zi) in enumerate(micro):
        with precision, (torch.no_grad() if K > 1 else nullcontext()):
            fake = generate(r, zi)
        kept = fake if K == 1 else None
        with ctx.sync_if(D, i == K - 1):  # all-reduce D's gradients once, after the last micro-batch
            with precision:
                r = r.detach().requires_grad_(r1)
                real_logits, fake_logits = D(seen(r)), D(seen(fake.video.detach()))
                d_loss = discriminator_loss(real_logits, fake_logits)
            regularised = d_loss
            if r1:
                r1_value = r1_penalty(r, real_logits)
                regularised = d_loss + tc.r1_weight * tc.r1_every / 2 * r1_value
            (regularised / K).backward()
        record({"d_loss": d_loss, **d_probabilities(real_logits, fake_logits),
                **({"r1": r1_value} if r1 else {})})
    setup.opt_d.step()

    # Generator step: the non-saturating loss on the just-updated D, plus the weighted penalties.
    setup.opt_g.zero_grad(set_to_none=True)
    for i, (r, zi) in enumerate(micro):
        with ctx.sync_if(G, i == K - 1):
            with precision:
                fake = kept if kept is not None else generate(r, zi)
                # G's step needs D's gradient with respect to the clips only: no gradients for D's weights,
                # and so nothing of D's to all-reduce.
                with ctx.no_sync(D), frozen(D):
                    g_adv = generator_adversarial_loss(D(seen(fake.video)))
                penalties = generator_penalties(fake, r, tc, setup.conditional)
                g_loss = g_adv + sum(weight * value for weight, value in penalties.values())
            (g_loss / K).backward()
        record({"g_loss": g_loss, "g_adv": g_adv, **{name: value for name, (_, value) in penalties.items()}})
    setup.opt_g.step()
    return totals


def generator_penalties(fake: GeneratorOutput, real: torch.Tensor, tc: TrainConfig,
                        conditional: bool) -> dict[str, tuple[float, torch.Tensor]]:
    """The priors added to G's loss, by name: (weight, value). mask_l1 is always there (0 for a model without
    a mask), so that every run logs it; the others where the model and the settings call for them."""
    mask_l1 = mask_l1_penalty(fake.mask) if fake.mask is not None else torch.zeros((), device=real.device)
    penalties = {"mask_l1": (tc.mask_l1_weight, mask_l1)}
    if conditional:
        penalties["first_frame_l1"] = (tc.first_frame_l1_weight, first_frame_l1(fake.video, real[:, :, 0]))
    if fake.flow is not None and tc.flow_tv_weight:
        penalties["flow_tv"] = (tc.flow_tv_weight, flow_total_variation(fake.flow))
    if fake.layers is not None and tc.layer_entropy_weight:
        penalties["layer_entropy"] = (tc.layer_entropy_weight, ownership_entropy(fake.layers))
    return penalties


def d_probabilities(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """D's mean real probability on the real and on the fake clips (d_real, d_fake); with a frame head
    (model.d_frame_width), those of the clip head, and the frame head's as d_real_frames, d_fake_frames."""
    real, fake = real_probability(real_logits), real_probability(fake_logits)  # [B] or [B, 2 heads]
    if real.ndim == 1:
        return {"d_real": real.mean(), "d_fake": fake.mean()}
    return {"d_real": real[:, 0].mean(), "d_fake": fake[:, 0].mean(),
            "d_real_frames": real[:, 1].mean(), "d_fake_frames": fake[:, 1].mean()}


def r1_due(tc: TrainConfig, step: int) -> bool:
    """Whether step `step` (0-based) applies the lazy R1 penalty."""
    return tc.r1_weight > 0 and step % tc.r1_every == 0


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """Forward passes inside record no gradients for `module`'s parameters: D's weight gradients during G's
    step, which the original computed and threw away (benchmarks/RESULTS.md, their share of the step). Under
    DDP this also means the pass needs no gradient all-reduce."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
