import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from videogan.training import checkpoint
from videogan.training import loop as train_module
from videogan.training.checkpoint import CheckpointError, list_checkpoints
from videogan.training.ema import ema_decay_at, recalibrate_batchnorm, update_ema
from videogan.training.loop import StopRequests, TrainingError, next_batch, train


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_short_run_gives_finite_losses_and_writes_everything(tmp_path, small_config):
    result = train(small_config, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert result.step == 4
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        for key in ("d_loss", "g_loss", "g_adv", "mask_l1", "d_real", "d_fake", "time", "clips_per_second"):
            assert math.isfinite(r[key])
        assert r["g_loss"] == pytest.approx(r["g_adv"] + 0.1 * r["mask_l1"], rel=1e-5)
    assert json.loads((run / "config.json").read_text())["model"]["size"] == 8
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002", "step_00000004"]
    assert (run / "progress" / "step_00000004.gif").is_file()
    assert (run / "progress" / "step_00000004_mask.gif").is_file()


def test_lazy_r1_runs_every_r1_every_steps_and_is_logged_there(tmp_path, small_config):
    small_config.train.r1_weight, small_config.train.r1_every = 1.0, 2
    train(small_config, tmp_path / "run", progress=False)
    rows = _metrics(tmp_path / "run")
    # 0-based steps 0 and 2, logged as 1 and 3
    assert [("r1" in r) for r in rows] == [True, False, True, False]
    assert all(math.isfinite(r["r1"]) and r["r1"] > 0 for r in rows if "r1" in r)


def test_r1_is_refused_with_a_negative_weight_or_no_interval(tmp_path, small_config):
    from videogan.config import ConfigError

    for weight, every, message in ((-1.0, 4, "train.r1_weight=-1.0: must be"),
                                   (1.0, 0, "train.r1_every=0: must be")):
        small_config.train.r1_weight, small_config.train.r1_every = weight, every
        with pytest.raises(ConfigError, match=message):
            train(small_config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_the_learning_rates_follow_the_decay(tmp_path, small_config):
    small_config.train.lr_g, small_config.train.lr_d = 4e-4, 1e-4
    small_config.train.lr_decay_start, small_config.train.lr_decay_end = 2, 4  # 0-based steps 2, 3: x1, x0.5

    def rates(step):  # the rates Adam took the checkpoint's last step with
        meta = json.loads((tmp_path / "run" / "checkpoints" / f"step_{step:08d}" / "checkpoint.json")
                          .read_text())
        return [meta["optimizers"][net]["param_groups"][0]["lr"] for net in ("generator", "discriminator")]

    train(small_config, tmp_path / "run", progress=False)
    assert rates(2) == [4e-4, 1e-4]
    assert rates(4) == pytest.approx([2e-4, 0.5e-4])


@pytest.mark.parametrize("augment, lr_decay, d_norm, d_frame_width", [
    ("", (0, 0), "batch", 0), ("color,translation,cutout", (0, 0), "batch", 0), ("", (2, 6), "batch", 0),
    ("", (0, 0), "spectral", 0), ("", (0, 0), "batch", 8)])
def test_resume_equals_the_uninterrupted_run(tmp_path, small_config, augment, lr_decay, d_norm,
                                             d_frame_width):
    small_config.train.augment = augment  # augmentation draws are a function of (seed, rank, step) too
    # so are the learning rates: resuming mid-decay takes the rates the uninterrupted run took
    small_config.train.lr_decay_start, small_config.train.lr_decay_end = lr_decay
    # a spectrally normalised D carries its power iteration's vectors from step to step: the checkpoint too
    small_config.model.d_norm = d_norm
    # the frame head's draws of frames come from torch's generator, which the checkpoint restores
    small_config.model.d_frame_width, small_config.model.d_frame_samples = d_frame_width, 2
    small_config.train.steps = 6
    train(small_config, tmp_path / "full", progress=False)
    small_config.train.steps = 3  # "interrupted" after step 3 (a checkpoint is always written at the end)
    train(small_config, tmp_path / "split", progress=False)
    small_config.train.steps = 6
    train(small_config, tmp_path / "split", resume=True, progress=False)

    full, split = _metrics(tmp_path / "full"), _metrics(tmp_path / "split")
    assert all(("d_real_frames" in r) == bool(d_frame_width) for r in full)  # each head's probabilities
    drop = ("time", "seconds_per_step", "clips_per_second")
    assert [{k: v for k, v in r.items() if k not in drop} for r in split] == \
           [{k: v for k, v in r.items() if k not in drop} for r in full]
    for name in ("generator", "generator_ema", "discriminator"):
        a = load_file(tmp_path / "full" / "checkpoints" / "step_00000006" / f"{name}.safetensors")
        b = load_file(tmp_path / "split" / "checkpoints" / "step_00000006" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_one_stream_trains(tmp_path, small_config):
    small_config.model.kind = "one-stream"
    small_config.train.steps = 2
    train(small_config, tmp_path / "run", progress=False)
    assert all(r["mask_l1"] == 0 for r in _metrics(tmp_path / "run"))


def test_refuses_to_overwrite_or_resume_nothing(tmp_path, small_config):
    small_config.train.steps = 2
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(small_config, tmp_path / "run", resume=True, progress=False)
    train(small_config, tmp_path / "run", progress=False)
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        train(small_config, tmp_path / "run", progress=False)
    small_config.model.g_width = 16
    with pytest.raises(CheckpointError, match="cannot change the model"):
        train(small_config, tmp_path / "run", resume=True, progress=False)


def test_tensorboard_events_when_installed(tmp_path, small_config):
    pytest.importorskip("tensorboard", reason="optional extra: pip install 'videogan[tensorboard]'")
    small_config.train.steps = 2
    train(small_config, tmp_path / "run", progress=False)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_ema_update_is_a_moving_average():
    model, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(3.0)
        ema.weight.fill_(1.0)
    update_ema(ema, model, decay=0.75)
    assert torch.allclose(ema.weight, torch.full((2, 2), 1.5))  # 0.75 * 1 + 0.25 * 3
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1) and ema_decay_at(10**6, 0.999) == 0.999


def test_recalibrated_batchnorm_statistics_are_the_generators_own(small_config):
    from videogan.models import build_generator

    g = build_generator(small_config.model).eval()
    recalibrate_batchnorm(g, batches=4, batch_size=8, seed=3)
    bn = g.foreground_stream.net[1]
    gen = torch.Generator().manual_seed(3)
    zs = torch.cat([torch.randn(8, g.z_dim, generator=gen) for _ in range(4)])
    feats = g.foreground_stream.net[0](zs[:, :, None, None, None])  # the input of that BatchNorm
    assert torch.allclose(bn.running_mean, feats.mean((0, 2, 3, 4)), atol=1e-5)
    assert bn.momentum == 0.1 and not g.training
    before = {k: v.clone() for k, v in g.state_dict().items()}
    recalibrate_batchnorm(g, batches=4, batch_size=8, seed=3)  # deterministic
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())


def test_without_ema_there_is_no_ema_file(tmp_path, small_config):
    small_config.train.ema_decay = 0.0
    small_config.train.steps = 1
    train(small_config, tmp_path / "run", progress=False)
    assert not list((tmp_path / "run").rglob("generator_ema.safetensors"))


TIMING = ("time", "seconds_per_step", "clips_per_second")


def _losses(run):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in _metrics(run)]


