"""How the networks run, apart from what they compute: precision, memory layout, compilation, BatchNorm sync.

`prepare_networks` applies the train config's speed options to the raw modules and returns what the loop
calls; checkpoints always save the raw modules (plain parameter names, contiguous tensors), so a run can
switch options when it resumes. Order matters and follows PyTorch's guidance: SyncBatchNorm conversion
before DistributedDataParallel wraps the module, torch.compile on the wrapped module (so DDP's hooks see
compiled buckets). channels_last relays the raw module's parameters in place.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

from ..config import ConfigError, TrainConfig
from .distributed import DistributedContext


def check_options(tc: TrainConfig, ctx: DistributedContext) -> None:
    """Options that cannot work on this device or world size: one line for the user, before anything runs.
    What holds on any run (ranges, rules between fields) is config.validate's, which `tc` has passed."""
    local = tc.batch_size // max(ctx.world_size, 1)
    if local % tc.grad_accumulation:
        raise ConfigError(f"train.batch_size {tc.batch_size} over {ctx.world_size} process(es) gives {local} "
                          "clips per rank, not divisible into train.grad_accumulation "
                          f"{tc.grad_accumulation} micro-batches")
    if tc.sync_batchnorm and ctx.enabled and ctx.device.type != "cuda":
        # torch.nn.SyncBatchNorm only synchronises GPU tensors (it raises on CPU inputs).
        raise ConfigError("train.sync_batchnorm needs CUDA devices "
                          "(PyTorch's SyncBatchNorm does not run on CPU)")


def configure_backends(tc: TrainConfig, device: torch.device) -> None:
    """TF32 for fp32 matmuls and cuDNN convolutions on Ampere+ GPUs (~10 mantissa bits, as in most GAN
    codebases)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tc.tf32
        torch.backends.cudnn.allow_tf32 = tc.tf32
        torch.backends.cudnn.benchmark = True  # fixed shapes every step: let cuDNN pick its fastest kernels


def adam(params, lr: float, tc: TrainConfig) -> torch.optim.Adam:
    """The paper's optimiser (Adam, beta1 0.5) with PyTorch's fused kernel: one pass over each parameter's
    tensors instead of a dozen elementwise ops (benchmarks/RESULTS.md, "the fused Adam kernel").
    Same maths; the values agree with the per-op version to float rounding (tests/test_runtime.py)."""
    return torch.optim.Adam(params, lr=lr, betas=(tc.beta1, tc.beta2), fused=True)


def decayed_learning_rate(base: float, step: int, start: int, end: int) -> float:
    """The learning rate of 0-based step `step`: `base` up to `start`, then falling linearly to 0 at `end`,
    and 0 after it (end 0: `base` throughout; train.lr_decay_start / lr_decay_end)."""
    if not end or step <= start:
        return base
    return base * max(0.0, (end - step) / (end - start))


def set_learning_rates(opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, step: int,
                       tc: TrainConfig) -> None:
    """Both optimisers' rates for step `step` of the schedule: a pure function of the step, so a resumed run
    takes the same rates as an uninterrupted one."""
    for opt, base in ((opt_g, tc.lr_g), (opt_d, tc.lr_d)):
        for group in opt.param_groups:
            group["lr"] = decayed_learning_rate(base, step, tc.lr_decay_start, tc.lr_decay_end)


def autocast(tc: TrainConfig, device: torch.device):
    """The forward passes' precision: bf16 autocast (weights, gradients and optimiser stay fp32) or plain
    fp32."""
    if tc.precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def to_channels_last(module: nn.Module) -> nn.Module:
    """5-D weights to channels_last_3d, 4-D ones to channels_last, in place. Convolutions then produce
    activations in the same layout, which lets oneDNN / cuDNN skip layout conversions between layers."""
    for p in module.parameters():
        if p.dim() == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
        elif p.dim() == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)
    return module


def clip_layout(tc: TrainConfig) -> torch.memory_format:
    """The memory layout the networks expect their clips [B, C, T, H, W] in."""
    return torch.channels_last_3d if tc.channels_last else torch.contiguous_format


def prepare_networks(generator: nn.Module, discriminator: nn.Module, tc: TrainConfig,
                     ctx: DistributedContext) -> tuple[nn.Module, nn.Module]:
    """(G, D) as the training step calls them. May be called after the optimisers are built and a checkpoint
    is restored: channels_last replaces the parameters' storage, but the nn.Parameter objects (the optimisers'
    references) stay the same, and SyncBatchNorm takes over the BatchNorm layers' own parameters and
    buffers."""
    nets = []
    for module in (generator, discriminator):
        if tc.channels_last:
            to_channels_last(module)
        if tc.sync_batchnorm and ctx.enabled:
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        module = ctx.wrap(module)
        if tc.compile:
            module = torch.compile(module)
        nets.append(module)
    return nets[0], nets[1]
