"""`videogan bench train`: the JSON's fields are consistent, and the FLOPs are the ones the step does;
`videogan bench precision` and benchmarks/gpu_speed.py, which runs both."""
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from videogan.bench import (
    data_throughput,
    matmul_peak_gflops,
    precision_check,
    relative_error,
    set_upsample_impl,
    train_step_speed,
)
from videogan.cli import main
from videogan.config import ConfigError
from videogan.models import Discriminator, build_generator

_GPU_SPEED = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_speed.py"
_spec = importlib.util.spec_from_file_location("gpu_speed", _GPU_SPEED)
gpu_speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_speed)


def _forward_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops()


def test_flops_are_both_nets_forward_and_backward_as_the_step_does_them(small_config):
    result = train_step_speed(small_config, steps=2, warmup=0, peak_size=64, progress=False)
    m, b = small_config.model, small_config.train.batch_size
    torch.manual_seed(0)
    G, D = build_generator(m), Discriminator(m)
    z, clip = torch.zeros(b, m.z_dim), torch.zeros(b, *small_config.clip_shape)
    fg, fd = _forward_flops(G, z), _forward_flops(D, clip)
    fg0 = _forward_flops(G.foreground_stream.net[0], z[:, :, None, None, None]) + _forward_flops(
        G.background_stream.net[0], z[:, :, None, None])  # the layers that see z, which needs no gradient
    # D's first layer: no input gradient in D's step (real, detached fake)
    fd0 = _forward_flops(D.features[0], clip)
    assert fg > 0 and fd > 0
    # Every conv's backward costs its forward once per gradient it computes (input, weight):
    # G forward; D forward on real and fake, backward (weights, and inputs below the first layer);
    # the G step: D forward and backward to its input only (its weights are frozen there), then G's backward
    # (weights, and inputs above the z layers).
    expected = fg + 2 * fd + 2 * (2 * fd - fd0) + 2 * fd + (2 * fg - fg0)
    assert result["flops_per_step"] == expected


def test_json_fields_are_consistent(small_config):
    r = train_step_speed(small_config, steps=3, warmup=1, peak_size=64, progress=False)
    assert r["flops_per_step"] > 0 and r["step_seconds"] > 0 and r["matmul_peak_gflops"] > 0
    assert r["step_seconds_min"] <= r["step_seconds"]  # (fields rounded to 4 significant digits)
    assert r["achieved_gflops"] == pytest.approx(r["flops_per_step"] / r["step_seconds"] / 1e9, rel=2e-3)
    assert r["fraction_of_peak"] == pytest.approx(r["achieved_gflops"] / r["matmul_peak_gflops"], rel=2e-3)
    assert r["hours_per_100k_steps"] == pytest.approx(r["step_seconds"] * 100_000 / 3600, rel=2e-3)
    assert r["clips_per_second"] == pytest.approx(small_config.train.batch_size / r["step_seconds"], rel=2e-3)
    assert (r["batch_size"], r["steps_timed"], r["warmup"]) == (small_config.train.batch_size, 3, 1)
    assert (r["device"] == "cpu" and r["threads"] == torch.get_num_threads()
            and r["torch"] == torch.__version__)
    assert r["cpu"]


def test_with_lazy_r1_each_figure_is_the_average_over_an_interval(small_config):
    plain = train_step_speed(small_config, steps=1, warmup=0, peak_size=64, progress=False)
    small_config.train.r1_weight, small_config.train.r1_every = 1.0, 2
    lazy = train_step_speed(small_config, steps=1, warmup=0, peak_size=64, progress=False)
    assert (plain["r1_every"], lazy["r1_every"], lazy["r1_weight"]) == (1, 2, 1.0)
    # One step of two pays for the penalty's double backward: the average lies between the plain step and
    # twice it.
    assert plain["flops_per_step"] < lazy["flops_per_step"] < 2 * plain["flops_per_step"]


def test_relative_error_is_the_norm_of_the_difference_over_the_reference():
    assert relative_error(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 4.0])) == 0
    assert relative_error(torch.tensor([3.0, 4.5]), torch.tensor([3.0, 4.0])) == pytest.approx(0.1)
    assert relative_error(torch.tensor([float("nan"), 4.0]), torch.tensor([3.0, 4.0])) is None