def _same_weights(run_a, run_b, step):
    for name in ("generator", "generator_ema", "discriminator"):
        a = load_file(run_a / "checkpoints" / f"step_{step:08d}" / f"{name}.safetensors")
        b = load_file(run_b / "checkpoints" / f"step_{step:08d}" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("interruption", ["killed after a checkpoint", "ended, then extended"])
def test_resume_between_two_log_steps_logs_the_uninterrupted_rows(tmp_path, small_config, interruption):
    small_config.train.steps, small_config.train.log_every, small_config.train.checkpoint_every = 8, 4, 3
    train(small_config, tmp_path / "full", progress=False)  # rows at 4 and 8; checkpoints at 3, 6, 8
    split = tmp_path / "split"
    if interruption == "killed after a checkpoint":  # the last checkpoint, at 6, holds half the interval 5-8
        shutil.copytree(tmp_path / "full", split)
        shutil.rmtree(split / "checkpoints" / "step_00000008")
    else:  # a run of 6 steps logs a row at 6 and carries its interval on; extended, it is logged again at 8
        small_config.train.steps = 6
        train(small_config, split, progress=False)
        assert [r["step"] for r in _metrics(split)] == [4, 6]
        small_config.train.steps = 8
    train(small_config, split, resume=True, progress=False)
    assert _losses(split) == _losses(tmp_path / "full") and [r["step"] for r in _metrics(split)] == [4, 8]
    assert [list(r) for r in _metrics(split)] == [list(r) for r in _metrics(tmp_path / "full")]  # same order
    _same_weights(split, tmp_path / "full", 8)


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_ends_in_one_line_naming_the_file_and_the_last_checkpoint(tmp_path, small_config,
                                                                               monkeypatch):
    run = tmp_path / "run"
    real_save = checkpoint.save_file

    def full_from_step_4(tensors, path):
        if "step_00000004" in str(path):
            _no_space()
        real_save(tensors, path)

    monkeypatch.setattr(checkpoint, "save_file", full_from_step_4)
    with pytest.raises(TrainingError) as raised:
        train(small_config, run, progress=False)
    root = run / "checkpoints"
    assert str(raised.value) == (f"cannot write {root}/step_00000004/generator.safetensors (No space left on "
                                 f"device); the last good checkpoint is {root}/step_00000002")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002"]  # no temporary folder
    monkeypatch.undo()  # space freed: the run resumes and finishes; a leftover of a killed write is swept
    (run / "checkpoints" / ".step_00000004.x1y2z3ab").mkdir()
    assert train(small_config, run, resume=True, progress=False).step == 4
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]


