import math

import pytest
import torch

from videogan.training.losses import (
    discriminator_loss,
    first_frame_l1,
    flow_total_variation,
    generator_adversarial_loss,
    mask_l1_penalty,
    ownership_entropy,
    r1_penalty,
    real_log_odds,
    real_probability,
)


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


def test_with_two_heads_each_heads_loss_is_added_and_each_gets_its_probability():
    clip = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    frame = torch.tensor([[0.5, -1.0], [0.0, 3.0]])
    both = torch.stack([clip, frame], dim=1)  # [B, 2 heads, 2]
    each = discriminator_loss(clip, clip.flip(-1)) + discriminator_loss(frame, frame.flip(-1))
    assert discriminator_loss(both, both.flip(-1)).item() == pytest.approx(each.item(), rel=1e-6)
    assert generator_adversarial_loss(both).item() == pytest.approx(
        (generator_adversarial_loss(clip) + generator_adversarial_loss(frame)).item(), rel=1e-6)
    assert torch.equal(real_probability(both),
                       torch.stack([real_probability(clip), real_probability(frame)], dim=1))
    assert torch.equal(real_log_odds(both)[:, 1], real_log_odds(frame))


def test_real_log_odds_is_what_the_softmax_turns_into_the_probability():
    logits = torch.tensor([[0.3, 1.5], [2.0, -1.0]])
    assert torch.allclose(torch.sigmoid(real_log_odds(logits)), real_probability(logits))


def test_r1_of_a_linear_discriminator_is_its_squared_weight_difference():
    """D(x) = [x . w_fake, x . w_real]: the log-odds' gradient is w_real - w_fake for every clip, so R1 =
    |w_real - w_fake|^2 whatever the clips; and it stays differentiable with respect to the weights."""
    weight = torch.randn(2, 12, requires_grad=True)
    clips = torch.randn(5, 3, 2, 2, 1, requires_grad=True)
    logits = clips.flatten(1) @ weight.t()
    penalty = r1_penalty(clips, logits)
    expected = (weight[1] - weight[0]).square().sum()
    assert torch.allclose(penalty, expected)
    (grad,) = torch.autograd.grad(penalty, weight)
    difference = 2 * (weight[1] - weight[0]).detach()
    assert torch.allclose(grad, torch.stack([-difference, difference]))


def test_r1_is_zero_where_d_is_flat_and_grows_with_its_slope():
    clips = torch.randn(4, 3, 2, 2, 2, requires_grad=True)
    flat = torch.zeros(4, 2) + 0 * clips.flatten(1)[:, :2]  # depends on the clips, with zero slope
    assert r1_penalty(clips, flat).item() == 0
    steep = torch.stack([torch.zeros(4), 3 * clips.flatten(1).sum(1)], dim=1)
    assert torch.allclose(r1_penalty(clips, steep), torch.tensor(9.0 * 24))


def test_flow_total_variation_is_zero_for_rigid_translation_and_counts_each_edge():
    flow = torch.zeros(1, 2, 3, 8, 8)
    flow[:, 0] = 0.25  # the whole frame moves: constant flow
    assert flow_total_variation(flow).item() == 0
    flow[:, 0, :, :, 4:] = 0.75  # a vertical edge: a jump of 0.5 in x-flow between columns 3 and 4
    # horizontal differences: one of 7 per row is 0.5, on 1 of the 2 components; vertical ones all 0
    assert flow_total_variation(flow).item() == pytest.approx(0.5 / 7 / 2)
    flow[:, 1, :, 4:, :] = 1.0  # and a horizontal edge of 1.0 in y-flow
    assert flow_total_variation(flow).item() == pytest.approx(0.5 / 7 / 2 + 1.0 / 7 / 2)


def test_ownership_entropy_is_zero_for_one_layer_per_pixel_and_log_k_for_equal_shares():
    ownership = torch.zeros(1, 3, 2, 4, 4)
    ownership[:, 0, :, :2] = 1  # rows 0-1: the still layer
    ownership[:, 1, :, 2:, :2] = 1
    ownership[:, 2, :, 2:, 2:] = 1
    assert ownership_entropy(ownership).item() == 0  # one layer per pixel
    shared = torch.full((1, 3, 2, 4, 4), 1 / 3)  # every layer a third of every pixel
    assert ownership_entropy(shared).item() == pytest.approx(math.log(3))
    half = torch.zeros(1, 3, 1, 1, 2)
    half[:, :2, :, :, 0] = 0.5  # one pixel split between two layers, one owned outright: mean log(2) / 2
    half[:, 2, :, :, 1] = 1
    assert ownership_entropy(half).item() == pytest.approx(math.log(2) / 2)


def test_first_frame_l1_is_the_mean_distance_of_the_first_frame_from_the_image():
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    frozen = image[:, :, None].expand(-1, -1, 4, -1, -1)  # the input repeated: [2, 3, 4, 8, 8]
    assert first_frame_l1(frozen, image).item() == 0
    assert first_frame_l1(frozen + 0.25, image).item() == pytest.approx(0.25)
