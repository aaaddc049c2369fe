"""Speed options change how the networks run, never what they compute (precision aside)."""
import pytest
import torch

from videogan.config import ConfigError, TrainConfig
from videogan.models import Discriminator, build_generator
from videogan.training.distributed import DistributedContext
from videogan.training.runtime import (
    adam,
    autocast,
    check_options,
    decayed_learning_rate,
    set_learning_rates,
    to_channels_last,
)

CPU = torch.device("cpu")


def _single():
    return DistributedContext(rank=0, world_size=1, local_rank=0, device=CPU)


def test_channels_last_gives_the_same_outputs_and_gradients(small_config):
    torch.manual_seed(0)
    g = build_generator(small_config.model)
    d = Discriminator(small_config.model)
    g2, d2 = build_generator(small_config.model), Discriminator(small_config.model)
    g2.load_state_dict(g.state_dict())
    d2.load_state_dict(d.state_dict())
    to_channels_last(g2), to_channels_last(d2)
    assert g2.foreground_stream.net[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert g2.background_stream.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    z = torch.randn(3, small_config.model.z_dim)
    out, out2 = g(z), g2(z)
    assert torch.allclose(out.video, out2.video, atol=1e-5)
    d(out.video).sum().backward()
    d2(out2.video.contiguous(memory_format=torch.channels_last_3d)).sum().backward()
    for (name, p), p2 in zip(g.named_parameters(), g2.parameters(), strict=True):
        assert torch.allclose(p.grad, p2.grad, atol=1e-5, rtol=1e-4), name
    # The checkpoint format is layout-free: state dicts come out as the same values.
    assert all(torch.equal(v, g2.state_dict()[k]) for k, v in g.state_dict().items()
               if "running" not in k and "num_batches" not in k)


def test_the_fused_adam_takes_the_per_op_adams_steps():
    """runtime.adam (fused kernel) against torch's reference per-op Adam, same hyper-parameters, 5 steps. (A
    small conv net without BatchNorm: biases in front of BatchNorm get gradients of rounding noise, which Adam
    scales up to +-lr, so their values say nothing about the optimiser.)"""
    torch.manual_seed(0)
    tc = TrainConfig(lr_g=1e-3)
    nets = [torch.nn.Sequential(torch.nn.Conv3d(3, 8, 3), torch.nn.LeakyReLU(0.2), torch.nn.Conv3d(8, 2, 3))
            for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    before = [p.detach().clone() for p in nets[0].parameters()]
    fused = adam(nets[0].parameters(), tc.lr_g, tc)
    per_op = torch.optim.Adam(nets[1].parameters(), lr=tc.lr_g, betas=(tc.beta1, tc.beta2), foreach=False)
    assert fused.param_groups[0]["fused"] and fused.param_groups[0]["betas"] == (0.5, 0.999)
    for step in range(5):
        x = torch.randn(2, 3, 6, 6, 6, generator=torch.Generator().manual_seed(step))
        for net, opt in zip(nets, (fused, per_op), strict=True):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for (name, p), p2, p0 in zip(nets[0].named_parameters(), nets[1].parameters(), before, strict=True):
        assert (p - p0).abs().max() > 1e-3, name  # 5 steps of lr 1e-3 moved it
        assert torch.allclose(p, p2, atol=1e-6, rtol=1e-5), name


def test_bf16_autocast_runs_the_forward_passes_in_bf16(small_config):
    d = Discriminator(small_config.model)
    video = torch.rand(2, *small_config.clip_shape) * 2 - 1
    with autocast(TrainConfig(precision="bf16"), CPU):
        assert d.features[0](video).dtype == torch.bfloat16
    with autocast(TrainConfig(precision="fp32"), CPU):
        assert d.features[0](video).dtype == torch.float32


def test_options_that_cannot_work_are_refused():
    with pytest.raises(ConfigError, match="grad_accumulation"):
        check_options(TrainConfig(batch_size=6, grad_accumulation=4), _single())
    check_options(TrainConfig(batch_size=8, grad_accumulation=4), _single())
    two_cpu_ranks = DistributedContext(rank=0, world_size=2, local_rank=0, device=CPU)
    with pytest.raises(ConfigError, match="4 clips per rank"):
        check_options(TrainConfig(batch_size=8, grad_accumulation=3), two_cpu_ranks)
    with pytest.raises(ConfigError, match="SyncBatchNorm"):
        check_options(TrainConfig(batch_size=8, sync_batchnorm=True), two_cpu_ranks)
    check_options(TrainConfig(r1_weight=0.1, r1_every=16), _single())  # R1's own rules: config.validate's


def test_compiled_networks_take_the_same_step(small_config, monkeypatch):
    """train.compile wraps both networks in torch.compile. Dynamo's graph capture runs for real; the eager
    backend stands in for Inductor, whose C++ compilation of these kernels takes minutes on a 2-core CPU."""
    import functools

    from videogan.training.runtime import prepare_networks
    from videogan.training.step import StepSetup, train_step

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    gen = torch.Generator().manual_seed(1)
    real = torch.rand(4, *small_config.clip_shape, generator=gen) * 2 - 1
    z = torch.randn(4, small_config.model.z_dim, generator=gen)
    weights = []
    for compiled in (False, True):
        torch.manual_seed(0)
        g, d = build_generator(small_config.model), Discriminator(small_config.model)
        tc = TrainConfig(batch_size=4, compile=compiled)
        opt_g, opt_d = torch.optim.SGD(g.parameters(), lr=0.1), torch.optim.SGD(d.parameters(), lr=0.1)
        G, D = prepare_networks(g, d, tc, _single())
        assert isinstance(G, torch._dynamo.eval_frame.OptimizedModule) == compiled
        train_step(StepSetup(G, D, opt_g, opt_d, tc, _single()), real, z)
        weights.append(g.state_dict())  # the raw module: checkpoints never see the compiled wrapper's names
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.allclose(weights[0][k].float(), weights[1][k].float(), atol=1e-6) for k in weights[0])


def test_training_runs_and_resumes_with_the_speed_options(tmp_path, small_config):
    from videogan.training.loop import train

    tc = small_config.train
    tc.steps, tc.grad_accumulation, tc.channels_last, tc.precision = 2, 2, True, "bf16"
    result = train(small_config, tmp_path / "run", progress=False)
    assert result.step == 2 and all(v == v for v in result.last_metrics.values())  # finite, not NaN
    # options may change on resume: checkpoints are layout-free
    tc.steps, tc.channels_last, tc.precision = 3, False, "fp32"
    assert train(small_config, tmp_path / "run", resume=True, progress=False).step == 3


def test_the_learning_rate_holds_then_falls_linearly_to_zero():
    rates = [decayed_learning_rate(2e-4, step, start=4, end=8) for step in range(10)]
    assert rates[:5] == [2e-4] * 5
    assert rates[5:] == pytest.approx([1.5e-4, 1e-4, 0.5e-4, 0.0, 0.0])
    assert [decayed_learning_rate(2e-4, step, 0, 0) for step in (0, 10**6)] == [2e-4, 2e-4]  # off


def test_set_learning_rates_gives_each_optimiser_its_own_decayed_rate():
    tc = TrainConfig(lr_g=4e-4, lr_d=1e-4, lr_decay_start=10, lr_decay_end=20)
    opt_g, opt_d = (adam([torch.zeros(2, requires_grad=True)], 1.0, tc) for _ in range(2))
    set_learning_rates(opt_g, opt_d, 15, tc)
    assert opt_g.param_groups[0]["lr"] == pytest.approx(2e-4)
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.5e-4)
