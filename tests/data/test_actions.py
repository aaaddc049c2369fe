import pytest
import torch

from videogan.data.actions import ACTIONS, ActionsConfig, SyntheticActions, trajectory


def test_shapes_classes_and_balanced_splits():
    actions = SyntheticActions(frames=8, size=16, cfg=ActionsConfig(train_per_class=3, test_per_class=2))
    assert len(actions.classes) == 10 and actions.count("train") == 30 and actions.count("test") == 20
    clips = actions.clips("train", list(range(12)))
    assert clips.shape == (12, 3, 8, 16, 16) and clips.dtype == torch.uint8
    labels = [actions.label(i) for i in range(actions.count("train"))]
    assert all(labels.count(k) == 3 for k in range(10))


def test_a_clip_depends_on_split_and_index_alone():
    actions = SyntheticActions(8, 16)
    together = actions.clips("test", [0, 1, 2, 3])
    assert torch.equal(together[2], actions.clips("test", [2])[0])  # not on the batch it is rendered in
    assert torch.equal(together, SyntheticActions(8, 16).clips("test", [0, 1, 2, 3]))
    assert not torch.equal(together, actions.clips("train", [0, 1, 2, 3]))  # splits use different streams


def test_train_and_test_clips_never_coincide():
    actions = SyntheticActions(8, 16)
    train = actions.clips("train", list(range(40))).flatten(1)
    test = actions.clips("test", list(range(40))).flatten(1)
    assert torch.cdist(train.float(), test.float()).min() > 0


@pytest.mark.parametrize("frames", [8, 16, 32])
def test_each_class_moves_as_named_and_stays_in_frame(frames):
    for i in range(200):  # 20 draws of each class
        gen = torch.Generator().manual_seed(i)
        action, radius = ACTIONS[i % 10], 0.08 + 0.06 * (i % 7) / 6
        cx, cy, r = trajectory(action, frames, radius, gen)
        assert (cx - r >= 0).all() and (cx + r <= 1).all() and (cy - r >= 0).all() and (cy + r <= 1).all(), \
            action
        dx = cx[-1] - cx[0]
        steps_x, steps_y = cx.diff(), cy.diff()
        if action in ("right", "right-fast"):
            assert (steps_x > 0).all() and (steps_y == 0).all()
            assert 0.25 <= dx <= 0.4 + 1e-6 if action == "right" else 0.55 <= dx <= 0.7 + 1e-6
        elif action == "left":
            assert (steps_x < 0).all() and (steps_y == 0).all()
        elif action == "up":  # y points down the frame
            assert (steps_y < 0).all() and (steps_x == 0).all()
        elif action == "down":
            assert (steps_y > 0).all() and (steps_x == 0).all()
        elif action.startswith("circle"):
            angle = torch.atan2(cy - cy.mean(), cx - cx.mean())
            turning = torch.remainder(angle.diff() + torch.pi, 2 * torch.pi) - torch.pi  # wrapped angle steps
            assert (turning > 0).all() if action == "circle-cw" else (turning < 0).all()
        elif action.startswith("swing"):
            along = steps_x if action == "swing-horizontal" else steps_y
            across = steps_y if action == "swing-horizontal" else steps_x
            assert (across == 0).all() and (along > 0).any() and (along < 0).any()  # it turns back
        elif action == "pulse":
            assert (steps_x == 0).all() and (steps_y == 0).all() and r.max() / r.min() > 1.3
        assert action == "pulse" or (r == radius).all()


def test_unknown_split_or_action():
    with pytest.raises(ValueError, match="split"):
        SyntheticActions(8, 16).clips("validation", [0])
    with pytest.raises(ValueError, match="unknown action"):
        trajectory("jump", 8, 0.1, torch.Generator())
