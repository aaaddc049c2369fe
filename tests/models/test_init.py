import copy

import pytest
import torch
from torch import nn

from videogan.config import paper
from videogan.models import Discriminator, TwoStreamGenerator, build_generator, fold_conv_bias_into_batchnorm


def _stats(modules, attr):
    values = torch.cat([getattr(m, attr).detach().flatten() for m in modules])
    return values.mean().item(), values.std().item()


def test_weights_follow_the_original_initialisation():
    torch.manual_seed(0)
    for net in (TwoStreamGenerator(paper().model), Discriminator(paper().model)):
        convs = [m for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d,
                                                            nn.ConvTranspose2d))]
        norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d))]
        mean, std = _stats(convs, "weight")
        assert abs(mean) < 1e-3 and abs(std - 0.01) < 5e-4
        mean, std = _stats(norms, "weight")
        assert abs(mean - 1) < 5e-3 and abs(std - 0.02) < 3e-3  # not PyTorch's default weight = 1
        assert all(torch.all(m.bias == 0) for m in convs + norms)


def _randomised(net: nn.Module, seed: int) -> nn.Module:
    """Non-zero conv biases and BatchNorm running statistics, so that folding has something to move."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if (isinstance(m, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d))
                and m.bias is not None):
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net


@pytest.mark.parametrize("kind", ["two-stream", "conditional"])
def test_folding_conv_bias_into_batchnorm_keeps_outputs_and_running_statistics(small_config, kind):
    small_config.model.kind = kind
    if kind == "conditional":
        small_config.model.warp_foreground, small_config.model.motion_layers = True, 2
    torch.manual_seed(0)
    net = _randomised(build_generator(small_config.model), seed=1)
    folded = copy.deepcopy(net)
    pairs = fold_conv_bias_into_batchnorm(folded)
    norms = [m for m in net.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d))]
    assert pairs == len(norms) > 0  # every BatchNorm here follows a conv
    convs = [m for m in folded.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d,
                                                           nn.ConvTranspose3d))]
    # only the heads keep a bias
    assert sum(bool(m.bias.abs().sum() > 0) for m in convs) == len(convs) - pairs

    size = small_config.model.size
    inputs = ((torch.rand(3, 3, size, size) * 2 - 1,) if kind == "conditional"
              else (torch.randn(3, small_config.model.z_dim),))
    for mode in ("eval", "train"):  # train: batch statistics, and one running-statistics update
        getattr(net, mode)(), getattr(folded, mode)()
        with torch.no_grad():
            a, b = net(*inputs), folded(*inputs)
        torch.testing.assert_close(b.video, a.video, atol=1e-5, rtol=0)
        torch.testing.assert_close(b.mask, a.mask, atol=1e-5, rtol=0)
    # after the training-mode update both still agree in evaluation: the folded mean moved with the batch mean
    net.eval(), folded.eval()
    with torch.no_grad():
        torch.testing.assert_close(folded(*inputs).video, net(*inputs).video, atol=1e-5, rtol=0)


def test_folding_leaves_a_conv_without_batchnorm_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3),
                        nn.BatchNorm2d(4, track_running_stats=False))
    nn.init.constant_(net[0].bias, 0.5), nn.init.constant_(net[2].bias, 0.5)
    assert fold_conv_bias_into_batchnorm(net) == 0  # no running mean to absorb the second bias
    assert torch.all(net[0].bias == 0.5) and torch.all(net[2].bias == 0.5)
