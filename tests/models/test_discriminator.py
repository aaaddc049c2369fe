from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from videogan.config import ConfigError, override, paper, people_64, people_animate, tiny, validate
from videogan.models import Discriminator
from videogan.models.discriminator import FrameDifferences, sample_frames, with_frame_differences


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


def test_sample_frames_draws_distinct_frames_of_each_clip_and_fresh_ones_each_call():
    T = 8
    video = torch.arange(T, dtype=torch.float32).reshape(1, 1, T, 1, 1).expand(3, 2, T, 4, 4).clone()
    video[1] += 100  # clip 1's frames are told apart from clip 0's
    torch.manual_seed(0)
    frames = sample_frames(video, 5)
    assert frames.shape == (3, 5, 2, 4, 4)
    picked = frames[:, :, 0, 0, 0]  # [B, k]: each frame is constant, its value its index (+100 for clip 1)
    assert (picked[1] >= 100).all() and (picked[[0, 2]] < 100).all()  # every frame from its own clip
    for row in (picked % 100).long():
        assert len(set(row.tolist())) == 5  # distinct
    assert torch.equal(frames[0, 0], video[0, :, int(picked[0, 0].item())])  # the whole frame it names
    again = torch.stack([sample_frames(video, 5)[:, :, 0, 0, 0] for _ in range(4)])
    assert not all(torch.equal(a, picked) for a in again)  # fresh draws each call
    assert sorted((sample_frames(video, T)[0, :, 0, 0, 0]).tolist()) == list(range(T))  # k = T: all of them


def test_frame_head_adds_a_second_pair_of_logits_that_judges_single_frames():
    cfg = replace(people_64().model, d_frame_width=32, d_frame_samples=4)
    torch.manual_seed(0)
    d, plain = Discriminator(cfg), Discriminator(replace(cfg, d_frame_width=0))
    # the clip head keeps the paper's names, so D's representation and old checkpoints are unchanged
    assert set(plain.state_dict()) < set(d.state_dict())
    assert all(k.startswith("frame_head.") for k in set(d.state_dict()) - set(plain.state_dict()))
    convs = [m for m in d.frame_head.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 2]  # widths double as D's; 64 -> 4x4 -> 1
    assert [n.num_features for n in d.frame_head.modules() if isinstance(n, nn.BatchNorm2d)] == [64, 128, 256]
    clips = torch.rand(3, 3, cfg.frames, cfg.size, cfg.size) * 2 - 1
    d.eval()
    logits = d(clips)
    assert logits.shape == (3, 2, 2)
    assert torch.equal(logits[:, 0], d.classifier(d.features(clips)).flatten(1))  # head 0: the clip head
    # the frame head judges frames, not their order: a clip reversed in time or held on one frame per draw
    # scores as the frames it draws
    torch.manual_seed(1)
    a = d.frame_head(clips)
    torch.manual_seed(1)
    b = d.frame_head(clips.flip(2))
    assert not torch.allclose(a, b)  # other frames drawn at the same positions
    one = clips[:, :, 5:6].expand_as(clips)
    frame = d.frame_head.net(clips[:, :, 5]).flatten(1)  # [B, 2]: that one frame's logits
    assert torch.allclose(d.frame_head(one), frame, atol=1e-5)


def test_frame_head_takes_spectral_normalisation_and_is_checked_where_the_config_is_built():
    d = Discriminator(replace(tiny().model, d_frame_width=8, d_frame_samples=2, d_norm="spectral"))
    convs = [m for m in d.frame_head.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(parametrize.is_parametrized(c, "weight") for c in convs)
    assert not [m for m in d.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d))]
    cfg = people_64()
    override(cfg, "model.d_frame_width", "32")
    assert validate(cfg).model.d_frame_width == 32
    override(cfg, "model.d_frame_samples", "64")
    with pytest.raises(ConfigError, match="model.d_frame_samples=64 .*model.frames=32"):
        validate(cfg)
    cfg.model.d_frame_samples, cfg.model.d_frame_width = 8, -1
    with pytest.raises(ConfigError, match="model.d_frame_width"):
        validate(cfg)
