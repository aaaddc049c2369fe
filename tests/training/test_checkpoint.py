import errno
import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from videogan import media
from videogan.config import preset
from videogan.training import checkpoint
from videogan.training.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    TrainingState,
    flatten_optimizer,
    list_checkpoints,
    load_checkpoint,
    resolve,
    restore_training_state,
    save_checkpoint,
    save_training_state,
    sweep_leftovers,
    unflatten_optimizer,
)


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
    restored = unflatten_optimizer("optimizer.generator", ckpt.training_state,
                                   ckpt.meta["optimizers"]["generator"])
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    opt2.load_state_dict(restored)
    for k in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(opt2.state_dict()["state"][0][k], opt.state_dict()["state"][0][k])
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp left


def test_resume_keeps_this_runs_optimiser_kernel(tmp_path):
    """A checkpoint written by the per-op Adam (runs from before runtime.adam) resumes into the fused one, and
    the fused one stays fused: the saved param_groups do not bring their kernel flags back."""
    _, net, opt = _save(tmp_path, 10)
    assert not opt.param_groups[0]["fused"]
    g, d = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    state = TrainingState(g, d, opt_g=torch.optim.Adam(g.parameters(), fused=True),
                          opt_d=torch.optim.Adam(d.parameters(), fused=True))
    restore_training_state(tmp_path, preset("tiny"), state)
    assert state.step == 10 and torch.equal(g.weight, net.weight)
    assert state.opt_g.param_groups[0]["fused"] and state.opt_d.param_groups[0]["fused"]
    assert torch.equal(state.opt_g.state_dict()["state"][0]["exp_avg"],
                       opt.state_dict()["state"][0]["exp_avg"])
    g(torch.randn(4, 3)).sum().backward()
    state.opt_g.step()  # the fused kernel accepts the restored state (its step counters included)
    assert float(state.opt_g.state_dict()["state"][0]["step"]) == 2


def test_resume_takes_the_learning_rate_and_betas_of_this_runs_config(tmp_path):
    """`--resume --set train.lr_d=...` changes the rate: the checkpoint gives Adam's moments, the config its
    settings."""
    _, net, opt = _save(tmp_path, 10)
    assert opt.param_groups[0]["lr"] == 1e-3
    g, d = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    state = TrainingState(g, d, opt_g=torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999)),
                          opt_d=torch.optim.Adam(d.parameters(), lr=5e-5, betas=(0.0, 0.99)))
    restore_training_state(tmp_path, preset("tiny"), state)
    assert (state.opt_g.param_groups[0]["lr"], state.opt_g.param_groups[0]["betas"]) == (2e-4, (0.5, 0.999))
    assert (state.opt_d.param_groups[0]["lr"], state.opt_d.param_groups[0]["betas"]) == (5e-5, (0.0, 0.99))
    assert torch.equal(state.opt_g.state_dict()["state"][0]["exp_avg_sq"],
                       opt.state_dict()["state"][0]["exp_avg_sq"])


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


def _entries(run):
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def test_sweep_removes_only_what_interrupted_writes_and_deletions_left(tmp_path):
    _save(tmp_path, 5)
    _save(tmp_path, 10)
    root = tmp_path / "checkpoints"
    for leftover in (".step_00000015.k2j4_x9a", ".step_00000005.trash"):  # a write, a deletion: interrupted
        (root / leftover).mkdir()
        (root / leftover / "generator.safetensors").write_bytes(b"half")
    (root / "step_00000020").mkdir()  # a deletion in place (earlier versions) past checkpoint.json
    (root / "step_00000020" / "training_state.safetensors").write_bytes(b"rest")
    for foreign in ("step_00000030", ".cache"):  # not ours: other files, other names
        (root / foreign).mkdir()
        (root / foreign / "notes.txt").write_text("mine")
    (root / "step_00000040").write_text("a file, not a folder")
    removed = sweep_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == [".step_00000005.trash", ".step_00000015.k2j4_x9a",
                                               "step_00000020"]
    assert _entries(tmp_path) == [".cache", "step_00000005", "step_00000010", "step_00000030",
                                  "step_00000040"]
    assert load_checkpoint(tmp_path).step == 10
    assert sweep_leftovers(tmp_path / "nothing here") == []


class Killed(BaseException):
    """A kill in the middle of a deletion."""


def test_an_interrupted_rotation_never_leaves_a_checkpoint_that_looks_complete(tmp_path, monkeypatch):
    _save(tmp_path, 5, keep=1)

    def killed_midway(path, ignore_errors=False):  # removes one file, then the process dies
        if Path(path).exists():
            (Path(path) / "generator.safetensors").unlink()
            raise Killed

    monkeypatch.setattr(checkpoint.shutil, "rmtree", killed_midway)
    with pytest.raises(Killed):
        _save(tmp_path, 10, keep=1)
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000010"]
    assert _entries(tmp_path) == [".step_00000005.trash", "step_00000010"]  # checkpoint.json still in there
    sweep_leftovers(tmp_path)
    assert _entries(tmp_path) == ["step_00000010"]


