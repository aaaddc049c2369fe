"""diffaugment.py: DiffAugment of D's inputs, per clip and the same in every frame, differentiable,
reproducible."""
import json

import pytest
import torch

from videogan.cli import main
from videogan.config import ConfigError
from videogan.training.diffaugment import ClipAugment, augment_generator, color, cutout, translation
from videogan.training.loop import train


def _clips(b=6, t=3, size=16, seed=0):
    return torch.rand(b, 3, t, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _still(b=6, t=3, size=16):
    frame = _clips(b, 1, size)
    return frame.expand(-1, -1, t, -1, -1).contiguous()


def test_parse_keeps_diffaugments_order_and_rejects_unknown_names():
    assert ClipAugment.parse("") is None and ClipAugment.parse(" , ") is None
    assert ClipAugment.parse("cutout, color").transforms == ("color", "cutout")
    with pytest.raises(ConfigError, match="unknown flip; choose from color, translation, cutout"):
        ClipAugment.parse("color,flip")


def test_translation_shifts_each_clip_as_a_whole_with_zero_fill():
    x = _clips(b=8, size=16)
    y = translation(x, torch.Generator().manual_seed(1))
    shifts = []
    for xi, yi in zip(x, y, strict=True):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(yi, torch.roll(xi, (dy, dx), dims=(2, 3)) * _inside(16, dy, dx))]
        assert len(found) == 1  # one shift of at most 16 / 8 = 2 pixels, the same in every frame and channel
        shifts.append(found[0])
    assert len(set(shifts)) > 1  # drawn per clip


def _inside(size, dy, dx):
    """1 where a pixel shifted by (dy, dx) came from inside the frame, 0 where the zero padding shows."""
    keep = torch.zeros(size, size)
    keep[max(dy, 0): size + min(dy, 0), max(dx, 0): size + min(dx, 0)] = 1
    return keep


def test_cutout_zeroes_one_square_at_most_half_the_side_in_every_frame():
    x = _clips(b=8, size=16) + 3  # no zeros of its own
    y = cutout(x, torch.Generator().manual_seed(2))
    for xi, yi in zip(x, y, strict=True):
        cut = yi == 0
        assert torch.equal(cut, cut[:1, :1].expand_as(cut))  # the same pixels in every channel and frame
        rows, cols = cut[0, 0].any(1).nonzero().flatten(), cut[0, 0].any(0).nonzero().flatten()
        # a rectangle
        assert 0 < len(rows) <= 8 and 0 < len(cols) <= 8 and cut[0, 0].sum() == len(rows) * len(cols)
        assert rows.diff().eq(1).all() and cols.diff().eq(1).all()
        assert torch.equal(yi[~cut], xi[~cut])  # untouched elsewhere


@pytest.mark.parametrize("transform", [color, translation, cutout])
def test_no_transform_adds_motion(transform):
    # Drawn per clip and applied to every frame alike: a still clip stays still, so D still sees only real
    # motion.
    y = transform(_still(), torch.Generator().manual_seed(3))
    assert torch.allclose(y, y[:, :, :1].expand_as(y), atol=1e-6)
    assert not torch.allclose(y, _still(), atol=1e-3)  # but it did change the clips


def test_color_is_an_affine_map_per_clip():
    x = _clips(b=4)
    y = color(x, torch.Generator().manual_seed(4))
    # brightness, saturation and contrast: y = a x + (b grey + c), linear in x
    for xi, yi in zip(x, y, strict=True):
        a = ((yi - yi.mean()) * (xi - xi.mean())).sum() / ((xi - xi.mean()) ** 2).sum()
        assert a > 0
    assert y.shape == x.shape


def test_gradients_flow_through_every_transform():
    x = _clips().requires_grad_(True)
    (ClipAugment.parse("color,translation,cutout")(x, torch.Generator().manual_seed(5))
     .square().sum().backward())
    assert x.grad is not None and x.grad.abs().sum() > 0
    x.grad = None
    y = cutout(x, torch.Generator().manual_seed(5))
    y.sum().backward()
    assert torch.equal(x.grad == 0, y == 0)  # the cut-out pixels, and only they, get no gradient


def test_draws_are_a_function_of_seed_rank_and_step():
    policy, x = ClipAugment.parse("color,translation,cutout"), _clips()
    a = policy(x, augment_generator(0, 0, 7))
    assert torch.equal(a, policy(x, augment_generator(0, 0, 7)))
    for other in (augment_generator(1, 0, 7), augment_generator(0, 1, 7), augment_generator(0, 0, 8)):
        assert not torch.equal(a, policy(x, other))


def test_training_with_augmentation_changes_what_d_sees(tmp_path, small_config):
    small_config.train.steps = 2
    train(small_config, tmp_path / "plain", progress=False)
    small_config.train.augment = "translation,cutout"
    train(small_config, tmp_path / "augmented", progress=False)

    def read(run):
        return [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    plain, augmented = read("plain"), read("augmented")
    assert plain[0]["d_loss"] != augmented[0]["d_loss"]
    assert (json.loads((tmp_path / "augmented" / "config.json").read_text())["train"]["augment"]
            == "translation,cutout")


def test_cli_names_a_bad_policy_in_one_line(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "run"), "--steps", "1", "--set", "train.augment=colour"])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert "train.augment: unknown colour" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before anything was written
