import math

import pytest
import torch

from videogan.losses import discriminator_loss, generator_adversarial_loss, mask_l1_penalty, real_probability


def test_discriminator_loss_is_binary_cross_entropy_on_two_logits():
    real = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    fake = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    p_real = torch.sigmoid(real[:, 1] - real[:, 0])  # softmax over two logits
    p_fake = torch.sigmoid(fake[:, 1] - fake[:, 0])
    expected = -torch.log(p_real).mean() - torch.log(1 - p_fake).mean()
    assert discriminator_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)


def test_generator_loss_is_non_saturating():
    fake = torch.tensor([[0.0, 0.0], [2.0, -1.0]])
    p = torch.sigmoid(fake[:, 1] - fake[:, 0])
    assert generator_adversarial_loss(fake).item() == pytest.approx(-torch.log(p).mean().item(), rel=1e-6)
    # At D(G(z)) = 1/2 both losses are log 2 per term.
    even = torch.zeros(5, 2)
    assert generator_adversarial_loss(even).item() == pytest.approx(math.log(2))
    assert discriminator_loss(even, even).item() == pytest.approx(2 * math.log(2))


def test_a_confident_correct_discriminator_has_near_zero_loss():
    real = torch.tensor([[-20.0, 20.0]])
    fake = torch.tensor([[20.0, -20.0]])
    assert discriminator_loss(real, fake).item() < 1e-6
    assert generator_adversarial_loss(fake).item() > 30


def test_mask_penalty_is_the_mean_absolute_value_over_the_batch():
    m = torch.tensor([0.0, 0.5, 1.0, 0.5]).reshape(1, 1, 1, 2, 2).repeat(3, 1, 2, 1, 1)
    assert mask_l1_penalty(m).item() == pytest.approx(0.5)
    assert mask_l1_penalty(torch.zeros(2, 1, 4, 8, 8)).item() == 0


def test_real_probability():
    assert real_probability(torch.tensor([[0.0, 0.0]])).item() == pytest.approx(0.5)
