"""Camera stabilisation of short clips, so the background stays still (numpy + OpenCV only).

The paper stabilised its training videos this way (Vondrick et al. 2016, sec. 4): SIFT keypoints, a RANSAC
homography between adjacent frames, frames warped to minimise background motion, pixels the warp leaves empty
filled from the previous frames, and segments with too large a re-projection error left out. This module does
the same in three pure steps, so a streaming pipeline computes each pair's motion once and reuses it in every
overlapping clip:

    est = MotionEstimator()
    feats = [est.describe(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)) for f in frames]  # once per frame
    motions = [est.pair(a, b) for a, b in zip(feats, feats[1:])]                 # once per pair
    clip = stabilize_clip(frames[s:s + T], motions[s:s + T - 1])                 # per clip

or, frame by frame through a shot (which lets LK track an anchor frame's corners on, `lk_keep_corners`):

    feats = est.describe(gray_0)                 # a shot's first frame
    motion, feats = est.follow(feats, gray_t)    # each later frame: the pair (t-1, t) and t's features

The default follows the background differently from the paper, faster and more accurately (issue 31): an
anchor frame's corners tracked on through the shot by pyramidal Lucas-Kanade while enough of them stay on the
background, each frame fitted to the anchor rather than to its neighbour, so that a slowly moving foreground
does not drag a still camera; `StabilizeSettings(method="sift")` is the paper's.

Units: pixel thresholds are at the "working resolution", the frame size given to `describe` (the settings'
defaults are tuned for a short side of 256 px; scale them with the resolution). Fractions are 0-1.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import cv2
import numpy as np


@dataclass(frozen=True)
class StabilizeSettings:
    # Pyramidal Lucas-Kanade (issue 31): on the known shake it aligns as well as SIFT (the paper's method), on
    # the sample videos it dropped no clip where SIFT dropped 4, and it is ~6x faster; SIFT's homographies
    # drift far less than ORB's, which wrongly rejected real clips (benchmarks/RESULTS.md, "Stabilisation").
    method: Literal["lk", "orb", "sift"] = "lk"
    max_features: int = 500  # per frame: SIFT aligned about as well with 1000, at up to twice the cost
    # (brute-force matching is quadratic); for "lk", the corners tracked from each frame into the next
    sift_contrast: float = 0.02  # SIFT's contrastThreshold (OpenCV default 0.04): with the default, dark,
    # flat shots of Megamind.avi had too few keypoints for reliable pairs; 0.02 finds enough, same speed
    ratio: float = 0.75  # Lowe's ratio test: best match must be clearly better than the second best
    # px: inlier reprojection distance for RANSAC, a few times the fits' RMS residual
    ransac_threshold: float = 2.0
    min_inliers: int = 30  # fewer supporting points and a homography (8 DoF) is a guess, not a measurement
    min_inlier_ratio: float = 0.25  # inliers / matches: below this the "background" is a minority of matches
    max_residual: float = 1.5  # px, RMS of the inliers (the paper's re-projection error check): the sample
    # videos' pairs gave medians of 0.2-0.7 px with SIFT
    # "lk" (pyramidal Lucas-Kanade): Shi-Tomasi corners tracked into the next frame instead of matched
    lk_quality: float = 0.001  # goodFeaturesToTrack's qualityLevel: corners down to 0.1% of the strongest.
    # With 1%, corners crowded onto high-contrast (often moving) objects and box.mp4's hand-held warps drifted
    # ~1.5x further than SIFT's; 0.1% spreads them over the background
    lk_min_distance: float = 7.0  # px between corners, so they spread over the frame instead of one patch
    lk_window: int = 9  # px, LK's patch: on the known shake, 9 aligned better than 15 or 21 (a small patch
    # is barely deformed by rotation and zoom) and is ~3x cheaper
    lk_levels: int = 3  # pyramid levels above the frame: 8x coarser at the top, tracks ~100 px a frame
    # px, or inf = off: a track must come back within this of its start when LK is run backwards. Off by
    # default: it doubles the tracking cost, and RANSAC already rejects points tracked onto something else
    # (the sample videos dropped no clip and the known shake aligned no worse without it)
    lk_max_fb_error: float = float("inf")
    # KLT-style corner re-use, for `follow`: the corners found in an anchor frame are tracked on through the
    # shot, and a pair of frames is fitted only to those that still move with the anchor's background; its
    # homography is the quotient of the two frames' fits to the anchor, which does not accumulate errors,
    # while that agrees with the fit of the adjacent frames within lk_anchor_agreement px (mean corner
    # distance; a hand-held camera's 3-D scene soon stops fitting one homography from the anchor). A frame
    # becomes the next anchor when they disagree, when fewer than this fraction of the anchor's corners are
    # left on the background, when the anchor is lk_max_corner_age frames old, and after an unreliable pair.
    # None = a fresh search in every frame and fits of adjacent frames only (the paper's way). On the still
    # lab cameras of recipes/people, whose walking people move less than RANSAC's threshold between frames,
    # the warp accumulated over a 32-frame clip fell from 2-8 px to 0.05-0.3 px, with box.mp4 (hand-held)
    # stabilised as well as before (benchmarks/RESULTS.md, "Stabilisation").
    # 0.5: at 0.8 the corners on walking people renewed the anchor so often that a lab camera drifted 3x
    # further; 0.3 changed nothing.
    lk_keep_corners: float | None = 0.5
    lk_anchor_agreement: float = 0.5  # px: at 0.25 creeping_clip drifted 3.4 px (0.02 at 0.5); with no limit
    # box.mp4 lost 3 of its 27 clips to "accumulated warp"
    lk_max_corner_age: int = 32  # frames: at 16 the lab cameras drifted ~1.2x further, at 8 ~2.5x
    max_corner_shift: float = 0.2  # fraction of the frame diagonal (our addition to the paper's checks): a
    # larger accumulated warp leaves too much of the output filled from earlier frames


@dataclass(frozen=True, eq=False)
class Features:
    """Keypoints of one frame. Plain arrays (no cv2.KeyPoint objects), so it pickles between processes."""

    points: np.ndarray  # float32 [N, 2], (x, y) pixel coordinates at the working resolution
    descriptors: np.ndarray  # [N, D]: uint8 [N, 32] for ORB, float32 [N, 128] for SIFT, [N, 0] for LK
    size: tuple[int, int]  # (H, W) of the frame
    # LK only: the grayscale frame itself (LK tracks pixels, so a frame's "description" is its pixels). Not a
    # prebuilt pyramid: OpenCV's Python binding of calcOpticalFlowPyrLK takes images only, and tracking level
    # by level on pyramids built once per frame gave the same tracks ~20% slower (a call per level).
    image: np.ndarray | None = None
    age: int = 0  # LK: frames since these corners were found (> 0: tracked into this frame, see `follow`)
    # LK with `follow`: these corners' positions in the frame where they were found (the anchor; same order
    # as `points`), how many corners the anchor found, and this frame's homography into the anchor; None, 0
    # and the identity in an anchor itself.
    anchor_points: np.ndarray | None = None
    anchor_corners: int = 0
    to_anchor: np.ndarray = field(default_factory=lambda: np.eye(3))  # homography: this frame -> the anchor


@dataclass(frozen=True, eq=False)
class PairMotion:
    homography: np.ndarray  # 3x3 float64; maps pixel coordinates of frame t+1 into frame t
    matches: int  # descriptor matches that passed the ratio test
    inliers: int  # RANSAC inliers among them
    residual: float  # RMS reprojection error of the inliers (px, working resolution); nan if none
    reason: str | None  # None = reliable; else a short human reason, e.g. "too few inliers (12 < 30)"

    @property
    def reliable(self) -> bool:
        return self.reason is None


def _unreliable(reason: str, matches: int = 0, inliers: int = 0,
                residual: float = float("nan")) -> PairMotion:
    return PairMotion(np.eye(3), matches, inliers, residual, reason)


def _checked_shape(motion: PairMotion, size: tuple[int, int]) -> PairMotion:
    """`motion`, judged unreliable if its homography moves a frame corner by half the diagonal or more: a
    flip, a near-singular or a wild perspective fit."""
    if motion.reliable and not corner_shift(motion.homography, size) < 0.5:
        return replace(motion, reason="degenerate homography")
    return motion


def _corners(h: int, w: int) -> np.ndarray:
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)


def _apply(hom: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Points [N, 2] through a homography; non-finite where a point maps to infinity or behind the camera."""
    p = np.concatenate([pts, np.ones((len(pts), 1))], 1) @ hom.T
    w = p[:, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(w > 1e-8, p[:, :2] / np.where(w > 1e-8, w, 1.0), np.inf)


def corner_shift(hom: np.ndarray, size: tuple[int, int]) -> float:
    """Largest displacement of a frame corner by `hom`, as a fraction of the frame diagonal
    (inf if degenerate)."""
    h, w = size
    c = _corners(h, w)
    d = np.linalg.norm(_apply(hom, c) - c, axis=1).max()
    return float(d / np.hypot(h, w)) if np.isfinite(d) else float("inf")


def corner_error(estimated: np.ndarray, truth: np.ndarray, size: tuple[int, int]) -> float:
    """Mean distance (px) between the frame corners mapped by two homographies: an alignment error."""
    c = _corners(*size)
    return float(np.linalg.norm(_apply(estimated, c) - _apply(truth, c), axis=1).mean())


class MotionEstimator:
    """Keypoints per frame and a RANSAC homography per pair of frames. Holds no frame state, so one estimator
    serves any number of streams; it pickles (the OpenCV objects are rebuilt lazily in each process)."""

    def __init__(self, settings: StabilizeSettings = StabilizeSettings()):
        if settings.method not in ("lk", "orb", "sift"):
            raise ValueError(f"unknown stabilisation method {settings.method!r} (use 'lk', 'orb' or 'sift')")
        self.settings = settings
        self._detector = None
        self._matcher = None

    def __getstate__(self):
        return {"settings": self.settings}

    def __setstate__(self, state):
        self.__init__(state["settings"])

    def _tools(self):
        if self._detector is None:
            s = self.settings
            if s.method == "lk":
                self._detector = self._matcher = "lk"  # plain cv2 functions: nothing to build
            elif s.method == "sift":
                self._detector = cv2.SIFT_create(nfeatures=s.max_features, contrastThreshold=s.sift_contrast)
                self._matcher = cv2.BFMatcher(cv2.NORM_L2)
            else:
                # FAST threshold 10 (default 20) so low-contrast backgrounds still get enough keypoints.
                self._detector = cv2.ORB_create(nfeatures=s.max_features, fastThreshold=10)
                self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        return self._detector, self._matcher

    def describe(self, gray: np.ndarray) -> Features:
        """Keypoints and descriptors of a uint8 [H, W] grayscale frame at the working resolution."""
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError("describe expects a uint8 [H, W] grayscale frame, "
                             f"got {gray.dtype} {gray.shape}")
        if self.settings.method == "lk":
            return self._describe_lk(gray)
        detector, _ = self._tools()
        keypoints, desc = detector.detectAndCompute(gray, None)
        dim, dtype = (128, np.float32) if self.settings.method == "sift" else (32, np.uint8)
        if desc is None or not keypoints:
            return Features(np.zeros((0, 2), np.float32), np.zeros((0, dim), dtype), gray.shape)
        points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
        return Features(points, np.ascontiguousarray(desc, dtype), gray.shape)

    def _describe_lk(self, gray: np.ndarray) -> Features:
        """LK features of `gray`: its own Shi-Tomasi corners (an anchor, for `follow`)."""
        s = self.settings
        # At full resolution: corners found at half resolution cost a quarter as much but aligned the
        # small known-shake clip worse than SIFT (benchmarks/RESULTS.md, "Stabilisation").
        corners = cv2.goodFeaturesToTrack(gray, s.max_features, s.lk_quality, s.lk_min_distance, blockSize=3)
        points = (np.zeros((0, 2), np.float32) if corners is None
                  else corners.reshape(-1, 2).astype(np.float32))
        none = np.zeros((len(points), 0), np.float32)
        return Features(points, none, gray.shape, np.ascontiguousarray(gray))

    def follow(self, prev: Features, gray: np.ndarray) -> tuple[PairMotion, Features]:
        """The next frame of a shot: (motion from `prev` to it, its features); the same as describe + pair
        unless `lk_keep_corners` is set. Then (LK only) the corners found in an anchor frame are tracked on
        through the shot (KLT), and the pair is fitted only to those that move with the anchor's background:
        its features, and so later pairs' motions, depend on the shot's earlier frames. Start every shot with
        `describe`, so a pair's motion is a function of the frames from its shot's start.

        Why the anchor: between adjacent frames a slow foreground (a person walking, in 60 fps footage) moves
        less than RANSAC's threshold and passes as background, so the pair's fit leans towards it and the
        bias adds up over a clip (still lab cameras drifted 2-8 px in 31 frames). Against an anchor a few
        frames back the foreground has moved far enough to be rejected. The pair's homography is the
        quotient of the two frames' fits to the anchor, whose errors do not add up, while it agrees with the
        adjacent frames' own fit (`lk_anchor_agreement`); otherwise it is that fit, and the frame becomes the
        next anchor: a hand-held camera's 3-D scene soon stops fitting one homography from the anchor."""
        s = self.settings
        if s.method != "lk" or s.lk_keep_corners is None:
            nxt = self.describe(gray)
            return self.pair(prev, nxt), nxt
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError("follow expects a uint8 [H, W] grayscale frame, "
                             f"got {gray.dtype} {gray.shape}")
        if len(prev.points) < 2:
            return _unreliable(f"too few keypoints ({len(prev.points)})"), self._describe_lk(gray)
        anchor_points = prev.points if prev.anchor_points is None else prev.anchor_points
        anchor_corners = prev.anchor_corners or len(prev.points)
        points, tracked = self._lk(prev.image, gray, prev.points)
        src, near, far = points[tracked], prev.points[tracked], anchor_points[tracked]
        if len(src) < max(4, s.min_inliers):
            motion = _unreliable(f"too few matches ({len(src)} < {max(4, s.min_inliers)})", len(src))
            return motion, self._describe_lk(gray)
        via_anchor, background = self._fit(src, far)
        if not via_anchor.reliable or background.sum() < max(4, s.min_inliers):
            background = np.ones(len(src), bool)  # no clear background: the adjacent frames decide alone
        motion, inliers = self._fit(src[background], near[background])
        motion = replace(motion, matches=len(src))
        # (prev -> anchor)^-1 (this frame -> anchor)
        quotient = np.linalg.solve(prev.to_anchor, via_anchor.homography)
        quotient /= quotient[2, 2]
        agree = (via_anchor.reliable
                 and corner_error(quotient, motion.homography, gray.shape) <= s.lk_anchor_agreement)
        motion = _checked_shape(replace(motion, homography=quotient) if agree else motion, gray.shape)
        h, w = gray.shape
        keep = np.flatnonzero(background)[inliers]
        keep = keep[((src[keep] >= 0) & (src[keep] <= (w - 1, h - 1))).all(axis=1)]
        if (not motion.reliable or not agree or len(keep) < s.lk_keep_corners * anchor_corners
                or prev.age + 1 >= s.lk_max_corner_age):
            return motion, self._describe_lk(gray)
        nxt = Features(np.ascontiguousarray(src[keep]), np.zeros((len(keep), 0), np.float32), gray.shape,
                       np.ascontiguousarray(gray), prev.age + 1, np.ascontiguousarray(far[keep]),
                       anchor_corners, via_anchor.homography)
        return motion, nxt

    def _lk(self, image: np.ndarray, nxt: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`points` of `image` tracked into `nxt`: (positions in nxt [N, 2], bool [N] where the track
        succeeded and, if `lk_max_fb_error` is finite, came back within that many px when tracked back)."""
        s = self.settings
        lk = dict(winSize=(s.lk_window, s.lk_window), maxLevel=s.lk_levels,
                  criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
        p0 = points.reshape(-1, 1, 2)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(image, nxt, p0, None, **lk)
        ok = st1.ravel() == 1
        if np.isfinite(s.lk_max_fb_error):
            back, st2, _ = cv2.calcOpticalFlowPyrLK(nxt, image, p1, None, **lk)
            fb = np.linalg.norm(back.reshape(-1, 2) - points, axis=1)
            ok &= (st2.ravel() == 1) & (fb <= s.lk_max_fb_error)
        return p1.reshape(-1, 2), ok

    def _track(self, prev: Features, nxt: Features) -> tuple[np.ndarray, np.ndarray]:
        """LK: prev's corners tracked into nxt, kept where the track succeeds (`_lk`). Returns (points in
        nxt, in prev)."""
        if prev.image is None or nxt.image is None:
            raise ValueError("method 'lk' pairs features from describe() with method 'lk' "
                             "(these hold no image)")
        points, ok = self._lk(prev.image, nxt.image, prev.points)
        return points[ok], prev.points[ok]

    def pair(self, prev: Features, nxt: Features) -> PairMotion:
        """Homography mapping frame t+1 (`nxt`) into frame t (`prev`), with the evidence for it.
        `matches`: descriptor matches that passed the ratio test, or for LK the corners tracked."""
        s = self.settings
        if s.method == "lk":
            if len(prev.points) < 2:
                return _unreliable(f"too few keypoints ({len(prev.points)})")
            src, dst = self._track(prev, nxt)
        else:
            if len(prev.points) < 2 or len(nxt.points) < 2:
                return _unreliable(f"too few keypoints ({min(len(prev.points), len(nxt.points))})")
            _, matcher = self._tools()
            knn = matcher.knnMatch(nxt.descriptors, prev.descriptors, k=2)
            good = [m[0] for m in knn if len(m) == 2 and m[0].distance < s.ratio * m[1].distance]
            src = nxt.points[[m.queryIdx for m in good]].reshape(-1, 2)
            dst = prev.points[[m.trainIdx for m in good]].reshape(-1, 2)
        if len(src) < max(4, s.min_inliers):
            return _unreliable(f"too few matches ({len(src)} < {max(4, s.min_inliers)})", len(src))
        return _checked_shape(self._fit(src, dst)[0], nxt.size)

    def _fit(self, src: np.ndarray, dst: np.ndarray) -> tuple[PairMotion, np.ndarray]:
        """RANSAC homography taking points `src` [N >= 4, 2] to `dst` with the evidence for it (the caller
        checks its shape), and which points are its inliers (bool [N])."""
        s = self.settings
        # cv2.RANSAC refines the winning model on its inliers (Levenberg-Marquardt);
        # deterministic (fixed RNG).
        hom, mask = cv2.findHomography(src, dst, cv2.RANSAC, s.ransac_threshold, maxIters=2000,
                                       confidence=0.995)
        if hom is None or mask is None:
            return _unreliable("no homography found", len(src)), np.zeros(len(src), bool)
        hom = np.asarray(hom, np.float64)
        inl = mask.ravel().astype(bool)
        n_in = int(inl.sum())
        err = np.linalg.norm(_apply(hom, src[inl].astype(np.float64)) - dst[inl], axis=1)
        residual = float(np.sqrt(np.mean(err**2))) if n_in else float("nan")
        reason = None
        ratio = n_in / len(src)
        if n_in < s.min_inliers:
            reason = f"too few inliers ({n_in} < {s.min_inliers})"
        elif ratio < s.min_inlier_ratio:
            reason = f"inlier ratio {ratio:.2f} < {s.min_inlier_ratio:.2f}"
        elif not residual <= s.max_residual:
            reason = f"residual {residual:.2f} px > {s.max_residual:g} px"
        return PairMotion(hom, len(src), n_in, residual, reason), inl


@dataclass
class StabilizedClip:
    # uint8 [T, H, W, 3], every frame warped into frame 0's coordinates (input if rejected)
    frames: np.ndarray
    residual: float  # mean of the pairs' residuals (px, working resolution); 0.0 for a single frame
    reason: str | None  # None = usable; else why the clip must be dropped


def stabilize_clip(frames: np.ndarray, motions: Sequence[PairMotion],
                   settings: StabilizeSettings = StabilizeSettings()) -> StabilizedClip:
    """frames uint8 [T, H, W, 3]; motions: T-1 PairMotion for pairs (0,1), (1,2), ...

    Accumulates the homographies to the clip's first frame (H_0<-t = H_0<-1 @ H_1<-2 @ ... @ H_t-1<-t),
    warps each frame into frame 0's coordinates (bilinear) and fills pixels the warp leaves uncovered from the
    previous stabilised frame (a static background looks right there; black borders would not). Frame 0 is
    unchanged. A rejected clip (any unreliable pair, or an accumulated warp moving a corner by more than
    `settings.max_corner_shift` of the diagonal) comes back with its input frames and the reason.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"stabilize_clip expects uint8 [T, H, W, 3] frames, got {frames.dtype} "
                         f"{frames.shape}")
    t, h, w, _ = frames.shape
    if len(motions) != t - 1:
        raise ValueError(f"stabilize_clip needs {t - 1} pair motions for {t} frames, got {len(motions)}")
    residual = float(np.mean([m.residual for m in motions])) if motions else 0.0
    bad = [i for i, m in enumerate(motions) if m.reason is not None]
    if bad:  # never let an unreliable pair through: one wrong homography corrupts every later frame
        i = bad[0]
        more = f" (and {len(bad) - 1} more pairs)" if len(bad) > 1 else ""
        return StabilizedClip(frames, residual, f"frames {i}->{i + 1}: {motions[i].reason}{more}")
    acc = [np.eye(3)]
    for m in motions:
        acc.append(acc[-1] @ m.homography)
    shifts = [corner_shift(a, (h, w)) for a in acc]
    worst = int(np.argmax(shifts))
    if not shifts[worst] <= settings.max_corner_shift:
        return StabilizedClip(frames, residual, f"accumulated warp moves a corner by {shifts[worst]:.0%} of "
                                                f"the diagonal at frame {worst} (max "
                                                f"{settings.max_corner_shift:.0%})")
    out = np.empty_like(frames)
    out[0] = frames[0]
    ones = np.full((h, w), 255, np.uint8)
    for k in range(1, t):
        a = acc[k] / acc[k][2, 2]
        # dst(p) = src(a^-1 p): frame k's pixel at q lands at a q in frame 0's coordinates. Replicated borders
        # keep edge pixels from blending with black; the coverage mask decides what is really covered.
        warped = cv2.warpPerspective(frames[k], a, (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
        covered = cv2.compare(cv2.warpPerspective(ones, a, (w, h), flags=cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_CONSTANT), 128, cv2.CMP_GE)
        # In place through a mask: the same pixels as np.where, ~30x faster (np.where cost ~0.5 ms a frame,
        # a fifth of a frame's whole unstabilised preparation).
        out[k] = out[k - 1]
        cv2.copyTo(warped, covered, out[k])
    return StabilizedClip(out, residual, None)


def background_motion(frames: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute difference between consecutive frames (0-255 scale, all channels), optionally only where
    `mask` is True ([H, W] for every pair, or [T, H, W]: a pixel counts for a pair if True in both frames).
    With the moving objects masked out, this is what stabilisation should drive to ~0."""
    f = frames.astype(np.float32)
    diff = np.abs(f[1:] - f[:-1])
    if diff.ndim == 4:
        diff = diff.mean(-1)
    if mask is None:
        return float(diff.mean())
    m = np.asarray(mask, bool)
    m = np.broadcast_to(m, frames.shape[:3]) if m.ndim == 2 else m
    pair = m[1:] & m[:-1]
    return float(diff[pair].mean()) if pair.any() else float("nan")


# --- Synthetic shaken clips with known camera motion (for tests and benchmarks/stabilization.py) ------------

@dataclass
class ShakenClip:
    frames: np.ndarray  # uint8 [T, H, W, 3] RGB
    homographies: np.ndarray  # float64 [T-1, 3, 3]: the true motions, frame t+1 -> frame t (as PairMotion)
    background: np.ndarray  # bool [H, W] in frame 0's coordinates: static background, never crossed by an
    # object and away from the border (which a stabilised clip fills from earlier frames)


def textured_background(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [H, W, 3]: smooth colour noise at several scales plus random shapes, so keypoints exist
    everywhere (values stay in ~[25, 230], never black, so unfilled borders are detectable)."""
    img = np.zeros((height, width, 3), np.float32)
    for cell, amp in ((32, 70.0), (8, 45.0), (2, 20.0)):  # coarse colour blobs, medium texture, fine grain
        small = rng.random((max(2, height // cell), max(2, width // cell), 3), dtype=np.float32) - 0.5
        img += amp * cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img + 128, 30, 225).astype(np.uint8)
    for _ in range(height * width // 300):  # dense, sharp-edged shapes: corners and blobs for the detectors
        colour = tuple(int(c) for c in rng.integers(30, 226, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(3, max(4, min(height, width) // 16)))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + r, y + int(rng.integers(2, r + 2))), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), r // 2 + 1, colour, -1, cv2.LINE_AA)
        else:
            cv2.line(img, (x, y), (x + int(rng.integers(-2 * r, 2 * r)),
                                   y + int(rng.integers(-2 * r, 2 * r))),
                     colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    return img


def shaken_clip(frames: int = 32, size: tuple[int, int] = (256, 341), shake: float = 6.0,
                rotation: float = 1.0, zoom: float = 0.02, pan: tuple[float, float] = (0.0, 0.0),
                objects: int = 2, seed: int = 0) -> ShakenClip:
    """A textured static scene seen by a shaking camera, with `objects` discs moving across it.

    Each frame's camera is independently jittered about its (optionally panning) mean pose: translation
    uniform in +-`shake` px, rotation +-`rotation` degrees and zoom +-`zoom` about the frame centre; `pan` is
    the mean pose's drift in px/frame (x, y). The true pairwise homographies come back with the frames.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    drift = np.abs(np.asarray(pan)) * frames
    margin = int(2 * shake + np.hypot(h, w) * (np.radians(rotation) + zoom) + 8)
    wh, ww = h + 2 * margin + int(drift[1]), w + 2 * margin + int(drift[0])
    world = textured_background(wh, ww, rng)
    ox, oy = margin + (drift[0] if pan[0] < 0 else 0), margin + (drift[1] if pan[1] < 0 else 0)
    poses = []  # M_t: frame t pixel -> world pixel
    for t in range(frames):
        a = np.radians(rng.uniform(-rotation, rotation))
        s = 1 + rng.uniform(-zoom, zoom)
        tx, ty = rng.uniform(-shake, shake, 2)
        rot = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [0, 0, 1]])
        centre = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]])
        place = np.array([[1, 0, ox + w / 2 + pan[0] * t + tx], [0, 1, oy + h / 2 + pan[1] * t + ty],
                          [0, 0, 1]])
        poses.append(place @ rot @ centre)
    # Objects move in world coordinates (so relative to the background) at 2-4 px/frame.
    r_obj = max(4, min(h, w) // 10)
    starts = rng.uniform([ox + r_obj, oy + r_obj], [ox + w - r_obj, oy + h - r_obj], (objects, 2))
    vel = rng.uniform(-4, 4, (objects, 2))
    colours = rng.integers(0, 256, (objects, 3))
    out = np.empty((frames, h, w, 3), np.uint8)
    crossed = np.zeros((h, w), bool)
    for t in range(frames):
        canvas, obj = world.copy(), np.zeros((wh, ww), np.uint8)
        for k in range(objects):
            c = tuple(int(v) for v in np.round(starts[k] + vel[k] * t))
            cv2.circle(canvas, c, r_obj, tuple(int(v) for v in colours[k]), -1, cv2.LINE_AA)
            cv2.circle(obj, c, r_obj, 255, -1)
        out[t] = cv2.warpPerspective(canvas, poses[t], (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        crossed |= cv2.warpPerspective(obj, poses[0], (w, h),
                                       flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
    homs = np.array([np.linalg.inv(poses[t]) @ poses[t + 1] for t in range(frames - 1)]).reshape(-1, 3, 3)
    largest_shift = max(corner_shift(np.linalg.inv(poses[0]) @ p, size) for p in poses)
    border = int(np.ceil(largest_shift * np.hypot(h, w))) + 2
    background = np.zeros((h, w), bool)
    background[border:h - border, border:w - border] = True
    background &= ~(cv2.dilate(crossed.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    return ShakenClip(out, homs, background)


def creeping_clip(frames: int = 32, size: tuple[int, int] = (160, 214), speed: float = 0.7,
                  seed: int = 0) -> np.ndarray:
    """uint8 [T, H, W, 3]: a still camera (every true homography the identity) on a textured scene, with a
    textured block of a sixth of the frame creeping right at `speed` px/frame: slower than RANSAC's
    threshold, as a person walking in 60 fps footage, so fits between adjacent frames count its corners as
    background."""
    rng = np.random.default_rng(seed)
    h, w = size
    background = textured_background(h, w, rng)
    block = textured_background(h // 2, w // 3, rng)
    opaque = np.full(block.shape[:2], 255, np.uint8)
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        place = np.float32([[1, 0, w // 8 + speed * t], [0, 1, h // 4]])  # sub-pixel steps, bilinear
        moved = cv2.warpAffine(block, place, (w, h), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(opaque, place, (w, h), flags=cv2.INTER_LINEAR)[..., None] / 255.0
        out[t] = np.round(alpha * moved + (1 - alpha) * background).astype(np.uint8)
    return out
