import json

import pytest
import torch

from videogan.training.logger import IntervalMeter, truncate_metrics


def test_each_value_is_averaged_over_the_steps_that_measured_it():
    meter = IntervalMeter(clips_per_step=4)
    for step in range(4):
        values = {"d_loss": torch.tensor(float(step))}
        if step % 2 == 0:  # as the lazy R1 penalty: measured on steps 0 and 2 only
            values["r1"] = torch.tensor(10.0 + step)
        meter.add(values)
    means = meter.flush()
    assert means["d_loss"] == pytest.approx(1.5)  # (0 + 1 + 2 + 3) / 4
    assert means["r1"] == pytest.approx(11.0)  # (10 + 12) / 2, not / 4
    assert means["clips_per_second"] > 0 and means["seconds_per_step"] > 0
    meter.add({"d_loss": torch.tensor(5.0)})
    after = meter.flush()
    assert after["d_loss"] == pytest.approx(5.0) and "r1" not in after  # a flush starts a new interval


def _meter_after(values, state=None):
    meter = IntervalMeter(clips_per_step=4)
    if state is not None:
        meter.resume(json.loads(json.dumps(state)))  # through checkpoint.json, as on resume
    for value in values:
        meter.add({"d_loss": torch.tensor(value), **({"r1": torch.tensor(2 * value)} if value > 0.5 else {})})
    return meter


def test_an_interval_carried_through_a_checkpoint_gives_the_uninterrupted_means():
    losses = [0.1, 0.7, 0.3, 0.9]
    whole = _meter_after(losses).flush()
    first = _meter_after(losses[:3])
    open_row = first.flush(restart=False)  # a run's last row between two log_every steps
    assert open_row["d_loss"] == pytest.approx(sum(losses[:3]) / 3)
    resumed = _meter_after(losses[3:], first.state()).flush()
    for key in ("d_loss", "r1"):
        assert resumed[key] == whole[key]  # bit for bit
    assert first.state()["steps"] == 3 and [[name, count] for name, _, count in first.state()["values"]] == [
        ["d_loss", 3], ["r1", 1]]


def test_resume_drops_later_rows_and_the_reopened_one_but_keeps_scores(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 4, "d_loss": 1.0}, {"step": 6, "d_loss": 2.0}, {"step": 6, "fvd": 900.0},
            {"step": 8, "d_loss": 3.0}]
    cut_by_a_crash = '{"step": 9, "d_lo'
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + cut_by_a_crash)
    truncate_metrics(path, 6)
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows[:3]
    truncate_metrics(path, 6, reopened={"d_loss", "r1"})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [rows[0], rows[2]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]
