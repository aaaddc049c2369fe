import pytest
import torch

from videogan.config import SyntheticConfig
from videogan.data import SyntheticScenes


def test_shapes_and_types():
    b = SyntheticScenes(frames=8, size=16, seed=0).batch(0, 5)
    assert b.video.shape == (5, 3, 8, 16, 16) and b.video.dtype == torch.uint8
    assert b.mask.shape == (5, 1, 8, 16, 16) and b.mask.dtype == torch.uint8


def test_deterministic_per_seed_and_index():
    a = SyntheticScenes(8, 16, seed=3).batch(7, 4)
    b = SyntheticScenes(8, 16, seed=3).batch(7, 4)
    assert torch.equal(a.video, b.video) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.video, SyntheticScenes(8, 16, seed=4).batch(7, 4).video)
    assert not torch.equal(a.video, SyntheticScenes(8, 16, seed=3).batch(8, 4).video)


def test_background_is_static_where_no_object_ever_passes():
    b = SyntheticScenes(16, 32, seed=1).batch(0, 8)
    never_covered = (b.mask == 0).all(dim=2, keepdim=True)  # [B, 1, 1, H, W]
    assert never_covered.float().mean() > 0.2
    still = (b.video == b.video[:, :, :1]).all(dim=1, keepdim=True)  # pixel equals its first frame
    assert still.expand_as(b.mask)[never_covered.expand_as(b.mask)].all()


def test_objects_move_and_the_masks_cover_them():
    b = SyntheticScenes(16, 32, seed=2).batch(0, 16)
    change = (b.video[:, :, 1:].float() - b.video[:, :, :-1].float()).abs().sum(1)  # [B, T-1, H, W]
    covered = (b.mask[:, 0, 1:] > 0) | (b.mask[:, 0, :-1] > 0)
    assert change.sum() > 0
    # All change is where an object is or was (up to 1/255 per channel where a soft edge rounds to mask 0).
    assert change[~covered].max() <= 3
    assert change[covered].sum() > 0.999 * change.sum()
    mask_centre = lambda t: (b.mask[:, 0, t].float().nonzero()[:, 1:].float().mean(0))  # noqa: E731
    assert (mask_centre(0) - mask_centre(15)).abs().sum() > 0.5  # objects travel
    counts = (b.mask > 0).flatten(2).any(2).float().mean()  # every clip has an object in every frame
    assert counts == 1


def test_bad_synthetic_config():
    with pytest.raises(ValueError, match="radii"):
        SyntheticScenes(8, 16, cfg=SyntheticConfig(min_radius=0.3, max_radius=0.2))
