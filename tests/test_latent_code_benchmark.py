"""benchmarks/latent_code.py: a z_modes generator's clips per mode and what moves them."""
import importlib.util
import json
import sys
from pathlib import Path

import torch

from videogan.models import with_discrete_code
from videogan.training.loop import train

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "latent_code.py"
_spec = importlib.util.spec_from_file_location("latent_code", _SCRIPT)
latent_code = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(latent_code)


def test_at_mode_sets_the_code_and_keeps_the_rest():
    z = torch.randn(5, 8)
    for mode in range(4):
        coded = with_discrete_code(latent_code.at_mode(z, 4, mode), 4)
        assert torch.equal(coded[:, :4].argmax(dim=1), torch.full((5,), mode))
        assert torch.equal(coded[:, 4:], z[:, 4:])


def test_it_measures_a_trained_run_and_draws_one_row_per_mode(small_config, tmp_path, monkeypatch, capsys):
    small_config.model.z_modes = 3
    train(small_config, tmp_path / "run", progress=False)
    monkeypatch.setattr(sys, "argv", ["latent_code.py", str(tmp_path / "run"), "--num", "4",
                                      "--out", str(tmp_path / "modes")])
    latent_code.main()
    result = json.loads(capsys.readouterr().out)
    assert result["modes"] == 3 and result["step"] == 4
    assert len(result["per_mode_code"]) == len(result["per_mode_rest"]) == 3
    assert result["mean_abs_change_code"] > 0 and result["mean_abs_change_rest"] > 0  # G reads both parts
    assert (tmp_path / "modes" / "modes.gif").is_file() and (tmp_path / "modes" / "modes.png").is_file()
