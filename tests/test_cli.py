import json
import subprocess
import sys

import pytest

from videogan.cli import main


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
    assert main(["train", "--out", str(run), "--data", str(tmp_path / "no_videos"), "--steps", "1", "--quiet"]) == 2
    assert "no_videos: no such file or folder" in capsys.readouterr().err
    assert not run.exists()


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
