"""One training step (training/step.py) on tiny networks; the same step under torchrun is in
test_distributed.py, under torch.compile in test_runtime.py."""
import pytest
import torch

from videogan.config import TrainConfig
from videogan.models import Discriminator, build_generator
from videogan.training.distributed import DistributedContext
from videogan.training.step import (
    StepSetup,
    d_probabilities,
    frozen,
    generator_penalties,
    r1_due,
    train_step,
)


def _setup(small_config, **train) -> StepSetup:
    torch.manual_seed(0)
    g, d = build_generator(small_config.model), Discriminator(small_config.model)
    single = DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    opt_g, opt_d = torch.optim.SGD(g.parameters(), lr=0.1), torch.optim.SGD(d.parameters(), lr=0.1)
    return StepSetup(g, d, opt_g, opt_d, TrainConfig(batch_size=4, **train), single)


def _batch(small_config):
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(4, *small_config.clip_shape, generator=gen) * 2 - 1
    return real, torch.randn(4, small_config.model.z_dim, generator=gen)


def test_a_step_updates_both_networks_and_returns_its_mean_losses(small_config):
    setup = _setup(small_config)
    before = {name: p.detach().clone() for name, p in setup.generator.named_parameters()}
    d_before = {name: p.detach().clone() for name, p in setup.discriminator.named_parameters()}
    losses = train_step(setup, *_batch(small_config))
    assert set(losses) == {"d_loss", "d_real", "d_fake", "g_loss", "g_adv", "mask_l1"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert losses["g_loss"].item() == pytest.approx(
        losses["g_adv"].item() + setup.train.mask_l1_weight * losses["mask_l1"].item(), rel=1e-5)
    assert any(not torch.equal(before[n], p) for n, p in setup.generator.named_parameters())
    assert any(not torch.equal(d_before[n], p) for n, p in setup.discriminator.named_parameters())
    assert all(p.requires_grad for p in setup.discriminator.parameters())  # frozen only during G's step


def test_r1_steps_add_the_penalty_to_what_is_logged(small_config):
    setup = _setup(small_config, r1_weight=1.0, r1_every=4)
    assert [r1_due(setup.train, step) for step in range(5)] == [True, False, False, False, True]
    assert not r1_due(TrainConfig(), 0)  # r1_weight 0: never
    assert "r1" in train_step(setup, *_batch(small_config), r1=True)


def test_penalties_by_model_and_settings(small_config):
    real, _ = _batch(small_config)
    small_config.model.kind = "one-stream"
    out = build_generator(small_config.model)(torch.randn(4, small_config.model.z_dim))
    tc = TrainConfig()
    penalties = generator_penalties(out, real, tc, conditional=False)
    assert list(penalties) == ["mask_l1"] and penalties["mask_l1"][1].item() == 0  # no mask: logged as 0
    penalties = generator_penalties(out, real, tc, conditional=True)
    assert penalties["first_frame_l1"][0] == tc.first_frame_l1_weight
    expected = (out.video[:, :, 0] - real[:, :, 0]).abs().mean()
    assert torch.allclose(penalties["first_frame_l1"][1], expected)


def test_frozen_keeps_gradients_from_the_weights_but_not_from_the_input():
    net = torch.nn.Linear(3, 1)
    x = torch.randn(2, 3, requires_grad=True)
    with frozen(net):
        net(x).sum().backward()
    assert net.weight.grad is None and x.grad is not None
    assert all(p.requires_grad for p in net.parameters())


def test_with_a_frame_head_each_head_is_trained_and_logged(small_config):
    small_config.model.d_frame_width, small_config.model.d_frame_samples = 8, 2
    setup = _setup(small_config)
    head = [p.detach().clone() for p in setup.discriminator.frame_head.parameters()]
    out = train_step(setup, *_batch(small_config), r1=True)
    assert {"d_real", "d_fake", "d_real_frames", "d_fake_frames", "r1"} <= set(out)
    after = list(setup.discriminator.frame_head.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(head, after, strict=True))  # D's step reaches the head
    # head 0 is the clip head: d_real and d_fake are its probabilities, as without a frame head
    real = torch.tensor([[[0.0, 2.0], [1.0, 0.0]]])  # [B=1, 2 heads, 2]
    probs = d_probabilities(real, real.flip(-1))
    assert probs["d_real"].item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert probs["d_real_frames"].item() == pytest.approx(torch.sigmoid(torch.tensor(-1.0)).item())
    assert probs["d_fake_frames"].item() == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item())
    assert set(d_probabilities(real[:, 0], real[:, 0])) == {"d_real", "d_fake"}
