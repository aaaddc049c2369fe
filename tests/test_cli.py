import json
import subprocess
import sys

import pytest

from videogan import cli
from videogan.cli import main
from videogan.config import preset
from videogan.errors import VideoGANError
from videogan.interop.t7 import T7Error
from videogan.metrics.i3d import I3DWeightsError


def test_info_paper(capsys):
    assert main(["info", "--preset", "paper"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["generator_params"] == 16_245_383 and info["discriminator_params"] == 11_057_858
    assert info["clip_shape"] == [3, 32, 64, 64] and info["config"]["train"]["batch_size"] == 64


def test_info_one_stream_and_overrides(capsys):
    assert main(["info", "--preset", "tiny", "--model", "one-stream", "--set", "model.frames=8"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["generator"] == "OneStreamGenerator" and info["clip_shape"] == [3, 8, 32, 32]


@pytest.mark.parametrize("argv,message", [
    (["info", "--set", "model.nope=1"], "unknown config key 'model.nope'"),
    (["info", "--set", "model.g_width=wide"], "expected an integer"),
    (["info", "--set", "model.size=48"], "size 48 is not supported"),
    (["generate", "missing_run", "--out", "x"], "missing_run: no such file or directory"),
    (["train", "--out", "never_written", "--device", "gpu0"], "device 'gpu0' is not a device"),
])
def test_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_data_path_fails_before_writing_anything(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--data", str(tmp_path / "no_videos"), "--steps", "1",
                 "--quiet"]) == 2
    assert "no_videos: no such file or folder" in capsys.readouterr().err
    assert not run.exists()


def _exit_status(argv: list[str]) -> int:
    """main's return value, or the status of argparse's exit on a bad flag."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("argv,message", [
    (["--set", "train.lr_g=nan"], "train.lr_g=nan: must be a finite number > 0"),
    (["--set", "train.log_every=0"], "train.log_every=0: must be an integer >= 1"),
    (["--set", "model.frames=1"], "model.frames=1: must be an integer in [2, 1024]"),
    (["--set", "train.ema_decay=2"], "train.ema_decay=2.0: must be a finite number in [0, 1)"),
    (["--eval-every", "-1"], "argument --eval-every: expected 0 or a positive integer, got '-1'"),
    (["--steps", "99999999999999999999999"], "argument --steps: expected an integer of at most 2**53"),
])
def test_train_refuses_out_of_range_values_before_writing_anything(tmp_path, capsys, argv, message):
    run = tmp_path / "run"
    assert _exit_status(["train", "--out", str(run), "--device", "cpu", "--quiet", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not run.exists()


def test_resume_refuses_a_saved_config_out_of_range(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    saved = preset("tiny").to_dict()
    saved["model"]["z_dim"] = 0
    (run / "config.json").write_text(json.dumps(saved))
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "config.json: cannot read the run's config (model.z_dim=0: must be an integer in [1, 4096])" in err
    assert len(err.splitlines()) == 1 and sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_unknown_preset_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", "--preset", "huge"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'huge'" in err and len(err.strip().splitlines()) == 1


def test_train_resume_and_generate_end_to_end(tmp_path, capsys):
    run = str(tmp_path / "run")
    small = ["--set", "model.frames=4", "--set", "model.size=8", "--set", "model.g_width=8",
             "--set", "model.d_width=4", "--set", "train.num_samples=4", "--device", "cpu", "--quiet"]
    assert main(["train", "--preset", "tiny", "--out", run, "--steps", "2", "--batch-size", "4", *small]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 2
    # Resuming reads the run's own config; --steps extends it.
    assert main(["train", "--out", run, "--resume", "--steps", "3", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3
    assert main(["generate", run, "--num", "2", "--seed", "0", "--out", str(tmp_path / "out")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["step"] == 3 and "mask_mean" in printed and "motion_in_mask" in printed
    assert main(["train", "--preset", "tiny", "--out", run, "--steps", "2", *small]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000001"
    ckpt.mkdir(parents=True)
    (ckpt / "checkpoint.json").write_text("{broken")
    assert main(["generate", str(tmp_path / "run"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint.json: corrupt checkpoint metadata" in capsys.readouterr().err


def test_console_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "videogan", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "generate" in done.stdout


def test_train_stopped_by_a_signal_says_so_in_a_line_and_exits_128_plus_its_number(tmp_path, monkeypatch,
                                                                                     capsys):
    import signal

    from videogan.training import loop as train_module

    real_step = train_module.train_step

    def step_then_terminated(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # what `timeout` or a scheduler sends, here during step 1
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", step_then_terminated)
    run = tmp_path / "run"
    argv = ["train", "--out", str(run), "--steps", "50", "--quiet", "--set", "train.batch_size=4",
            "--set", "model.frames=4", "--set", "model.size=8", "--set", "model.g_width=8",
            "--set", "model.d_width=4", "--set", "data.workers=0", "--set", "train.sample_every=0"]
    assert main(argv) == 128 + signal.SIGTERM
    # one line when it arrives, one at the end
    received, stopped = capsys.readouterr().err.strip().splitlines()
    assert "SIGTERM received" in received
    assert "stopped by SIGTERM at step 1" in stopped and "--resume" in stopped
    assert (run / "checkpoints" / "step_00000001" / "checkpoint.json").is_file()


def test_a_path_the_system_refuses_is_one_line_naming_it(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    assert main(["generate", "--pretrained", "synthetic", "--num", "1",
                 "--out", str(a_file / "samples")]) == 2
    err = capsys.readouterr().err.strip()
    assert (err.startswith(f"videogan: error: {a_file}") and "Not a directory" in err
            and len(err.splitlines()) == 1)


def test_a_run_config_nested_too_deep_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{\"model\": " * 50_000 + "1" + "}" * 50_000)
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "config.json: cannot read the run's config" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("key", ["model.g_width", "model.d_width", "model.z_dim"])
def test_widths_that_no_machine_could_hold_are_refused_before_allocating(key, capsys):
    assert main(["info", "--set", f"{key}=1000000000000"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{key}=1000000000000: must be an integer in [1, 4096]" in err and len(err.splitlines()) == 1


class NewUserError(VideoGANError):
    """Stands for an error class added later: main needs no change to print it as one line."""


@pytest.mark.parametrize("error", [T7Error, I3DWeightsError, NewUserError])
def test_main_prints_any_videogan_error_as_one_line(error, monkeypatch, capsys):
    def refuse(args):
        raise error("some/file.t7: the reason")

    monkeypatch.setattr(cli, "cmd_pretrained", refuse)
    assert main(["pretrained"]) == 2
    assert capsys.readouterr().err == "videogan: error: some/file.t7: the reason\n"


def test_main_lets_a_bug_through_with_its_traceback(monkeypatch):
    def bug(args):
        raise ValueError("not a user error")

    monkeypatch.setattr(cli, "cmd_pretrained", bug)
    with pytest.raises(ValueError, match="not a user error"):
        main(["pretrained"])
