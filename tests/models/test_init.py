import torch
from torch import nn

from videogan.config import paper
from videogan.models import Discriminator, TwoStreamGenerator


def _stats(modules, attr):
    values = torch.cat([getattr(m, attr).detach().flatten() for m in modules])
    return values.mean().item(), values.std().item()


def test_weights_follow_the_original_initialisation():
    torch.manual_seed(0)
    for net in (TwoStreamGenerator(paper().model), Discriminator(paper().model)):
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d, nn.ConvTranspose2d))]
        norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d))]
        mean, std = _stats(convs, "weight")
        assert abs(mean) < 1e-3 and abs(std - 0.01) < 5e-4
        mean, std = _stats(norms, "weight")
        assert abs(mean - 1) < 5e-3 and abs(std - 0.02) < 3e-3  # not PyTorch's default weight = 1
        assert all(torch.all(m.bias == 0) for m in convs + norms)
