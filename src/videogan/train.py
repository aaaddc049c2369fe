"""The training loop (paper Sec. 3 / the original main.lua), one code path for one process and torchrun.

Per iteration: draw real clips and one fake batch; one discriminator step on real and fake
(separate forward passes, so each has its own BatchNorm statistics, as in the paper); then
one generator step that scores the same fake batch with the just-updated discriminator.
(The original reused D's output from before its update for the G step; we re-score.)
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from . import distributed
from .checkpoint import TrainingState, list_checkpoints, read_best, restore_training_state, save_training_state, write_best
from .config import Config
from .data import make_source
from .ema import ema_decay_at, recalibrate_batchnorm, update_ema
from .logger import IntervalMeter, RunLogger
from .losses import discriminator_loss, generator_adversarial_loss, mask_l1_penalty, real_probability
from .media import write_json
from .metrics.evaluate import TrainingEvaluator
from .models import Discriminator, build_generator
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
    # Shard batches arrive channels-last ([B, T, H, W, C] memory, as decoded); the layout is fixed here, on the
    # device, in uint8 (a quarter of the float copy's bytes).
    return clips.to(device, non_blocking=True).contiguous().float().div_(127.5).sub_(1.0)


def training_noise(seed: int, rank: int, step: int, batch_size: int, z_dim: int) -> torch.Tensor:
    """z for one rank's batch at one step, a pure function of (seed, rank, step): resuming (also under
    torchrun, with any number of ranks) needs no RNG state, and ranks never share noise."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + step * 104_729 + 1) % (2**63))
    return torch.randn(batch_size, z_dim, generator=gen)


def train_step(G, D, opt_g, opt_d, real: torch.Tensor, z: torch.Tensor, mask_l1_weight: float, ctx) -> dict:
    """One iteration of the paper's algorithm; returns the step's losses as 0-dim tensors."""
    fake = G(z)

    # Discriminator step: real and fake in separate passes.
    real_logits = D(real)
    fake_logits = D(fake.video.detach())
    d_loss = discriminator_loss(real_logits, fake_logits)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()

    # Generator step: non-saturating loss on the updated D, plus the L1 prior on the mask.
    with ctx.no_sync(D):  # D's gradients from this pass are discarded: no need to all-reduce them
        g_adv = generator_adversarial_loss(D(fake.video))
    mask_l1 = mask_l1_penalty(fake.mask) if fake.mask is not None else torch.zeros((), device=real.device)
    g_loss = g_adv + mask_l1_weight * mask_l1
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()

    return {
        "d_loss": d_loss, "g_loss": g_loss, "g_adv": g_adv, "mask_l1": mask_l1,
        "d_real": real_probability(real_logits).mean(), "d_fake": real_probability(fake_logits).mean(),
    }