def test_checkpoint_folder_gets_the_usual_permissions(tmp_path):
    previous = os.umask(0o027)
    try:
        path, _, _ = _save(tmp_path, 1)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o750  # 0777 less the umask, not mkdtemp's 0700
    assert stat.S_IMODE((path / "generator.safetensors").stat().st_mode) == 0o640


def test_every_file_and_folder_is_flushed_before_the_rename_and_the_parent_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = media.fsync_path, os.replace

    def fsync(path):
        events.append(("fsync", Path(path)))
        real_fsync(path)

    def replace(src, dst):
        events.append(("replace", Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(media, "fsync_path", fsync)
    monkeypatch.setattr(checkpoint, "fsync_path", fsync)
    monkeypatch.setattr(media.os, "replace", replace)
    path, _, _ = _save(tmp_path, 3)
    renamed = [i for i, e in enumerate(events) if e[0] == "replace" and e[2] == path]
    assert len(renamed) == 1
    tmp = events[renamed[0]][1]
    flushed_before = {e[1] for e in events[: renamed[0]] if e[0] == "fsync"}
    assert {tmp / p.name for p in path.iterdir()} | {tmp} <= flushed_before
    assert ("fsync", path.parent) in events[renamed[0]:]


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
])
def test_a_full_disk_names_the_file_and_leaves_no_temporary_folder(tmp_path, monkeypatch, error):
    _save(tmp_path, 5)
    real_save = checkpoint.save_file

    def disk_full_at_discriminator(tensors, path):
        if Path(path).name == "discriminator.safetensors":
            raise error
        real_save(tensors, path)

    monkeypatch.setattr(checkpoint, "save_file", disk_full_at_discriminator)
    with pytest.raises(CheckpointWriteError) as e:
        _save(tmp_path, 10)
    assert str(e.value) == (f"cannot write {tmp_path}/checkpoints/step_00000010/discriminator.safetensors "
                            "(No space left on device)")
    assert _entries(tmp_path) == ["step_00000005"]


def _rewrite_meta(path, **changes):
    meta = json.loads((path / "checkpoint.json").read_text())
    meta.update(changes)
    (path / "checkpoint.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("changes, field", [
    ({"step": "300"}, '"step" must be a whole number >= 0'),
    ({"step": None}, '"step" must be a whole number >= 0'),
    ({"step": 12.7}, '"step" must be a whole number >= 0, not 12.7'),
    ({"step": -5}, '"step" must be a whole number >= 0, not -5'),
    ({"step": 12}, '"step" is 12 but the folder is step_00000300'),
    ({"config": []}, '"config" must be an object'),
    ({"elapsed_seconds": "long"}, '"elapsed_seconds" must be a number'),
    ({"optimizers": [[]]}, '"optimizers" must be an object'),
    ({"optimizers": {"generator": []}},
     '"optimizers.generator" must be an object with a "param_groups" list'),
    ({"optimizers": {"generator": {"param_groups": [{"params": [0], "lr": "fast"}]}}},
     '"optimizers.generator.param_groups\\[0\\]" "lr" must be a number'),
    ({"optimizers": {"generator": {"param_groups": [{"params": [0.5]}]}}},
     '"optimizers.generator.param_groups\\[0\\]" "params" must be a list of whole numbers'),
    ({"log_interval": {"steps": 2, "seconds": 1.0, "values": [["d_loss", 1.0, 3]]}},
     '"log_interval" "values" entry \\[\'d_loss\', 1.0, 3\\] is not \\[name, sum, count from 1 to'),
])
def test_wrong_metadata_fields_are_named_in_one_line(tmp_path, changes, field):
    path, _, _ = _save(tmp_path, 300)
    _rewrite_meta(path, **changes)
    expected = f"checkpoint.json: corrupt checkpoint metadata \\({field}"
    with pytest.raises(CheckpointError, match=expected) as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)


def test_the_open_logging_interval_travels_with_the_training_state(tmp_path):
    g, d = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    interval = {"steps": 3, "seconds": 0.5, "values": [["d_loss", 2.0000000000000004, 3], ["r1", 1.5, 1]]}
    state = TrainingState(g, d, torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters()), step=7,
                          log_interval=interval)
    save_training_state(tmp_path, preset("tiny"), state)
    restored = TrainingState(g, d, torch.optim.Adam(g.parameters()), torch.optim.Adam(d.parameters()))
    restore_training_state(tmp_path, preset("tiny"), restored)
    assert restored.step == 7 and restored.log_interval == state.log_interval


def test_metadata_nested_too_deep_to_parse_is_one_line(tmp_path):
    path, _, _ = _save(tmp_path, 3)
    (path / "checkpoint.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="corrupt checkpoint metadata") as e:
        load_checkpoint(path)
    assert "\n" not in str(e.value)
