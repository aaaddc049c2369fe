"""The training loop (paper Sec. 3 / the original main.lua), one code path for one process and torchrun.

Per iteration: draw real clips and one fake batch; one discriminator step on real and fake
(separate forward passes, so each has its own BatchNorm statistics, as in the paper); then
one generator step that scores the same fake batch with the just-updated discriminator.
(The original reused D's output from before its update for the G step; we re-score.)
"""
from __future__ import annotations

import copy
import itertools
import os
import signal
import sys
import threading
import time
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from . import distributed
from .checkpoint import (
    BEST_FILE,
    CheckpointWriteError,
    TrainingState,
    list_checkpoints,
    read_best,
    restore_training_state,
    save_training_state,
    sweep_leftovers,
    system_reason,
    write_best,
)
from ..config import Config, TrainConfig, validate
from ..data import make_source
from .diffaugment import ClipAugment, augment_generator
from .ema import ema_decay_at, recalibrate_batchnorm, update_ema
from .logger import IntervalMeter, RunLogger
from .losses import discriminator_loss, generator_adversarial_loss, mask_l1_penalty, r1_penalty, real_probability
from ..media import atomic_path, from_uint8, grid, write_json, write_png
from ..metrics.evaluate import TrainingEvaluator
from ..models import Discriminator, OnFixedImages, build_generator
from ..models.conditional import first_frame_l1, flow_total_variation, ownership_entropy
from .runtime import adam, autocast, check_options, clip_layout, configure_backends, prepare_networks
from ..generation.sample import generate_from_noise, noise, save_progress_grid


class TrainingError(RuntimeError):
    """A run that cannot start or resume; one line for the user."""


# The conditional model's fixed inputs: the first frames of the run's first clips (RUN/conditioning.safetensors,
# kept so that a resumed run uses the same ones). The first num_samples are animated in the progress grids; all
# of them re-estimate the EMA generator's BatchNorm statistics, which, unlike the noise-only generators', depend on data.
CONDITIONING_FILE = "conditioning.safetensors"
CALIBRATION_IMAGES = 64


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    last_metrics: dict
    is_main: bool  # False on torchrun ranks other than 0, which write nothing
    stopped_by_signal: int | None = None  # SIGTERM or SIGINT ended the run early, at `step` (checkpointed)


def to_model_range(clips: torch.Tensor, device: torch.device | str,
                   memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 [B, C, T, H, W] -> float in [-1, 1] on the device (normalisation happens here, not in the data), in
    `memory_format` (runtime.clip_layout: what the networks expect)."""
    assert clips.dtype == torch.uint8 and clips.ndim == 5, f"expected uint8 [B, C, T, H, W], got {clips.dtype} {list(clips.shape)}"
    # Shard batches arrive channels-last ([B, T, H, W, C] memory, as decoded); the layout is fixed here, on the
    # device, in uint8 (a quarter of the float copy's bytes).
    return from_uint8(clips.to(device, non_blocking=True).contiguous(memory_format=memory_format))


def training_noise(seed: int, rank: int, step: int, batch_size: int, z_dim: int) -> torch.Tensor:
    """z for one rank's batch at one step, a pure function of (seed, rank, step): resuming (also under
    torchrun, with any number of ranks) needs no RNG state, and ranks never share noise."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + step * 104_729 + 1) % (2**63))
    return torch.randn(batch_size, z_dim, generator=gen)


