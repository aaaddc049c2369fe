from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from videogan.config import ConfigError, override, paper, people_64, people_animate, tiny
from videogan.models import Discriminator
from videogan.models.discriminator import FrameDifferences, with_frame_differences


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


def test_frame_differences_add_each_frame_minus_the_first_as_input_channels():
    video = torch.randn(2, 3, 8, 16, 16)
    view = with_frame_differences(video)
    assert view.shape == (2, 6, 8, 16, 16)
    assert torch.equal(view[:, :3], video)
    assert torch.equal(view[:, 3:, 5], video[:, :, 5] - video[:, :, 0])
    still = video[:, :, :1].expand_as(video)
    assert not with_frame_differences(still)[:, 3:].any()  # a still clip's motion channels are all 0


def test_d_with_frame_differences_keeps_the_paper_layers_names_and_sees_motion():
    cfg = people_animate().model
    assert cfg.d_frame_differences
    d, plain = Discriminator(cfg), Discriminator(replace(cfg, d_frame_differences=False))
    names = {k for k in d.state_dict()}
    assert names == set(plain.state_dict())  # the view has no parameters; the convs keep their names
    assert isinstance(d.features[0], FrameDifferences) and d.features[1].in_channels == 6
    # a still clip with the same first frame as a moving one reaches the first conv as the same appearance
    # and all-zero motion channels
    moving = torch.rand(1, 3, cfg.frames, cfg.size, cfg.size) * 2 - 1
    still = moving[:, :, :1].expand_as(moving)
    assert torch.equal(d.features[0](still)[:, :3, 0], d.features[0](moving)[:, :3, 0])
    assert d(moving).shape == (1, 2)


def test_spectral_d_has_unit_norm_convs_no_batchnorm_and_judges_each_clip_alone():
    cfg = replace(tiny().model, d_norm="spectral")
    torch.manual_seed(0)
    d = Discriminator(cfg)
    assert not [m for m in d.modules() if isinstance(m, nn.BatchNorm3d)]
    clips = torch.rand(4, 3, cfg.frames, cfg.size, cfg.size) * 2 - 1
    with torch.no_grad():
        for _ in range(30):  # training-mode passes run the power iteration towards each weight's top vector
            d(clips)
        convs = [m for m in d.modules() if isinstance(m, nn.Conv3d)]  # the classifier among them
        assert len(convs) == 4 and all(parametrize.is_parametrized(c, "weight") for c in convs)
        for conv in convs:
            top = torch.linalg.matrix_norm(conv.weight.reshape(conv.out_channels, -1), ord=2)
            assert top == pytest.approx(1.0, abs=0.02)
        # without BatchNorm a clip's logits in training do not depend on the clips beside it in the batch (up
        # to the power iteration's step between the two passes); the paper's D's do
        others = torch.cat([clips[:1], -clips[1:]])
        assert torch.allclose(d(clips[:1]), d(others)[:1], atol=1e-3)
        batch_norm = Discriminator(tiny().model)
        assert not torch.allclose(batch_norm(clips[:2])[:1], batch_norm(others[:2])[:1], atol=1e-2)
    same = Discriminator(cfg)  # a checkpoint's state, power-iteration vectors included, restores it exactly
    same.load_state_dict(d.state_dict())
    d.eval(), same.eval()
    assert torch.equal(d(clips), same(clips))


def test_d_norm_is_checked_where_the_config_is_built():
    cfg = people_64()
    override(cfg, "model.d_norm", "spectral")
    assert cfg.model.d_norm == "spectral"
    with pytest.raises(ConfigError, match="model.d_norm"):
        override(cfg, "model.d_norm", "layer")
