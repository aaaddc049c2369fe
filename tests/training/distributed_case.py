"""The fixed training case that tests/test_distributed.py runs in one process and under torchrun."""
from dataclasses import dataclass

import torch

from videogan.config import ModelConfig, TrainConfig
from videogan.models import Discriminator, build_generator

GLOBAL_BATCH = 4


@dataclass
class Case:
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    real: torch.Tensor  # [GLOBAL_BATCH, 3, T, H, W] in [-1, 1]
    z: torch.Tensor  # [GLOBAL_BATCH, Z]
    train: TrainConfig

    def weights(self) -> dict[str, torch.Tensor]:
        return {**{f"G.{k}": v.detach().clone() for k, v in self.generator.named_parameters()},
                **{f"D.{k}": v.detach().clone() for k, v in self.discriminator.named_parameters()}}


def build_case(grad_accumulation: int = 1, r1_weight: float = 0.0) -> Case:
    model = ModelConfig(frames=4, size=8, g_width=8, d_width=4, z_dim=8)
    torch.manual_seed(0)
    generator, discriminator = build_generator(model), Discriminator(model)
    # SGD, not the paper's Adam, for the comparison: Adam's first update is ~lr * g / |g|, which turns
    # rounding differences in near-zero gradients into full-size weight differences; SGD's update is the
    # gradient itself.
    opt_g = torch.optim.SGD(generator.parameters(), lr=0.1)
    opt_d = torch.optim.SGD(discriminator.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(GLOBAL_BATCH, 3, 4, 8, 8, generator=gen) * 2 - 1
    z = torch.randn(GLOBAL_BATCH, model.z_dim, generator=gen)
    tc = TrainConfig(batch_size=GLOBAL_BATCH, grad_accumulation=grad_accumulation, r1_weight=r1_weight,
                     device="cpu")
    return Case(generator, discriminator, opt_g, opt_d, real, z, tc)
