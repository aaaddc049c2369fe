"""The measures of generated clips (metrics/measures.py) on clips whose answer is known."""
import pytest
import torch

from videogan.metrics.measures import mask_statistics, motion, motion_spread, object_flow_spread, still_share
from videogan.models import GeneratorOutput


def test_motion_and_motion_spread_on_known_videos():
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    frozen = image[:, :, None].expand(-1, -1, 4, -1, -1)  # the input repeated: [2, 3, 4, 8, 8]
    assert torch.equal(motion(frozen), torch.zeros(2))
    shifted = frozen.clone()
    shifted[:, :, 1:] += 0.5
    assert motion(shifted).tolist() == pytest.approx([0.5, 0.5])
    futures = torch.stack([frozen, shifted, shifted + 1.0])  # [K=3, B=2, ...]: differences 0.5, 0.5 and 0
    assert motion_spread(futures).tolist() == pytest.approx([1 / 3, 1 / 3])
    same_motion = torch.stack([shifted, shifted + 1.0])
    assert motion_spread(same_motion).tolist() == pytest.approx([0, 0], abs=1e-6)


def test_still_share_counts_the_pixels_that_stay_put():
    two_levels = 2 / 127.5
    still = torch.zeros(1, 3, 3, 16, 16)  # a flat background in [-1, 1]
    assert still_share(still, two_levels).tolist() == [1.0]
    moving = still.clone()
    for t in range(3):  # a 4x4 square moving 4 pixels right per frame
        moving[:, :, t, :4, 4 * t : 4 * t + 4] = 1.0
    # columns 0-7 differ from frame 0 in frame 1, columns 0-3 and 8-11 in frame 2: 4 x 12 pixels move
    assert still_share(moving, two_levels).tolist() == [(256 - 48) / 256]
    flicker = moving.clone()
    flicker[:, :, 1:] += 1 / 127.5  # 1 level everywhere: below the threshold, still counts as still
    assert still_share(flicker, two_levels).tolist() == [(256 - 48) / 256]
    drift = still.clone()
    drift[:, :, 1:] += 3 / 127.5  # the whole frame moves by 3 levels
    assert still_share(torch.cat([drift, still]), two_levels).tolist() == [0.0, 1.0]


def test_object_flow_spread_is_zero_for_rigid_objects_and_measures_stretching():
    objects = torch.zeros(1, 8, 8, dtype=torch.long)
    objects[0, 3:5, 3:5] = 1  # a 2x2 object
    flow = torch.zeros(1, 2, 2, 8, 8)
    flow[:, 0, 1] = 2 / 8  # frame 1: the whole frame shifted by one pixel (x): rigid
    flow[:, 1, 1] = -4 / 8  # and by two pixels in y
    assert object_flow_spread(flow, objects).item() == 0
    flow[:, :, 1] = 0
    # one pixel beside the object draws from it one pixel away: the object stretches
    flow[0, 0, 1, 3, 2] = 2 / 8
    # its pixels in frame 1: the 4 still ones and that one; median flow 0, so the spread is 1 pixel / 5
    assert object_flow_spread(flow, objects).item() == pytest.approx(0.2)
    objects[0, 0, 0] = 2  # a second object that stays still: its spread is 0, the mean over the two 0.1
    assert object_flow_spread(flow, objects).item() == pytest.approx(0.1)
    assert object_flow_spread(flow, torch.zeros_like(objects)).isnan().all()  # no objects: undefined


def test_mask_statistics():
    video = torch.zeros(1, 3, 3, 4, 4)
    video[:, :, 1:, 0, 0] = 1.0  # change only at pixel (0, 0)
    mask = torch.zeros(1, 1, 3, 4, 4)
    mask[:, :, :, 0, 0] = 1.0
    out = GeneratorOutput(video=video, foreground=video, mask=mask, background=video[:, :, 0])
    stats = mask_statistics(out)
    assert stats["mask_mean"] == pytest.approx(1 / 16) and stats["motion_in_mask"] == pytest.approx(1.0)
    out.mask = 1 - mask
    assert mask_statistics(out)["motion_in_mask"] == pytest.approx(0.0)
