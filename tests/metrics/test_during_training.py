"""FVD during training (metrics/during_training.py), with the stand-in I3D of conftest.py."""
import json

import numpy as np

from videogan.training.loop import train


def test_training_logs_fvd_and_keeps_the_best_checkpoint(stand_in, small_config, tmp_path):
    small_config.model.frames = 4
    small_config.train.steps, small_config.train.eval_every, small_config.train.eval_num = 6, 2, 8
    small_config.train.checkpoint_every, small_config.train.keep_checkpoints = 2, 1
    train(small_config, tmp_path / "run", progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scores = {e["step"]: e["fvd8_4f"] for e in logged if "fvd8_4f" in e}
    assert sorted(scores) == [2, 4, 6] and all(np.isfinite(v) for v in scores.values())
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["value"] == min(scores.values()) and scores[best["step"]] == best["value"]
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert f"step_{best['step']:08d}" in kept and "step_00000006" in kept  # the best survives rotation


def test_a_32_frame_model_is_scored_on_its_first_16_frames_during_training(stand_in, small_config, tmp_path):
    """The protocol during training is the comparable 16 frames, whatever the model's length."""
    small_config.model.frames = 32
    small_config.train.steps, small_config.train.eval_every, small_config.train.eval_num = 2, 2, 6
    train(small_config, tmp_path / "run", progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    scored = [e for e in logged if "fvd6_16f" in e]
    assert [e["step"] for e in scored] == [2] and np.isfinite(scored[0]["fvd6_16f"])
    assert np.isfinite(scored[0]["kvd6_16f"])