def train_step(G, D, opt_g, opt_d, real: torch.Tensor, z: torch.Tensor, tc: TrainConfig, ctx,
               conditional: bool = False, augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
               r1: bool = False) -> dict:
    """One iteration of the paper's algorithm on this rank's batch; returns the step's mean losses (0-dim tensors).

    real [B, 3, T, H, W] in [-1, 1], z [B, Z]. The conditional model (the original's main_conditional.lua)
    animates the first frame of each real clip, and its G loss adds train.first_frame_l1_weight * mean |first
    generated frame - input|. With train.grad_accumulation K > 1 the batch runs as K micro-batches whose
    gradients add up before each optimiser step (BatchNorm then normalises each micro-batch on its own); G runs
    forward twice per micro-batch (without gradients for D's step, with them for its own), since keeping K
    graphs alive would cost the memory accumulation is meant to save. `augment` (train.augment, diffaugment.py)
    transforms every clip D sees, real and fake, in both steps, each call with fresh random draws. `r1` (the
    steps where r1_due says so) adds train.r1_weight * r1_every / 2 * the R1 penalty to D's loss, taken with respect
    to the real clips before augmentation (as StyleGAN2-ADA does).
    """
    K = tc.grad_accumulation
    micro = list(zip(real.chunk(K), z.chunk(K), strict=True))
    assert len(micro) == K and all(len(r) == len(micro[0][0]) for r, _ in micro), "batch not divisible into micro-batches"
    precision = autocast(tc, real.device)
    seen = augment if augment is not None else (lambda clips: clips)  # what D is shown of a clip
    totals: dict[str, torch.Tensor] = {}

    def record(values: dict) -> None:
        for name, value in values.items():
            totals[name] = totals.get(name, 0) + value.detach().float() / K

    def generate(clips: torch.Tensor, noise: torch.Tensor):
        return G(clips[:, :, 0], noise) if conditional else G(noise)  # conditional input: the first frame [B, 3, H, W]

    # Discriminator step: real and fake in separate passes (each with its own BatchNorm statistics, as in the paper).
    opt_d.zero_grad(set_to_none=True)
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
        record({"d_loss": d_loss, "d_real": real_probability(real_logits).mean(), "d_fake": real_probability(fake_logits).mean(),
                **({"r1": r1_value} if r1 else {})})
    opt_d.step()

    # Generator step: the non-saturating loss on the just-updated D, plus the weighted penalties.
    opt_g.zero_grad(set_to_none=True)
    for i, (r, zi) in enumerate(micro):
        with ctx.sync_if(G, i == K - 1):
            with precision:
                fake = kept if kept is not None else generate(r, zi)
                # G's step needs D's gradient with respect to the clips only: no gradients for D's weights, and so
                # nothing of D's to all-reduce.
                with ctx.no_sync(D), frozen(D):
                    g_adv = generator_adversarial_loss(D(seen(fake.video)))
                penalties = {"mask_l1": (tc.mask_l1_weight, mask_l1_penalty(fake.mask) if fake.mask is not None
                                         else torch.zeros((), device=real.device))}
                if conditional:
                    penalties["first_frame_l1"] = (tc.first_frame_l1_weight, first_frame_l1(fake.video, r[:, :, 0]))
                if fake.flow is not None and tc.flow_tv_weight:
                    penalties["flow_tv"] = (tc.flow_tv_weight, flow_total_variation(fake.flow))
                if fake.layers is not None and tc.layer_entropy_weight:
                    penalties["layer_entropy"] = (tc.layer_entropy_weight, ownership_entropy(fake.layers))
                g_loss = g_adv + sum(weight * value for weight, value in penalties.values())
            (g_loss / K).backward()
        record({"g_loss": g_loss, "g_adv": g_adv, **{name: value for name, (_, value) in penalties.items()}})
    opt_g.step()
    return totals