def test_a_full_disk_before_any_checkpoint_says_so(tmp_path, small_config, monkeypatch):
    monkeypatch.setattr(train_module, "save_progress_grid", _no_space)  # before step 2's checkpoint
    with pytest.raises(TrainingError) as raised:
        train(small_config, tmp_path / "run", progress=False)
    assert str(raised.value) == (f"cannot write {tmp_path}/run/progress/step_00000002.gif (No space left on "
                                 "device); no checkpoint was written yet")


def _signal_during_step(monkeypatch, at_call, *signals):
    """Make train_step's `at_call`-th call (1-based) deliver `signals` to this process while it runs."""
    calls, real_step = [], train_module.train_step

    def step(*args, **kwargs):
        calls.append(None)
        if len(calls) == at_call:
            for signum in signals:
                signal.raise_signal(signum)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", step)
    return calls


def test_sigterm_finishes_the_step_writes_a_checkpoint_and_resumes_exactly(tmp_path, small_config,
                                                                           monkeypatch):
    small_config.train.steps, small_config.train.log_every, small_config.train.checkpoint_every = 8, 4, 0
    train(small_config, tmp_path / "full", progress=False)
    before = signal.getsignal(signal.SIGTERM)
    calls = _signal_during_step(monkeypatch, 3, signal.SIGTERM)
    result = train(small_config, tmp_path / "split", progress=False)
    assert len(calls) == 3 and result.step == 3 and result.stopped_by_signal == signal.SIGTERM
    assert result.checkpoint == tmp_path / "split" / "checkpoints" / "step_00000003"
    assert [p.name for p in list_checkpoints(tmp_path / "split")] == ["step_00000003"]
    assert signal.getsignal(signal.SIGTERM) == before  # the handler lives only as long as train()
    monkeypatch.undo()
    assert train(small_config, tmp_path / "split", resume=True, progress=False).stopped_by_signal is None
    assert _losses(tmp_path / "split") == _losses(tmp_path / "full")
    _same_weights(tmp_path / "split", tmp_path / "full", 8)


