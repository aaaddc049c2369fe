import pickle
from itertools import pairwise

import cv2
import numpy as np
import pytest

from videogan.data.decode import read_frames
from videogan.data.stabilize import (
    Features,
    MotionEstimator,
    PairMotion,
    StabilizeSettings,
    background_motion,
    corner_error,
    corner_shift,
    creeping_clip,
    shaken_clip,
    stabilize_clip,
    textured_background,
)

SIZE = (160, 214)  # small enough for speed, big enough for ~100+ keypoints per frame


def gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def motions_of(frames: np.ndarray, est: MotionEstimator) -> list[PairMotion]:
    feats = [est.describe(gray(f)) for f in frames]
    return [est.pair(a, b) for a, b in pairwise(feats)]


def translation(dx: float, dy: float = 0.0) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float64)


def good(hom: np.ndarray) -> PairMotion:
    return PairMotion(hom, matches=100, inliers=100, residual=0.3, reason=None)


@pytest.fixture(scope="module")
def shaken():
    return shaken_clip(frames=10, size=SIZE, shake=6.0, rotation=1.0, zoom=0.02, objects=2, seed=0)


# Corner error per pair (px, mean over the 4 corners): the worst pair and the mean over the clip. ORB is ~10x
# less accurate than SIFT (benchmarks/RESULTS.md, "Stabilisation": per-pair worst 2.6-4.0 px there); its worst
# pair here moved from below 3 px with OpenCV 5.0 to 3.05 px with 5.1, so its bound on the worst pair is that
# measured 4 px, and the mean bound keeps the test as strict on the clip as a whole.
# LK (the default) must do no worse than SIFT on background motion: issue 31's condition for the default.
@pytest.mark.parametrize("method, max_error, mean_error", [("lk", 1.0, 0.3), ("sift", 1.0, 0.3),
                                                           ("orb", 4.0, 2.0)])
def test_shaken_clip_is_stabilised_and_motions_match_the_known_shake(shaken, method, max_error, mean_error):
    settings = StabilizeSettings(method=method)
    motions = motions_of(shaken.frames, MotionEstimator(settings))
    assert [m.reason for m in motions] == [None] * 9
    errors = [corner_error(m.homography, truth, SIZE)
              for m, truth in zip(motions, shaken.homographies, strict=True)]
    assert max(errors) < max_error and np.mean(errors) < mean_error, errors  # px, mean over the 4 corners
    clip = stabilize_clip(shaken.frames, motions, settings)
    assert clip.reason is None and clip.frames.shape == shaken.frames.shape and clip.frames.dtype == np.uint8
    assert 0 < clip.residual < settings.max_residual
    np.testing.assert_array_equal(clip.frames[0], shaken.frames[0])
    before = background_motion(shaken.frames, shaken.background)
    after = background_motion(clip.frames, shaken.background)
    assert before > 10 and after < before / 3 and after < 4, (before, after)
    # The ideal (true homographies) is the floor: interpolation alone leaves ~1 level of difference.
    ideal = stabilize_clip(shaken.frames, [good(h) for h in shaken.homographies])
    assert after < background_motion(ideal.frames, shaken.background) + (3.0 if method == "orb" else 0.5)


def test_lk_aligns_the_known_shake_no_worse_than_sift(shaken):
    after = {}
    for method in ("lk", "sift"):
        settings = StabilizeSettings(method=method)
        clip = stabilize_clip(shaken.frames, motions_of(shaken.frames, MotionEstimator(settings)), settings)
        assert clip.reason is None
        after[method] = background_motion(clip.frames, shaken.background)
    assert after["lk"] <= after["sift"], after


def test_lk_features_hold_the_frame_and_pairs_need_them(shaken):
    est = MotionEstimator(StabilizeSettings(method="lk"))
    feats = est.describe(gray(shaken.frames[0]))
    assert feats.image is not None and feats.image.shape == SIZE
    assert feats.descriptors.shape == (len(feats.points), 0)
    sift = MotionEstimator(StabilizeSettings(method="sift")).describe(gray(shaken.frames[1]))
    with pytest.raises(ValueError, match="method 'lk'"):
        est.pair(feats, sift)


def test_lk_forward_backward_check_is_an_option(shaken):
    settings = StabilizeSettings(method="lk", lk_max_fb_error=0.5)
    motions = motions_of(shaken.frames, MotionEstimator(settings))
    assert [m.reason for m in motions] == [None] * 9
    plain = motions_of(shaken.frames, MotionEstimator(StabilizeSettings(method="lk")))
    assert all(m.matches <= p.matches for m, p in zip(motions, plain, strict=True))  # it only removes tracks
    errors = [corner_error(m.homography, t, SIZE) for m, t in zip(motions, shaken.homographies, strict=True)]
    assert max(errors) < 1.0


