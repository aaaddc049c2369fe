"""The training loop (paper Sec. 3 / the original main.lua), one code path for one process and torchrun.

Per iteration: draw real clips and one fake batch; one discriminator step on real and fake
(separate forward passes, so each has its own BatchNorm statistics, as in the paper); then
one generator step that scores the same fake batch with the just-updated discriminator.
(The original reused D's output from before its update for the G step; we re-score.)
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from . import distributed
from .checkpoint import CheckpointError, list_checkpoints, load_checkpoint, load_state_dict, save_checkpoint, unflatten_optimizer
from .config import Config
from .data import make_source
from .losses import discriminator_loss, generator_adversarial_loss, mask_l1_penalty, real_probability
from .media import atomic_path
from .models import Discriminator, build_generator
from .logger import RunLogger
from .sample import generate_from_noise, noise, save_progress_grid


class TrainingError(RuntimeError):
    """A run that cannot start or resume; one line for the user."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    last_metrics: dict
    is_main: bool  # False on torchrun ranks other than 0, which write nothing


def to_model_range(clips: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 [B, C, T, H, W] -> float in [-1, 1] on the device (normalisation happens here, not in the data)."""
    assert clips.dtype == torch.uint8 and clips.ndim == 5, f"expected uint8 [B, C, T, H, W], got {clips.dtype} {list(clips.shape)}"
    return clips.to(device, non_blocking=True).float().div_(127.5).sub_(1.0)


def training_noise(seed: int, rank: int, step: int, batch_size: int, z_dim: int) -> torch.Tensor:
    """z for one rank's batch at one step, a pure function of (seed, rank, step): resuming (also under
    torchrun, with any number of ranks) needs no RNG state, and ranks never share noise."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + step * 104_729 + 1) % (2**63))
    return torch.randn(batch_size, z_dim, generator=gen)