class Terminated(Exception):
    """What the handler installed before train() does with SIGTERM in this test (the default one exits)."""


def test_a_second_signal_goes_at_once_to_the_handler_from_before(tmp_path, small_config, monkeypatch):
    def previous(signum, frame):
        raise Terminated

    monkeypatch.setattr(StopRequests, "repeat_window", 0.0)  # the second signal is not a copy of the first
    old = signal.signal(signal.SIGTERM, previous)
    try:
        _signal_during_step(monkeypatch, 1, signal.SIGTERM, signal.SIGTERM)
        with pytest.raises(Terminated):
            train(small_config, tmp_path / "run", progress=False)
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)
    assert list_checkpoints(tmp_path / "run") == []  # it did not wait for the step nor write a checkpoint
    _signal_during_step(monkeypatch, 1, signal.SIGINT, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C twice: Python's own handler
        train(small_config, tmp_path / "run2", progress=False)


def test_a_copy_of_the_signal_forwarded_by_a_launcher_stops_the_run_cleanly(tmp_path, small_config,
                                                                            monkeypatch):
    monkeypatch.setattr(StopRequests, "repeat_window", 1e9)  # however late the copy comes in this test
    _signal_during_step(monkeypatch, 1, signal.SIGINT, signal.SIGINT)  # a terminal's Ctrl-C, torchrun's copy
    result = train(small_config, tmp_path / "run", progress=False)
    assert result.step == 1 and result.stopped_by_signal == signal.SIGINT
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_00000001"]


def test_an_ignored_signal_stays_ignored(tmp_path, small_config, monkeypatch):
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job of a shell
    try:
        _signal_during_step(monkeypatch, 1, signal.SIGINT)
        result = train(small_config, tmp_path / "run", progress=False)
    finally:
        signal.signal(signal.SIGINT, old)
    assert result.step == 4 and result.stopped_by_signal is None


def test_a_batch_lost_to_the_stop_signal_is_no_error():
    def broken_loader():
        raise RuntimeError("DataLoader worker (pid(s) 123) exited unexpectedly")  # Ctrl-C reached the workers
        yield

    stop = StopRequests()
    with pytest.raises(RuntimeError, match="exited unexpectedly"):
        next_batch(broken_loader(), stop)
    stop.signum = signal.SIGINT
    assert next_batch(broken_loader(), stop) is None


RANK_SCRIPT = """
import json, os, signal, sys
from pathlib import Path
from videogan.training import loop as train_module
from videogan.config import from_dict

calls, real_step = [], train_module.train_step

def step(*args, **kwargs):
    calls.append(None)
    if len(calls) == 2 and os.environ["RANK"] == "1":  # only rank 1 is told to stop, during its second step
        signal.raise_signal(signal.SIGTERM)
    return real_step(*args, **kwargs)

train_module.train_step = step
result = train_module.train(from_dict(json.loads(sys.argv[2])), sys.argv[1], progress=False)
report = Path(sys.argv[1]).parent / f"rank{os.environ['RANK']}.json"
report.write_text(json.dumps({"step": result.step, "signal": result.stopped_by_signal}))
"""


def test_under_torchrun_every_rank_stops_after_the_same_step(tmp_path, small_config):
    small_config.train.steps, small_config.train.log_every, small_config.train.checkpoint_every = 6, 4, 0
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path / "run"), json.dumps(small_config.to_dict())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert reports == [{"step": 2, "signal": signal.SIGTERM}] * 2
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_00000002"]
    meta = json.loads((tmp_path / "run" / "checkpoints" / "step_00000002" / "checkpoint.json").read_text())
    assert meta["log_interval"]["steps"] == 2  # both steps, to be logged at step 4 once resumed