def followed(frames: np.ndarray, est: MotionEstimator) -> tuple[list[PairMotion], list[Features]]:
    """Motions and features frame by frame through one shot, the way `prepare.video_clips` computes them."""
    feats = [est.describe(gray(frames[0]))]
    motions = []
    for f in frames[1:]:
        motion, nxt = est.follow(feats[-1], gray(f))
        motions.append(motion)
        feats.append(nxt)
    return motions, feats


def test_follow_without_corner_reuse_is_describe_then_pair(shaken):
    for settings in (StabilizeSettings(lk_keep_corners=None), StabilizeSettings(method="sift")):
        est = MotionEstimator(settings)
        motions, feats = followed(shaken.frames, est)
        for m, p in zip(motions, motions_of(shaken.frames, est), strict=True):
            np.testing.assert_array_equal(m.homography, p.homography)
        assert all(f.age == 0 for f in feats)


def test_lk_reused_corners_match_fresh_ones_on_the_known_shake(shaken):
    settings = StabilizeSettings(lk_keep_corners=0.5, lk_max_corner_age=4)  # ~390 corners: > 250 kept
    est = MotionEstimator(settings)
    motions, feats = followed(shaken.frames, est)
    assert [m.reason for m in motions] == [None] * 9
    # The anchor's corners are carried (those RANSAC kept, tracked to inside the frame), and the anchor is
    # replaced every 4 frames; a carried frame knows where its corners were in the anchor.
    assert [f.age for f in feats] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert 0.8 * motions[0].matches < len(feats[1].points) <= motions[0].matches
    assert motions[1].matches <= len(feats[1].points)
    assert feats[0].anchor_points is None and feats[3].anchor_points.shape == feats[3].points.shape
    assert feats[3].anchor_corners == len(feats[0].points) and feats[5].anchor_corners == len(feats[4].points)
    h, w = SIZE
    assert all(((f.points >= 0) & (f.points <= (w - 1, h - 1))).all() for f in feats)
    fresh = motions_of(shaken.frames, MotionEstimator(StabilizeSettings(lk_keep_corners=None)))
    errors = [corner_error(m.homography, t, SIZE) for m, t in zip(motions, shaken.homographies, strict=True)]
    assert max(errors) < 1.0 and np.mean(errors) < 0.3, errors
    assert max(corner_error(m.homography, f.homography, SIZE)
               for m, f in zip(motions, fresh, strict=True)) < 0.5
    clip = stabilize_clip(shaken.frames, motions, settings)
    plain = stabilize_clip(shaken.frames, fresh, settings)
    assert clip.reason is None
    assert background_motion(clip.frames, shaken.background) < background_motion(plain.frames,
                                                                                 shaken.background) + 0.1
    # Deterministic: a function of the shot's frames only.
    again, _ = followed(shaken.frames, MotionEstimator(settings))
    for m, a in zip(motions, again, strict=True):
        np.testing.assert_array_equal(m.homography, a.homography)


def test_lk_finds_fresh_corners_when_too_few_survive_or_a_pair_fails(shaken):
    frames = shaken.frames.copy()
    frames[4] = 128  # featureless: pairs 3->4 and 4->5 fail
    motions, feats = followed(frames, MotionEstimator(StabilizeSettings(lk_keep_corners=0.5)))
    assert [m.reason is None for m in motions] == [True] * 3 + [False, False] + [True] * 4
    assert [f.age for f in feats[:6]] == [0, 1, 2, 3, 0, 0] and feats[7].age == 2
    # Some of the anchor's corners leave the shaken frame or fail to track, so where all must survive, each
    # frame is an anchor of its own.
    _, feats = followed(shaken.frames, MotionEstimator(StabilizeSettings(lk_keep_corners=1.0)))
    assert all(f.age == 0 for f in feats)