def r1_due(tc: TrainConfig, step: int) -> bool:
    """Whether step `step` (0-based) applies the lazy R1 penalty."""
    return tc.r1_weight > 0 and step % tc.r1_every == 0


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """Forward passes inside record no gradients for `module`'s parameters (~8% of the paper's step: D's weight
    gradients during G's step, which the original computed and threw away). Under DDP this also means the pass
    needs no gradient all-reduce."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def train(cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True) -> TrainResult:
    validate(cfg)  # the same one-line refusals as the CLI's, before anything is written
    run_dir, tc = Path(run_dir), cfg.train
    ctx = distributed.setup(tc.device)
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    if tc.batch_size % ctx.world_size:
        raise TrainingError(f"train.batch_size {tc.batch_size} must be divisible by the {ctx.world_size} processes")
    local_batch = tc.batch_size // ctx.world_size
    check_options(tc, ctx)
    configure_backends(tc, ctx.device)
    torch.manual_seed(tc.seed + ctx.rank)

    conditional = cfg.model.kind == "conditional"
    augment = ClipAugment.parse(tc.augment)
    generator = build_generator(cfg.model).to(ctx.device)
    discriminator = Discriminator(cfg.model).to(ctx.device)
    state = TrainingState(
        generator, discriminator,
        opt_g=adam(generator.parameters(), tc.lr_g, tc), opt_d=adam(discriminator.parameters(), tc.lr_d, tc),
        generator_ema=copy.deepcopy(generator).eval().requires_grad_(False) if tc.ema_decay > 0 else None,
    )
    existing = list_checkpoints(run_dir)
    if resume:
        if not existing:
            raise TrainingError(f"{run_dir}: nothing to resume (no checkpoint under checkpoints/)")
        restore_training_state(run_dir, cfg, state)
    elif existing:
        raise TrainingError(f"{run_dir}: already holds checkpoints; pass --resume to continue it or choose another --out")
    checkpoint_path = existing[-1] if existing else None  # the last good one, named when a write fails

    # The first batch is drawn before anything is written: unusable data fails without leaving a run behind.
    stream = make_source(cfg).batches(state.step, local_batch, ctx.rank, ctx.world_size, ctx.device)
    drawn = [next(stream)]
    if conditional and ctx.is_main:
        fixed_images = read_conditioning(run_dir) if resume else None
        if fixed_images is None:  # the first frames of the first clips; the batches drawn for them are still trained on
            while sum(len(b) for b in drawn) < max(tc.num_samples, CALIBRATION_IMAGES):
                drawn.append(next(stream))
            fixed_images = torch.cat([b[:, :, 0].cpu() for b in drawn])[: max(tc.num_samples, CALIBRATION_IMAGES)]
    batches = itertools.chain(drawn, stream)
    if ctx.is_main:
        with written(run_dir / "config.json", checkpoint_path):
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "config.json", cfg.to_dict(), sort_keys=True)
        sweep_leftovers(run_dir)  # what an interrupted checkpoint write or rotation left behind
        if conditional:
            with written(run_dir / CONDITIONING_FILE, checkpoint_path):
                write_conditioning(run_dir, fixed_images, tc.num_samples)
            fixed_inputs = to_model_range(fixed_images[:, :, None], ctx.device)[:, :, 0]  # [N, 3, H, W] in [-1, 1]

    def as_noise_generator(g: torch.nn.Module, count: int | None = None) -> torch.nn.Module:
        """What the noise-driven tools (progress grids, BatchNorm re-estimation) call: G itself, or the conditional
        G on the first `count` fixed images (all of them by default)."""
        return OnFixedImages(g, fixed_inputs[:count]) if conditional else g

    G, D = prepare_networks(generator, discriminator, tc, ctx)  # DDP, layout, compilation: see runtime.py
    meter = IntervalMeter(tc.batch_size, elapsed=state.elapsed_seconds)
    if state.log_interval:  # the checkpoint was written between two log_every steps: the interval goes on
        meter.resume(state.log_interval)
    reopened = ()  # the names of the values whose interval the checkpoint carried on
    if state.log_interval and state.step < tc.steps:
        reopened = [name for name, _, _ in state.log_interval["values"]]
    metrics_file = run_dir / "metrics.jsonl"
    with written(metrics_file, checkpoint_path):
        logger = RunLogger(run_dir, enabled=ctx.is_main, start_step=state.step, reopened=reopened)
    fixed_z = noise(tc.num_samples, generator.z_dim, tc.seed)  # the same clips in every progress grid
    evaluator = TrainingEvaluator(cfg, ctx.device) if tc.eval_every and ctx.is_main else None
    best = read_best(run_dir) if resume else {}
    last_metrics, checkpointed_step, stopped_by = {}, state.step, None
    bar = tqdm(total=tc.steps, initial=state.step, disable=not (progress and ctx.is_main), unit="step", dynamic_ncols=True)

    def write_checkpoint(scores: dict) -> None:
        """Checkpoint state.step (every rank calls this: the open logging interval is averaged over ranks)."""
        nonlocal checkpoint_path, best, checkpointed_step
        state.elapsed_seconds = meter.elapsed
        interval = meter.state(ctx.mean)
        state.log_interval = interval if interval["steps"] else None
        if ctx.is_main:
            with written(metrics_file, checkpoint_path):
                logger.sync()
            improved = bool(scores) and (not best or scores[evaluator.metric] < best["value"])
            with written(run_dir / "checkpoints", checkpoint_path):
                checkpoint_path = save_training_state(run_dir, cfg, state, keep=tc.keep_checkpoints,
                                                      keep_also=None if improved or not best else Path(best["checkpoint"]))
            if improved:
                best = {"step": state.step, "metric": evaluator.metric, "value": scores[evaluator.metric],
                        **scores, "checkpoint": str(checkpoint_path)}
                with written(run_dir / BEST_FILE, checkpoint_path):
                    write_best(run_dir, best)
        checkpointed_step = state.step
        ctx.barrier()

    # The data loader's worker processes stop when the run ends, not at garbage collection.
    with StopRequests(announce=ctx.is_main) as stop, closing(stream), bar:
        for step in range(state.step, tc.steps):
            clips = None if stop.signum else next_batch(batches, stop)
            if (stopped_by := agreed_signal(stop.signum, ctx)) is not None:
                break  # before this step; the checkpoint below holds the steps done
            real = to_model_range(clips, ctx.device, clip_layout(tc))
            z = training_noise(tc.seed, ctx.rank, step, local_batch, generator.z_dim).to(ctx.device)
            seen = partial(augment, generator=augment_generator(tc.seed, ctx.rank, step)) if augment else None
            meter.add(train_step(G, D, state.opt_g, state.opt_d, real, z, tc, ctx, conditional=conditional,
                                 augment=seen, r1=r1_due(tc, step)))
            if state.generator_ema is not None:
                update_ema(state.generator_ema, generator, ema_decay_at(step, tc.ema_decay))
            state.step = done = step + 1
            bar.update(1)

            on_boundary = done % tc.log_every == 0
            if on_boundary or done == tc.steps:
                # A last row between two log_every steps leaves its interval open (the checkpoint carries it).
                last_metrics = meter.flush(ctx.mean, restart=on_boundary)
                if not meter.finite(last_metrics):
                    raise TrainingError(f"{run_dir}: non-finite loss at step {done}: {last_metrics}")
                with written(metrics_file, checkpoint_path):
                    logger.log(done, last_metrics)
                bar.set_postfix(d=f"{last_metrics['d_loss']:.3f}", g=f"{last_metrics['g_adv']:.3f}",
                                m=f"{last_metrics['mask_l1']:.2f}")
            grid_due = ctx.is_main and tc.sample_every and done % tc.sample_every == 0
            eval_due = bool(tc.eval_every) and done % tc.eval_every == 0  # each evaluation is checkpointed
            checkpoint_due = ((tc.checkpoint_every and done % tc.checkpoint_every == 0) or done == tc.steps
                              or eval_due)
            if ctx.is_main and state.generator_ema is not None and (grid_due or checkpoint_due):
                # once, for the grid and the checkpoint
                recalibrate_batchnorm(as_noise_generator(state.generator_ema), seed=tc.seed)
            shown = state.generator_ema if state.generator_ema is not None else generator
            if grid_due:
                prefix = run_dir / "progress" / f"step_{done:08d}"
                with written(prefix.with_suffix(".gif"), checkpoint_path):
                    samples = generate_from_noise(as_noise_generator(shown, tc.num_samples), fixed_z)
                    save_progress_grid(samples, prefix)
            scores = evaluator(shown) if eval_due and evaluator is not None else {}  # rank 0; the others wait
            if scores:
                with written(metrics_file, checkpoint_path):
                    logger.log(done, scores)
            if checkpoint_due:
                write_checkpoint(scores)
        if stopped_by is not None and checkpointed_step != state.step:
            if ctx.is_main and state.generator_ema is not None:
                recalibrate_batchnorm(as_noise_generator(state.generator_ema), seed=tc.seed)
            write_checkpoint({})
    with written(metrics_file, checkpoint_path):
        logger.close()
    ctx.close()
    return TrainResult(run_dir, state.step if stopped_by else max(state.step, tc.steps), checkpoint_path,
                       last_metrics, ctx.is_main, stopped_by_signal=stopped_by)


@contextmanager
def written(path: Path, last_checkpoint: Path | None) -> Iterator[None]:
    """A failed write inside the block (a full disk) as one TrainingError line naming what could not be
    written (`path`, or the checkpoint file) and the checkpoint to resume from."""
    try:
        yield
    except CheckpointWriteError as e:
        raise TrainingError(cannot_write(e.path, e.reason, last_checkpoint)) from None
    except (OSError, SafetensorError) as e:
        raise TrainingError(cannot_write(path, system_reason(e), last_checkpoint)) from None


def cannot_write(path: Path, reason: str, last_checkpoint: Path | None) -> str:
    if last_checkpoint is None:
        return f"cannot write {path} ({reason}); no checkpoint was written yet"
    return f"cannot write {path} ({reason}); the last good checkpoint is {last_checkpoint}"


class StopRequests:
    """SIGTERM (what timeout, Slurm and Kubernetes send before a kill) and SIGINT (Ctrl-C) while training: the
    first one lets the current step finish, then the run writes a checkpoint and returns; a second one goes to
    the handlers that were there before (Python's KeyboardInterrupt, the default exit), at once. A repeat
    within `repeat_window` seconds of the first is taken for a copy of it: torchrun forwards a terminal's
    Ctrl-C to workers that got it already, and timeout signals both the process and its process group.

    Only the main thread can take signals; signals ignored before (a background job's SIGINT) stay ignored. A
    process forked meanwhile (a data loader's worker) inherits the handler and takes signals as it would have
    without it."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    repeat_window = 1.0

    def __init__(self, announce: bool = True):
        self.announce = announce
        self.signum: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, object] = {}
        self._pid = 0

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            for signum in self.SIGNALS:
                # None: a handler set outside Python, which could not be put back
                if signal.getsignal(signum) not in (signal.SIG_IGN, None):
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() == self._pid:
            if self.signum is None:
                self.signum, self._first_at = signum, time.monotonic()
                if self.announce:
                    tqdm.write(f"videogan: {signal.Signals(signum).name} received: finishing this step and "
                               "writing a checkpoint (send it again to stop at once)", file=sys.stderr)
                return
            if time.monotonic() - self._first_at < self.repeat_window:
                return
        self._restore()
        signal.raise_signal(signum)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def next_batch(batches: Iterator[torch.Tensor], stop: StopRequests) -> torch.Tensor | None:
    """The next batch; None if it could not be drawn after a stop request (a terminal's Ctrl-C, and a Slurm or
    timeout SIGTERM, also reach the data loader's worker processes, which then end)."""
    try:
        return next(batches)
    except Exception:
        if stop.signum is None:
            raise
        return None


def agreed_signal(signum: int | None, ctx) -> int | None:
    """The stop signal every rank acts on: under torchrun the highest any rank received (one all-reduce of one
    number per step, so that all ranks stop after the same step), else this process's."""
    if not ctx.enabled:
        return signum
    flag = torch.tensor(signum or 0, device=ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item()) or None


def write_conditioning(run_dir: Path, images: torch.Tensor, num_shown: int) -> None:
    """RUN/conditioning.safetensors (uint8 [N, 3, H, W], the conditional model's fixed inputs) and, for people,
    RUN/progress/inputs.png: the grid's inputs, in the order of the progress grids' clips."""
    with atomic_path(run_dir / CONDITIONING_FILE) as tmp:
        save_file({"images": images.contiguous()}, tmp)
    write_png(run_dir / "progress" / "inputs.png", grid(images[:num_shown, :, None])[:, 0])


def read_conditioning(run_dir: Path) -> torch.Tensor | None:
    """The fixed inputs a run saved (None if it has none: they are then drawn again from the stream)."""
    path = run_dir / CONDITIONING_FILE
    if not path.is_file():
        return None
    try:
        return load_file(path)["images"]
    except (SafetensorError, OSError, KeyError) as e:
        raise TrainingError(f"{path}: unreadable ({str(e).splitlines()[0]})") from None