def test_precision_check_measures_bf16_against_fp32(small_config):
    r = precision_check(small_config)
    errors = r["relative_error_vs_fp32"]
    names = {"video", "real_logits", "fake_logits", "d_grad", "g_grad"}
    assert set(errors) == {"tf32", "bf16"} and set(errors["tf32"]) == set(errors["bf16"]) == names
    assert all(e == 0 for e in errors["tf32"].values())  # TF32 is a CUDA setting: fp32 here
    # bf16 rounds (8 significant bits) but computes the same thing: small errors, none zero
    assert all(0 < errors["bf16"][n] < 0.05 for n in ("video", "real_logits", "fake_logits"))
    assert all(0 < errors["bf16"][n] < 0.3 for n in ("d_grad", "g_grad"))
    assert (r["batch_size"], r["device"]) == (small_config.train.batch_size, "cpu")
    assert precision_check(small_config)["relative_error_vs_fp32"] == errors  # seeded: the same again


def test_precision_check_refuses_the_image_to_video_model(small_config):
    small_config.model.kind = "conditional"
    with pytest.raises(ConfigError, match="unconditional models"):
        precision_check(small_config)


def test_failed_checks_names_what_is_over_its_tolerance_or_not_finite():
    errors = {"tf32": {"video": 0.001, "d_grad": 0.01},
              "bf16": {"video": 0.08, "d_grad": 0.2, "g_grad": None}}
    assert gpu_speed.failed_checks(errors, output_tolerance=0.05, gradient_tolerance=0.3) == [
        "bf16/video", "bf16/g_grad"]
    assert gpu_speed.failed_checks(errors, output_tolerance=0.1, gradient_tolerance=0.1) == [
        "bf16/d_grad", "bf16/g_grad"]


def test_matmul_peak_is_measured():
    assert 0 < matmul_peak_gflops("cpu", n=64, repeats=1) < 1e5
    assert 0 < matmul_peak_gflops("cpu", n=64, repeats=1, dtype=torch.bfloat16) < 1e5


def test_bf16_runs_report_the_bf16_peak_and_their_options(small_config):
    r = train_step_speed(small_config, steps=1, warmup=0, peak_size=64, progress=False)
    assert ((r["precision"], r["compile"], r["channels_last"]) == ("fp32", False, False)
            and "fraction_of_bf16_peak" not in r)
    small_config.train.precision = "bf16"
    r = train_step_speed(small_config, steps=1, warmup=0, peak_size=64, progress=False)
    assert r["precision"] == "bf16" and r["bf16_matmul_peak_gflops"] > 0
    assert r["fraction_of_bf16_peak"] == pytest.approx(r["achieved_gflops"] / r["bf16_matmul_peak_gflops"],
                                                       rel=2e-3)


def test_cli_prints_the_json(capsys):
    sets = ["model.frames=4", "model.size=8", "model.g_width=8", "model.d_width=4", "model.z_dim=8",
            "train.num_threads=1"]
    code = main(["bench", "train", "--preset", "tiny", "--batch-size", "2", "--steps", "1", "--warmup", "0",
                 "--peak-size", "64", "--device", "cpu", "--quiet", *[a for s in sets for a in ("--set", s)]])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["preset"] == "tiny" and r["overrides"] == sets and r["batch_size"] == 2
            and r["flops_per_step"] > 0)
    assert r["upsample"] == "auto"


def test_cli_prints_the_precision_check(capsys):
    sets = ["model.frames=4", "model.size=8", "model.g_width=8", "model.d_width=4", "model.z_dim=8"]
    code = main(["bench", "precision", "--preset", "tiny", "--batch-size", "2", "--device", "cpu",
                 *[a for s in sets for a in ("--set", s)]])
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert r["preset"] == "tiny" and r["batch_size"] == 2
    assert set(r["relative_error_vs_fp32"]) == {"tf32", "bf16"}


def test_upsample_kernel_changes_the_time_not_the_flops(small_config):
    # The GEMM path and PyTorch's kernel do the same multiply-adds: the counted FLOPs agree.
    gemm = train_step_speed(small_config, steps=1, warmup=0, peak_size=64, upsample="gemm", progress=False)
    stock = train_step_speed(small_config, steps=1, warmup=0, peak_size=64, upsample="stock", progress=False)
    assert (gemm["upsample"], stock["upsample"]) == ("gemm", "stock")
    assert gemm["flops_per_step"] == stock["flops_per_step"]
    small_config.train.channels_last = True  # the training options apply as in train(): a layout, same FLOPs
    assert (train_step_speed(small_config, steps=1, warmup=0, peak_size=64, progress=False)["flops_per_step"]
            == stock["flops_per_step"])


