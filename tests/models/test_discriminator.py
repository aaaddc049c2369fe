import torch
from torch import nn

from videogan.config import paper, tiny
from videogan.models import Discriminator


def test_paper_discriminator_matches_the_original_exactly():
    d = Discriminator(paper().model)
    assert sum(p.numel() for p in d.parameters()) == 11_057_858
    assert d(torch.randn(2, 3, 32, 64, 64)).shape == (2, 2)
    assert d.features(torch.randn(2, 3, 32, 64, 64)).shape == (2, 512, 2, 4, 4)


def test_first_layer_has_no_batchnorm_and_the_others_use_eps_1e_3():
    d = Discriminator(paper().model)
    layers = list(d.features)
    assert isinstance(layers[0], nn.Conv3d) and isinstance(layers[1], nn.LeakyReLU)
    norms = [m for m in d.modules() if isinstance(m, nn.BatchNorm3d)]
    assert [n.num_features for n in norms] == [128, 256, 512]
    assert all(n.eps == 1e-3 for n in norms)
    assert all(m.negative_slope == 0.2 for m in d.modules() if isinstance(m, nn.LeakyReLU))


def test_rejects_clips_of_the_wrong_shape():
    d = Discriminator(tiny().model)
    try:
        d(torch.randn(2, 3, 8, 32, 32))
    except AssertionError as e:
        assert "D expects" in str(e)
    else:
        raise AssertionError("wrong clip shape was accepted")
