"""The training loop (paper Sec. 3 / the original main.lua), one code path for one process and torchrun.

Per iteration: draw this rank's real clips and noise, take one training step (step.py: D, then G), update the
EMA generator, and on their schedules log, save a progress grid, measure FVD and write a checkpoint. A first
SIGTERM or SIGINT ends the run after the current step, checkpointed; a failed write (a full disk) ends it with
one line naming what could not be written and the checkpoint to resume from.
"""
from __future__ import annotations

import copy
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ..config import Config, validate
from ..data import make_source
from ..errors import VideoGANError
from ..generation.noise import generate_from_noise, noise
from ..media import atomic_path, grid, to_model_range, to_uint8, write_gif, write_json, write_png
from ..metrics.during_training import TrainingEvaluator
from ..models import Discriminator, GeneratorOutput, OnFixedImages, build_generator
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
from .diffaugment import ClipAugment, augment_generator
from .ema import ema_decay_at, recalibrate_batchnorm, update_ema
from .logger import IntervalMeter, RunLogger
from .runtime import (
    adam,
    check_options,
    clip_layout,
    configure_backends,
    prepare_networks,
    set_learning_rates,
)
from .step import StepSetup, r1_due, train_step


class TrainingError(VideoGANError, RuntimeError):
    """A run that cannot start or resume; one line for the user."""


# The conditional model's fixed inputs: the first frames of the run's first clips
# (RUN/conditioning.safetensors, kept so that a resumed run uses the same ones). The first num_samples are
# animated in the progress grids; all of them re-estimate the EMA generator's BatchNorm statistics, which,
# unlike the noise-only generators', depend on data.
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


def train(cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train `cfg` into `run_dir` up to train.steps: a new run, or with `resume` the continuation of the run's
    last checkpoint. Every torchrun rank calls it; rank 0 alone writes."""
    validate(cfg)  # the same one-line refusals as the CLI's, before anything is written
    run_dir, tc = Path(run_dir), cfg.train
    ctx = distributed.setup(tc.device)
    if tc.num_threads > 0:
        torch.set_num_threads(tc.num_threads)
    if tc.batch_size % ctx.world_size:
        raise TrainingError(f"train.batch_size {tc.batch_size} must be divisible by the {ctx.world_size} "
                            "processes")
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
    # the last good checkpoint, named when a write fails
    checkpoint_path = restore_or_refuse(run_dir, cfg, state, resume)

    # The first batch is drawn before anything is written: unusable data fails without leaving a run behind.
    stream = make_source(cfg).batches(state.step, local_batch, ctx.rank, ctx.world_size, ctx.device)
    drawn = [next(stream)]
    if conditional and ctx.is_main:
        fixed_images = conditioning_images(run_dir, resume, stream, drawn, tc.num_samples)
    batches = itertools.chain(drawn, stream)  # the batches drawn for the fixed images are still trained on
    if ctx.is_main:
        with written(run_dir / "config.json", checkpoint_path):
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "config.json", cfg.to_dict(), sort_keys=True)
        sweep_leftovers(run_dir)  # what an interrupted checkpoint write or rotation left behind
    fixed_inputs = None  # [N, 3, H, W] in [-1, 1], the conditional model's, on rank 0 (which alone uses them)
    if conditional and ctx.is_main:
        with written(run_dir / CONDITIONING_FILE, checkpoint_path):
            write_conditioning(run_dir, fixed_images, tc.num_samples)
        fixed_inputs = to_model_range(fixed_images[:, :, None], ctx.device)[:, :, 0]

    G, D = prepare_networks(generator, discriminator, tc, ctx)  # DDP, layout, compilation: see runtime.py
    setup = StepSetup(G, D, state.opt_g, state.opt_d, tc, ctx, conditional)
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
    best = BestCheckpoint(run_dir, evaluator.metric if evaluator is not None else None, resume)
    last_metrics, checkpointed_step, stopped_by = {}, state.step, None
    bar = tqdm(total=tc.steps, initial=state.step, disable=not (progress and ctx.is_main), unit="step",
               dynamic_ncols=True)

    def write_checkpoint(scores: dict) -> None:
        """Checkpoint state.step (every rank calls this: the open logging interval is averaged over ranks)."""
        nonlocal checkpoint_path, checkpointed_step
        state.elapsed_seconds = meter.elapsed
        interval = meter.state(ctx.mean)
        state.log_interval = interval if interval["steps"] else None
        if ctx.is_main:
            with written(metrics_file, checkpoint_path):
                logger.sync()
            improved = best.improved_by(scores)
            with written(run_dir / "checkpoints", checkpoint_path):
                checkpoint_path = save_training_state(run_dir, cfg, state, keep=tc.keep_checkpoints,
                                                      keep_also=best.kept_through_rotation(improved))
            if improved:
                with written(run_dir / BEST_FILE, checkpoint_path):
                    best.update(state.step, scores, checkpoint_path)
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
            set_learning_rates(state.opt_g, state.opt_d, step, tc)
            meter.add(train_step(setup, real, z, augment=seen, r1=r1_due(tc, step)))
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
                recalibrate_batchnorm(as_noise_generator(state.generator_ema, fixed_inputs), seed=tc.seed)
            shown = state.generator_ema if state.generator_ema is not None else generator
            if grid_due:
                prefix = run_dir / "progress" / f"step_{done:08d}"
                with written(prefix.with_suffix(".gif"), checkpoint_path):
                    grid_generator = as_noise_generator(shown, fixed_inputs, tc.num_samples)
                    save_progress_grid(generate_from_noise(grid_generator, fixed_z), prefix)
            scores = evaluator(shown) if eval_due and evaluator is not None else {}  # rank 0; the others wait
            if scores:
                with written(metrics_file, checkpoint_path):
                    logger.log(done, scores)
            if checkpoint_due:
                write_checkpoint(scores)
        if stopped_by is not None and checkpointed_step != state.step:
            if ctx.is_main and state.generator_ema is not None:
                recalibrate_batchnorm(as_noise_generator(state.generator_ema, fixed_inputs), seed=tc.seed)
            write_checkpoint({})
    with written(metrics_file, checkpoint_path):
        logger.close()
    ctx.close()
    return TrainResult(run_dir, state.step if stopped_by else max(state.step, tc.steps), checkpoint_path,
                       last_metrics, ctx.is_main, stopped_by_signal=stopped_by)


def restore_or_refuse(run_dir: Path, cfg: Config, state: TrainingState, resume: bool) -> Path | None:
    """Resuming: restore `state` from the run's last checkpoint (refusing a run that has none). Starting:
    refuse a folder that already holds checkpoints. Returns the last checkpoint there is, or None."""
    existing = list_checkpoints(run_dir)
    if resume:
        if not existing:
            raise TrainingError(f"{run_dir}: nothing to resume (no checkpoint under checkpoints/)")
        restore_training_state(run_dir, cfg, state)
    elif existing:
        raise TrainingError(f"{run_dir}: already holds checkpoints; pass --resume to continue it or choose "
                            "another --out")
    return existing[-1] if existing else None


def training_noise(seed: int, rank: int, step: int, batch_size: int, z_dim: int) -> torch.Tensor:
    """z for one rank's batch at one step, a pure function of (seed, rank, step): resuming (also under
    torchrun, with any number of ranks) needs no RNG state, and ranks never share noise."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + rank * 7_919 + step * 104_729 + 1) % (2**63))
    return torch.randn(batch_size, z_dim, generator=gen)