def test_a_slow_foreground_does_not_drag_a_still_camera():
    # A block creeping at 0.7 px/frame passes RANSAC's 2 px threshold between adjacent frames: fits of
    # adjacent frames (fresh corners, or SIFT) lean towards it and the clip drifts by pixels; fits to the
    # anchor reject it once it has moved, and the still camera stays still.
    frames = creeping_clip()
    size = frames.shape[1:3]
    drift = {}
    methods = {"anchored": StabilizeSettings(), "adjacent": StabilizeSettings(lk_keep_corners=None),
               "sift": StabilizeSettings(method="sift")}
    for name, settings in methods.items():
        motions, _ = followed(frames, MotionEstimator(settings))
        assert all(m.reliable for m in motions)
        acc = np.linalg.multi_dot([m.homography for m in motions])
        drift[name] = corner_shift(acc, size) * np.hypot(*size)  # px at frame 31
    assert drift["anchored"] < 0.5 and drift["adjacent"] > 2.0 and drift["sift"] > 2.0, drift
    clip = stabilize_clip(frames, followed(frames, MotionEstimator())[0])
    (h, w), swept = size, int(np.ceil(0.7 * 31))
    still = np.ones(size, bool)
    still[h // 4 - 2: h // 4 + h // 2 + 2, w // 8 - 2: w // 8 + w // 3 + swept + 2] = False  # block's path
    last_vs_first = np.abs(clip.frames[-1].astype(float) - clip.frames[0])[still].mean()
    assert last_vs_first < 1.0  # levels of 0-255; fits of adjacent frames leave ~14 (a 5 px drift)


def test_static_camera_gives_identity_and_an_unchanged_clip():
    clip = shaken_clip(frames=8, size=SIZE, shake=0, rotation=0, zoom=0, objects=3, seed=1)
    motions = motions_of(clip.frames, MotionEstimator())
    assert all(m.reason is None for m in motions)
    assert max(corner_error(m.homography, np.eye(3), SIZE) for m in motions) < 0.3
    out = stabilize_clip(clip.frames, motions)
    assert out.reason is None
    np.testing.assert_array_equal(out.frames[0], clip.frames[0])
    assert np.abs(out.frames.astype(int) - clip.frames).mean() < 1.0
    assert background_motion(clip.frames, clip.background) < 0.5  # the objects are masked out


def test_a_blank_frame_rejects_the_clip_naming_the_pair(shaken):
    frames = shaken.frames.copy()
    frames[4] = 128  # featureless
    motions = motions_of(frames, MotionEstimator())
    assert motions[2].reason is None and motions[3].reason is not None and motions[4].reason is not None
    clip = stabilize_clip(frames, motions)
    assert clip.reason is not None and clip.reason.startswith("frames 3->4: too few")
    assert "1 more" in clip.reason  # the second bad pair (4->5) is counted too
    assert clip.frames is frames  # a rejected clip is not warped


def test_a_frame_from_another_scene_rejects_the_clip(shaken):
    frames = shaken.frames.copy()
    frames[5] = shaken_clip(frames=1, size=SIZE, seed=7).frames[0]
    motions = motions_of(frames, MotionEstimator())
    bad = [i for i, m in enumerate(motions) if m.reason is not None]
    assert bad == [4, 5]
    assert stabilize_clip(frames, motions).reason.startswith("frames 4->5: ")


def test_one_unreliable_pair_among_good_ones_never_passes():
    frames = np.full((6, 40, 50, 3), 100, np.uint8)
    motions = [good(np.eye(3)) for _ in range(5)]
    motions[3] = PairMotion(np.eye(3), 40, 12, 0.5, "too few inliers (12 < 30)")
    clip = stabilize_clip(frames, motions)
    assert clip.reason == "frames 3->4: too few inliers (12 < 30)"


def test_a_too_large_accumulated_warp_is_rejected():
    frames = np.full((10, 160, 214, 3), 100, np.uint8)
    diagonal = np.hypot(160, 214)
    ok = stabilize_clip(frames, [good(translation(2.0)) for _ in range(9)])  # 18 px: 7% of the diagonal
    assert ok.reason is None
    clip = stabilize_clip(frames, [good(translation(8.0)) for _ in range(9)])  # 72 px: 27%
    assert clip.reason == (f"accumulated warp moves a corner by {72 / diagonal:.0%} of the diagonal "
                           "at frame 9 (max 20%)")
    looser = StabilizeSettings(max_corner_shift=0.3)
    assert stabilize_clip(frames, [good(translation(8.0))] * 9, looser).reason is None


def test_a_fast_pan_is_measured_reliably_but_rejected_as_a_whole():
    pan = shaken_clip(frames=10, size=SIZE, shake=1.0, rotation=0.2, zoom=0.0, pan=(8.0, 0.0), seed=2)
    motions = motions_of(pan.frames, MotionEstimator())
    assert all(m.reason is None for m in motions)
    assert stabilize_clip(pan.frames, motions).reason.startswith("accumulated warp moves a corner by")


def test_uncovered_pixels_are_filled_from_the_previous_stabilised_frame():
    # A static world panned by 2 px per frame: stabilised, every frame must equal frame 0, including the strip
    # on the left that frame k does not show (filled from earlier frames), with no black border anywhere.
    world = textured_background(60, 120, np.random.default_rng(0))
    frames = np.stack([world[:, 2 * k: 2 * k + 100] for k in range(8)])
    clip = stabilize_clip(frames, [good(translation(2.0)) for _ in range(7)])
    assert clip.reason is None
    assert not np.array_equal(frames[7], frames[0])
    np.testing.assert_array_equal(clip.frames, np.broadcast_to(frames[0], frames.shape))
    assert clip.frames.min() >= 30  # the texture's darkest value: nothing left black


def test_features_pair_motion_and_estimator_pickle(shaken):
    est = MotionEstimator()
    feats = est.describe(gray(shaken.frames[0]))
    assert (isinstance(feats.points, np.ndarray) and feats.points.dtype == np.float32
            and feats.points.shape[1] == 2)
    assert len(feats.points) == len(feats.descriptors) > 50
    assert feats.image is not None  # the default (LK) tracks pixels
    nxt = est.describe(gray(shaken.frames[1]))
    motion = est.pair(feats, nxt)
    f2, m2, est2 = pickle.loads(pickle.dumps((feats, motion, est)))
    assert isinstance(f2, Features) and isinstance(m2, PairMotion)
    np.testing.assert_array_equal(f2.points, feats.points)
    np.testing.assert_array_equal(f2.descriptors, feats.descriptors)
    np.testing.assert_array_equal(m2.homography, motion.homography)
    assert (m2.matches, m2.inliers, m2.residual, m2.reason) == (motion.matches, motion.inliers,
                                                                motion.residual, None)
    # a fresh process rebuilds the OpenCV objects
    again = est2.pair(f2, est2.describe(gray(shaken.frames[1])))
    np.testing.assert_allclose(again.homography, motion.homography)


def test_featureless_frames_and_bad_inputs():
    for method, dim in (("lk", 0), ("sift", 128), ("orb", 32)):
        est = MotionEstimator(StabilizeSettings(method=method))
        blank = est.describe(np.zeros((64, 80), np.uint8))
        assert blank.points.shape == (0, 2) and blank.descriptors.shape == (0, dim)
        m = est.pair(blank, blank)
        assert m.reason == "too few keypoints (0)" and m.homography.shape == (3, 3) and np.isnan(m.residual)
    est = MotionEstimator()
    with pytest.raises(ValueError, match="grayscale"):
        est.describe(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="4 pair motions"):
        stabilize_clip(np.zeros((5, 8, 8, 3), np.uint8), [])
    with pytest.raises(ValueError, match="unknown stabilisation method"):
        MotionEstimator(StabilizeSettings(method="surf"))  # type: ignore[arg-type]
    single = stabilize_clip(np.zeros((1, 8, 8, 3), np.uint8), [])
    assert single.reason is None and single.residual == 0.0


def test_background_motion_and_corner_shift():
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    frames[1, :2] = 30  # top half changes 0 -> 30 -> 0
    assert background_motion(frames) == pytest.approx(15.0)
    top = np.zeros((4, 4), bool)
    top[:2] = True
    assert background_motion(frames, top) == pytest.approx(30.0)
    assert background_motion(frames, ~top) == 0.0
    assert corner_shift(translation(30.0, 40.0), (300, 400)) == pytest.approx(0.1)


def _resize_short_side(frame: np.ndarray, short: int = 256) -> np.ndarray:
    h, w = frame.shape[:2]
    s = short / min(h, w)
    return cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def test_real_static_camera_video_is_reliable_and_near_identity(sample_videos_dir):
    frames = np.stack([_resize_short_side(f) for f in read_frames(sample_videos_dir / "vtest.avi",
                                                                  max_frames=8)])
    motions = motions_of(frames, MotionEstimator())
    assert [m.reason for m in motions] == [None] * 7
    assert all(m.inliers >= 100 and m.residual < 0.6 for m in motions)
    assert max(corner_shift(m.homography, frames.shape[1:3]) for m in motions) < 0.005  # < 2 px at 256x341
    clip = stabilize_clip(frames, motions)
    assert clip.reason is None
    assert np.abs(clip.frames.astype(int) - frames).mean() < 3.0