def test_cli_rejects_a_bad_key(capsys):
    assert main(["bench", "train", "--preset", "tiny", "--set", "model.nope=1", "--quiet"]) == 2
    assert "model.nope" in capsys.readouterr().err


def test_cli_refuses_out_of_range_values_in_one_line(capsys):
    assert main(["bench", "train", "--preset", "tiny", "--set", "train.lr_g=-1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.lr_g=-1.0: must be a finite number > 0" in err and len(err.splitlines()) == 1
    for argv in (["train", "--warmup", "-1"], ["data", "shards/", "--workers", "-1"]):
        with pytest.raises(SystemExit) as e:
            main(["bench", *argv])
        assert e.value.code == 2 and "expected 0 or a positive integer, got '-1'" in capsys.readouterr().err


@pytest.mark.parametrize("train_changes,options,message", [
    ({"ema_decay": 2.0}, {}, "train.ema_decay=2.0: must be a finite number in [0, 1)"),
    ({"num_threads": -2}, {}, "train.num_threads=-2: must be an integer >= 0"),
    ({}, {"steps": 0}, "steps=0: must be an integer >= 1"),
    ({}, {"warmup": -1}, "warmup=-1: must be an integer >= 0"),
    ({}, {"upsample": "fast"}, "upsample='fast': must be auto, gemm or stock"),
])
def test_train_step_speed_refuses_what_train_refuses(small_config, train_changes, options, message):
    for name, value in train_changes.items():
        setattr(small_config.train, name, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        train_step_speed(small_config, **{"steps": 1, "warmup": 0, "peak_size": 64, **options},
                         progress=False)


def test_data_throughput_refuses_bad_settings_before_opening_the_data(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("data.workers=-1: must be an integer >= 0")):
        data_throughput(str(tmp_path / "missing"), frames=4, size=8, workers=-1)
    with pytest.raises(ConfigError, match=re.escape("batch_size=0: must be an integer >= 1")):
        data_throughput(str(tmp_path / "missing"), frames=4, size=8, batch_size=0)


def test_set_upsample_impl_sets_every_transposed_convolution(small_config):
    from videogan.ops.upsample import FastConvTranspose3d

    G = build_generator(small_config.model)
    layers = set_upsample_impl(G, "stock")
    expected = [name for name, m in G.named_modules() if isinstance(m, FastConvTranspose3d)]
    assert layers and [name for name, _ in layers] == expected
    assert all(m.impl == "stock" for _, m in layers)
    assert all(m.impl == "gemm" for _, m in set_upsample_impl(G, "gemm"))


def test_gpu_speed_script_writes_a_row_per_option_set(tmp_path):
    # benchmarks/gpu_speed.py, the prepared GPU measurement, dry-run on the CPU at the smallest sizes.
    done = subprocess.run([sys.executable, str(_GPU_SPEED), "--device", "cpu", "--preset", "tiny",
                           "--batch-size", "2", "--steps", "1", "--warmup", "0", "--peak-size", "64",
                           "--sets", "fp32,tf32", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    check, *rows = [json.loads(line) for line in (tmp_path / "gpu_speed.jsonl").read_text().splitlines()]
    assert check["set"] == "precision check" and check["failed"] == [] and check["batch_size"] == 2
    assert check["relative_error_vs_fp32"]["bf16"]["video"] > 0
    assert [r["set"] for r in rows] == ["fp32", "tf32"] and [r["tf32"] for r in rows] == [False, True]
    assert rows[0]["flops_per_step"] == rows[1]["flops_per_step"] > 0 and rows[0]["batch_size"] == 2
    table = (tmp_path / "gpu_speed.md").read_text()
    assert table.count("\n| fp32 | ") == 1 and table.count("\n| tf32 | ") == 2  # a speed and a precision row
    assert "\n| tf32 | 0 | 0 | 0 | 0 | 0 |" in table and table.count("\n| bf16 | ") == 1
    assert "all within tolerance" in table


def test_gpu_speed_script_refuses_an_unknown_set(tmp_path):
    done = subprocess.run([sys.executable, str(_GPU_SPEED), "--sets", "fp32,fp8", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "unknown fp8" in done.stderr