def train(cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True) -> TrainResult:
    run_dir, tc = Path(run_dir), cfg.train
    ctx = distributed.setup(tc.device)
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    if tc.batch_size % ctx.world_size:
        raise TrainingError(f"train.batch_size {tc.batch_size} must be divisible by the {ctx.world_size} processes")
    local_batch = tc.batch_size // ctx.world_size
    torch.manual_seed(tc.seed + ctx.rank)

    generator = build_generator(cfg.model).to(ctx.device)
    discriminator = Discriminator(cfg.model).to(ctx.device)
    state = TrainingState(
        generator, discriminator,
        opt_g=torch.optim.Adam(generator.parameters(), lr=tc.lr_g, betas=(tc.beta1, tc.beta2)),
        opt_d=torch.optim.Adam(discriminator.parameters(), lr=tc.lr_d, betas=(tc.beta1, tc.beta2)),
        generator_ema=copy.deepcopy(generator).eval().requires_grad_(False) if tc.ema_decay > 0 else None,
    )
    existing = list_checkpoints(run_dir)
    if resume:
        if not existing:
            raise TrainingError(f"{run_dir}: nothing to resume (no checkpoint under checkpoints/)")
        restore_training_state(run_dir, cfg, state)
    elif existing:
        raise TrainingError(f"{run_dir}: already holds checkpoints; pass --resume to continue it or choose another --out")

    # The first batch is drawn before anything is written: unusable data fails without leaving a run behind.
    stream = make_source(cfg).batches(state.step, local_batch, ctx.rank, ctx.world_size, ctx.device)
    batches = itertools.chain([next(stream)], stream)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", cfg.to_dict(), sort_keys=True)
    G, D = ctx.wrap(generator), ctx.wrap(discriminator)
    logger = RunLogger(run_dir, enabled=ctx.is_main, start_step=state.step)
    meter = IntervalMeter(tc.batch_size, elapsed=state.elapsed_seconds)
    fixed_z = noise(tc.num_samples, cfg.model.z_dim, tc.seed)  # the same clips in every progress grid
    evaluator = TrainingEvaluator(cfg, ctx.device) if tc.eval_every and ctx.is_main else None
    best = read_best(run_dir) if resume else {}
    last_metrics, checkpoint_path = {}, (existing[-1] if existing else None)
    bar = tqdm(total=tc.steps, initial=state.step, disable=not (progress and ctx.is_main), unit="step", dynamic_ncols=True)

    for step in range(state.step, tc.steps):
        real = to_model_range(next(batches), ctx.device)
        z = training_noise(tc.seed, ctx.rank, step, local_batch, cfg.model.z_dim).to(ctx.device)
        meter.add(train_step(G, D, state.opt_g, state.opt_d, real, z, tc.mask_l1_weight, ctx))
        if state.generator_ema is not None:
            update_ema(state.generator_ema, generator, ema_decay_at(step, tc.ema_decay))
        state.step = done = step + 1
        bar.update(1)

        if done % tc.log_every == 0 or done == tc.steps:
            last_metrics = meter.flush(ctx.mean)
            if not meter.finite(last_metrics):
                raise TrainingError(f"{run_dir}: non-finite loss at step {done}: {last_metrics}")
            logger.log(done, last_metrics)
            bar.set_postfix(d=f"{last_metrics['d_loss']:.3f}", g=f"{last_metrics['g_adv']:.3f}", m=f"{last_metrics['mask_l1']:.2f}")
        grid_due = ctx.is_main and tc.sample_every and done % tc.sample_every == 0
        eval_due = bool(tc.eval_every) and done % tc.eval_every == 0  # every evaluation is also a checkpoint
        checkpoint_due = (tc.checkpoint_every and done % tc.checkpoint_every == 0) or done == tc.steps or eval_due
        if ctx.is_main and state.generator_ema is not None and (grid_due or checkpoint_due):
            recalibrate_batchnorm(state.generator_ema, seed=tc.seed)  # once, for the grid and the checkpoint
        shown = state.generator_ema if state.generator_ema is not None else generator
        if grid_due:
            save_progress_grid(generate_from_noise(shown, fixed_z), run_dir / "progress" / f"step_{done:08d}")
        scores = evaluator(shown) if eval_due and evaluator is not None else {}  # rank 0; the others wait below
        if scores:
            logger.log(done, scores)
        if checkpoint_due:
            state.elapsed_seconds = meter.elapsed
            if ctx.is_main:
                improved = bool(scores) and (not best or scores[evaluator.metric] < best["value"])
                checkpoint_path = save_training_state(run_dir, cfg, state, keep=tc.keep_checkpoints,
                                                      keep_also=None if improved or not best else Path(best["checkpoint"]))
                if improved:
                    best = {"step": done, "metric": evaluator.metric, "value": scores[evaluator.metric], **scores,
                            "checkpoint": str(checkpoint_path)}
                    write_best(run_dir, best)
            ctx.barrier()
    bar.close()
    stream.close()  # stops the data loader's worker processes now, not at garbage collection
    logger.close()
    ctx.close()
    return TrainResult(run_dir, max(state.step, tc.steps), checkpoint_path, last_metrics, ctx.is_main)
