import json

import pytest
import torch

from videogan.checkpoint import (
    CheckpointError,
    flatten_optimizer,
    list_checkpoints,
    load_checkpoint,
    TrainingState,
    resolve,
    restore_training_state,
    save_checkpoint,
    unflatten_optimizer,
)
from videogan.config import preset


def _trained():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return net, opt


def _save(run, step, keep=0):
    (net, opt), (net_d, opt_d) = _trained(), _trained()
    return save_checkpoint(run, step, preset("tiny"), net.state_dict(), net_d.state_dict(),
                           {"generator": opt.state_dict(), "discriminator": opt_d.state_dict()},
                           {"torch": torch.get_rng_state()}, keep=keep), net, opt


def test_round_trip(tmp_path):
    path, net, opt = _save(tmp_path, 10)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.path == path and ckpt.step == 10 and ckpt.config == preset("tiny")
    assert torch.equal(ckpt.generator["weight"], net.weight)
    restored = unflatten_optimizer("optimizer.generator", ckpt.training_state, ckpt.meta["optimizers"]["generator"])
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    opt2.load_state_dict(restored)
    for k in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(opt2.state_dict()["state"][0][k], opt.state_dict()["state"][0][k])
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp left


def test_resume_keeps_this_runs_optimiser_kernel(tmp_path):
    """A checkpoint written by the per-op Adam (runs from before runtime.adam) resumes into the fused one, and the
    fused one stays fused: the saved param_groups do not bring their kernel flags back."""
    _, net, opt = _save(tmp_path, 10)
    assert not opt.param_groups[0]["fused"]
    g, d = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    state = TrainingState(g, d, opt_g=torch.optim.Adam(g.parameters(), fused=True), opt_d=torch.optim.Adam(d.parameters(), fused=True))
    restore_training_state(tmp_path, preset("tiny"), state)
    assert state.step == 10 and torch.equal(g.weight, net.weight)
    assert state.opt_g.param_groups[0]["fused"] and state.opt_d.param_groups[0]["fused"]
    assert torch.equal(state.opt_g.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    g(torch.randn(4, 3)).sum().backward()
    state.opt_g.step()  # the fused kernel accepts the restored state (its step counters included)
    assert float(state.opt_g.state_dict()["state"][0]["step"]) == 2


def test_latest_and_keep(tmp_path):
    for step in (5, 10, 15):
        _save(tmp_path, step, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000010", "step_00000015"]
    assert resolve(tmp_path).name == "step_00000015"
    # An incomplete folder (no checkpoint.json) is never taken for a checkpoint.
    (tmp_path / "checkpoints" / "step_00000020").mkdir()
    assert resolve(tmp_path).name == "step_00000015"


def test_missing_and_corrupt(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        load_checkpoint(tmp_path)
    path, _, _ = _save(tmp_path, 1)
    (path / "generator.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="generator.safetensors: corrupt"):
        load_checkpoint(path)
    (path / "checkpoint.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="checkpoint.json: corrupt"):
        load_checkpoint(path)


def test_checkpoint_holds_only_data(tmp_path):
    path, _, _ = _save(tmp_path, 1)
    assert sorted(p.name for p in path.iterdir()) == [
        "checkpoint.json", "discriminator.safetensors", "generator.safetensors", "training_state.safetensors"]
    meta = json.loads((path / "checkpoint.json").read_text())
    assert meta["config"]["model"]["frames"] == 16


def test_flatten_handles_every_state_entry():
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(1, 2)).sum().backward()
    opt.step()
    tensors, meta = flatten_optimizer("o", opt.state_dict())
    assert set(tensors) == {f"o.state.{i}.{k}" for i in (0, 1) for k in ("step", "exp_avg", "exp_avg_sq")}
    json.dumps(meta)  # param groups are plain JSON