def conditioning_images(run_dir: Path, resume: bool, stream: Iterator[torch.Tensor],
                        drawn: list[torch.Tensor], num_samples: int) -> torch.Tensor:
    """The conditional model's fixed inputs, uint8 [N, 3, H, W]: those a resumed run saved, else the first
    frames of the first clips, max(num_samples, CALIBRATION_IMAGES) of them. The batches drawn from `stream`
    for them are appended to `drawn` (which holds the first batch), to be trained on."""
    images = read_conditioning(run_dir) if resume else None
    if images is not None:
        return images
    count = max(num_samples, CALIBRATION_IMAGES)
    while sum(len(b) for b in drawn) < count:
        drawn.append(next(stream))
    return torch.cat([b[:, :, 0].cpu() for b in drawn])[:count]


def as_noise_generator(g: torch.nn.Module, fixed_inputs: torch.Tensor | None,
                       count: int | None = None) -> torch.nn.Module:
    """What the noise-driven tools (progress grids, BatchNorm re-estimation) call: G itself, or the
    conditional G on the first `count` of its fixed inputs (all of them by default)."""
    return OnFixedImages(g, fixed_inputs[:count]) if fixed_inputs is not None else g


class BestCheckpoint:
    """RUN/best.json: the checkpoint with the lowest in-training FVD (`metric`) so far, which checkpoint
    rotation keeps. A resumed run goes on from its record; a new run starts with none."""

    def __init__(self, run_dir: Path, metric: str | None, resume: bool):
        self.run_dir, self.metric = run_dir, metric
        self.record = read_best(run_dir) if resume else {}

    def improved_by(self, scores: dict) -> bool:
        """Whether this evaluation's scores (none: no evaluation at this step) beat the record."""
        return bool(scores) and (not self.record or scores[self.metric] < self.record["value"])

    def kept_through_rotation(self, improved: bool) -> Path | None:
        """What rotation must keep besides the newest checkpoints: the record's, unless it is replaced."""
        return None if improved or not self.record else Path(self.record["checkpoint"])

    def update(self, step: int, scores: dict, checkpoint: Path) -> None:
        self.record = {"step": step, "metric": self.metric, "value": scores[self.metric], **scores,
                       "checkpoint": str(checkpoint)}
        write_best(self.run_dir, self.record)


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
    """RUN/conditioning.safetensors (uint8 [N, 3, H, W], the conditional model's fixed inputs) and, for
    people, RUN/progress/inputs.png: the grid's inputs, in the order of the progress grids' clips."""
    with atomic_path(run_dir / CONDITIONING_FILE) as tmp:
        save_file({"images": images.contiguous()}, tmp)
    write_png(run_dir / "progress" / "inputs.png", grid(images[:num_shown, :, None])[:, 0])


def save_progress_grid(out: GeneratorOutput, prefix: Path, fps: int = 8) -> None:
    """Training-time snapshot: PREFIX.gif (composite grid) and, for two-stream, PREFIX_mask.gif."""
    write_gif(prefix.with_suffix(".gif"), grid(to_uint8(out.video)), fps)
    if out.mask is not None:
        write_gif(prefix.parent / f"{prefix.name}_mask.gif", grid(to_uint8(out.mask, 0.0, 1.0)), fps)


def read_conditioning(run_dir: Path) -> torch.Tensor | None:
    """The fixed inputs a run saved (None if it has none: they are then drawn again from the stream)."""
    path = run_dir / CONDITIONING_FILE
    if not path.is_file():
        return None
    try:
        return load_file(path)["images"]
    except (SafetensorError, OSError, KeyError) as e:
        raise TrainingError(f"{path}: unreadable ({str(e).splitlines()[0]})") from None