def train(cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True) -> TrainResult:
    run_dir = Path(run_dir)
    tc = cfg.train
    ctx = distributed.setup(tc.device)
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    if tc.batch_size % ctx.world_size:
        raise TrainingError(f"train.batch_size {tc.batch_size} must be divisible by the {ctx.world_size} processes")
    local_batch = tc.batch_size // ctx.world_size
    torch.manual_seed(tc.seed + ctx.rank)

    generator = build_generator(cfg.model).to(ctx.device)
    discriminator = Discriminator(cfg.model).to(ctx.device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=tc.lr_g, betas=(tc.beta1, tc.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=tc.lr_d, betas=(tc.beta1, tc.beta2))
    start_step, elapsed = 0, 0.0

    existing = list_checkpoints(run_dir)
    if resume:
        if not existing:
            raise TrainingError(f"{run_dir}: nothing to resume (no checkpoint under checkpoints/)")
        ckpt = load_checkpoint(existing[-1])
        if ckpt.config.model != cfg.model:
            raise TrainingError(f"{ckpt.path}: resume cannot change the model section of the config")
        load_state_dict(generator, ckpt.generator, ckpt.path / "generator.safetensors")
        load_state_dict(discriminator, ckpt.discriminator, ckpt.path / "discriminator.safetensors")
        state, meta = ckpt.training_state, ckpt.meta
        try:
            opt_g.load_state_dict(unflatten_optimizer("optimizer.generator", state, meta["optimizers"]["generator"]))
            opt_d.load_state_dict(unflatten_optimizer("optimizer.discriminator", state, meta["optimizers"]["discriminator"]))
            torch.set_rng_state(state["rng.torch"])
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{ckpt.path}: training state does not fit this run ({e})") from None
        start_step, elapsed = ckpt.step, float(meta.get("elapsed_seconds", 0.0))
    elif existing:
        raise TrainingError(f"{run_dir}: already holds checkpoints; pass --resume to continue it or choose another --out")

    source = make_source(cfg)  # before anything is written: bad data fails without leaving a run behind
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_dir / "config.json") as tmp:
            tmp.write_text(cfg.to_json() + "\n")
    G, D = ctx.wrap(generator), ctx.wrap(discriminator)
    logger = RunLogger(run_dir, enabled=ctx.is_main, start_step=start_step)
    fixed_z = noise(tc.num_samples, cfg.model.z_dim, tc.seed)  # the same clips in every progress grid
    sums: dict[str, float] = {}
    count, last_metrics, checkpoint_path = 0, {}, None
    bar = tqdm(total=tc.steps, initial=start_step, disable=not (progress and ctx.is_main), unit="step", dynamic_ncols=True)
    interval_start = time.perf_counter()

    def checkpoint(step: int) -> Path | None:
        if not ctx.is_main:
            return None
        return save_checkpoint(
            run_dir, step, cfg,
            generator=generator.state_dict(), discriminator=discriminator.state_dict(),
            optimizers={"generator": opt_g.state_dict(), "discriminator": opt_d.state_dict()},
            rng={"torch": torch.get_rng_state()},
            keep=tc.keep_checkpoints,
            extra={"elapsed_seconds": elapsed},
        )

    for step in range(start_step, tc.steps):
        real = to_model_range(source.clips(step * ctx.world_size + ctx.rank, local_batch, ctx.device), ctx.device)
        z = training_noise(tc.seed, ctx.rank, step, local_batch, cfg.model.z_dim).to(ctx.device)
        fake = G(z)

        # Discriminator step: real and fake in separate passes.
        real_logits = D(real)
        fake_logits = D(fake.video.detach())
        d_loss = discriminator_loss(real_logits, fake_logits)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()

        # Generator step: non-saturating loss on the updated D, plus the L1 prior on the mask.
        with ctx.no_sync(D):
            g_adv = generator_adversarial_loss(D(fake.video))
        mask_l1 = mask_l1_penalty(fake.mask) if fake.mask is not None else torch.zeros((), device=ctx.device)
        g_loss = g_adv + tc.mask_l1_weight * mask_l1
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()

        done = step + 1
        values = {
            "d_loss": d_loss, "g_loss": g_loss, "g_adv": g_adv, "mask_l1": mask_l1,
            "d_real": real_probability(real_logits).mean(), "d_fake": real_probability(fake_logits).mean(),
        }
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value.item()
        count += 1
        if done % tc.log_every == 0 or done == tc.steps:
            now = time.perf_counter()
            seconds = now - interval_start
            elapsed += seconds
            last_metrics = {k: ctx.mean(torch.tensor(v / count)).item() for k, v in sums.items()}
            last_metrics.update(
                seconds_per_step=seconds / count,
                clips_per_second=count * tc.batch_size / seconds,
                time=round(elapsed, 2),
            )
            if not all(math.isfinite(v) for v in last_metrics.values()):
                raise TrainingError(f"{run_dir}: non-finite loss at step {done}: {json.dumps(last_metrics)}")
            logger.log(done, last_metrics)
            bar.set_postfix(d=f"{last_metrics['d_loss']:.3f}", g=f"{last_metrics['g_adv']:.3f}", m=f"{last_metrics['mask_l1']:.2f}")
            sums, count, interval_start = {}, 0, now
        bar.update(1)
        if ctx.is_main and tc.sample_every and done % tc.sample_every == 0:
            out = generate_from_noise(generator, fixed_z, batchnorm="running")
            save_progress_grid(out, run_dir / "progress" / f"step_{done:08d}")
        if (tc.checkpoint_every and done % tc.checkpoint_every == 0) or done == tc.steps:
            checkpoint_path = checkpoint(done) or checkpoint_path
            ctx.barrier()
    bar.close()
    logger.close()
    ctx.close()
    return TrainResult(run_dir=run_dir, step=max(start_step, tc.steps), checkpoint=checkpoint_path, last_metrics=last_metrics, is_main=ctx.is_main)
