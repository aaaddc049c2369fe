import random

import numpy as np
import pytest
import torch

from videogan.data.augment import coin, maybe_hflip, randint, resize_clip, temporal_window, window_start


def frames_clip(t: int = 10, s: int = 4) -> torch.Tensor:
    """[3, t, s, s] with frame f filled with f."""
    return torch.arange(t, dtype=torch.uint8).view(1, t, 1, 1).expand(3, t, s, s).contiguous()


@pytest.mark.parametrize("rng", [torch.Generator().manual_seed(0), np.random.default_rng(0),
                                 random.Random(0)])
def test_generators_supported(rng):
    draws = {randint(rng, 5) for _ in range(200)}
    assert draws == set(range(5))
    flips = sum(coin(rng) for _ in range(400))
    assert 140 < flips < 260


def test_temporal_window_first_and_random():
    clip = frames_clip()
    first = temporal_window(clip, 4)
    assert first[0, :, 0, 0].tolist() == [0, 1, 2, 3] and first.data_ptr() == clip.data_ptr()  # a view
    gen = torch.Generator().manual_seed(1)
    starts = {int(temporal_window(clip, 4, gen, random=True)[0, 0, 0, 0]) for _ in range(300)}
    assert starts == set(range(7))
    assert temporal_window(clip, 10, gen, random=True).shape[1] == 10
    with pytest.raises(ValueError):
        temporal_window(clip, 11)
    with pytest.raises(ValueError):
        window_start(10, 4, None, random=True)


def test_same_seed_same_draws():
    a = [window_start(20, 5, torch.Generator().manual_seed(3), True) for _ in range(3)]
    b = [window_start(20, 5, torch.Generator().manual_seed(3), True) for _ in range(3)]
    assert a == b


def test_maybe_hflip():
    clip = torch.arange(2 * 3 * 2 * 2, dtype=torch.uint8).view(3, 2, 2, 2)
    gen = torch.Generator().manual_seed(0)
    outs = [maybe_hflip(clip, gen) for _ in range(100)]
    flipped = [o for o in outs if not torch.equal(o, clip)]
    assert 25 < len(flipped) < 75 and all(torch.equal(o, clip.flip(-1)) for o in flipped)
    assert torch.equal(maybe_hflip(clip, gen, p=0.0), clip)


def test_resize_area_and_bilinear():
    clip = torch.randint(0, 256, (3, 2, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = resize_clip(clip, 4)
    expected = clip.float().view(3, 2, 4, 2, 4, 2).mean((3, 5)).round().to(torch.uint8)
    assert out.shape == (3, 2, 4, 4) and out.is_contiguous() and torch.equal(out, expected)
    assert resize_clip(clip, 8) is clip
    small = torch.tensor([[0, 90], [180, 255]], dtype=torch.uint8).expand(3, 1, 2, 2)
    up = resize_clip(small, 3, mode="bilinear")  # align_corners=True: corners kept, midpoints averaged
    assert up[0, 0].tolist() == [[0, 45, 90], [90, 131, 172], [180, 218, 255]]
    with pytest.raises(ValueError):
        resize_clip(clip, 4, mode="nearest")
