from itertools import islice

import numpy as np
import pytest

from videogan.data.decode import iter_frames
from videogan.data.shots import CutDetector, find_cuts
from videogan.data.stabilize import shaken_clip

SIZE = (144, 192)


def test_a_hard_cut_between_two_scenes_is_found_at_the_right_index():
    a = shaken_clip(frames=12, size=SIZE, shake=4.0, seed=1).frames
    b = shaken_clip(frames=10, size=SIZE, shake=4.0, seed=2).frames
    assert find_cuts(np.concatenate([a, b])) == [12]
    assert find_cuts(np.concatenate([a, b[:, :, :, ::-1], a])) == [12, 22]  # another palette, and back


def test_first_frame_is_never_a_cut_and_scores_are_exposed():
    det = CutDetector()
    frames = shaken_clip(frames=3, size=SIZE, seed=3).frames
    assert det.update(frames[0]) is False and det.last_score == 0.0
    assert det.update(frames[1]) is False and 0 < det.last_score < det.threshold
    assert det.update(np.zeros_like(frames[2])) is True  # cut to black
    det.reset()
    assert det.update(frames[2]) is False
    assert find_cuts([]) == []
    with pytest.raises(ValueError, match="RGB"):
        det.update(np.zeros((10, 10), np.uint8))


@pytest.mark.parametrize("seed", [4, 5])
@pytest.mark.parametrize("kind", ["shake", "pan", "objects"])
def test_camera_motion_and_moving_objects_are_not_cuts(kind, seed):
    # "shake": every frame independently jittered by up to 10 px, 2 degrees and 3% zoom (violent hand-held).
    args = {"shake": dict(shake=10.0, rotation=2.0, zoom=0.03),
            "pan": dict(shake=3.0, pan=(7.0, 3.0)),
            "objects": dict(shake=0.0, rotation=0.0, zoom=0.0, objects=6)}[kind]
    clip = shaken_clip(frames=30, size=SIZE, seed=seed, **args).frames
    assert find_cuts(clip) == []


def test_a_slow_brightness_fade_is_not_a_cut():
    frames = shaken_clip(frames=40, size=SIZE, shake=2.0, seed=5).frames.astype(np.float32)
    gains = np.linspace(1.0, 0.2, len(frames))  # down to 20% brightness over 40 frames
    faded = [np.clip(f * g, 0, 255).astype(np.uint8) for f, g in zip(frames, gains, strict=True)]
    assert find_cuts(faded) == []
    assert find_cuts(faded[::-1]) == []  # fade in


def test_real_videos(sample_videos_dir):
    # Megamind.avi opens on a black frame, then has three hard cuts in its first 230 frames (scores 38-93; no
    # other frame scores above 4); vtest.avi is one static shot.
    megamind = iter_frames(sample_videos_dir / "Megamind.avi")
    assert find_cuts(islice(megamind, 230)) == [1, 98, 154, 200]
    vtest = iter_frames(sample_videos_dir / "vtest.avi")
    assert find_cuts(islice(vtest, 150)) == []
