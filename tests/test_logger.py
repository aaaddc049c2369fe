import pytest
import torch

from videogan.logger import IntervalMeter


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
