"""Shot-boundary (hard cut) detection, streaming, one frame at a time (numpy + OpenCV only).

Training clips must not span a scene cut: a cut is not motion for the generator to learn, and stabilisation
cannot align across it (Vondrick et al. 2016 stabilise within continuous footage). The score is
PySceneDetect's ContentDetector signal, the mean absolute difference of the HSV channels between consecutive
frames (0-255; its default cut threshold is 27), computed on a tiny (32 px wide), slightly blurred copy of
each frame, with three guards against camera motion:

* motion compensation: the previous frame is first shifted by the global translation that phase correlation
  finds between the two small frames, and the smaller of the raw and the compensated difference counts. Shake
  and pans over one scene are (locally) translations and mostly cancel; a cut to another scene does not.
* local tolerance: each pixel is compared with the best-matching pixel within `tolerance` px of the shifted
  previous frame, so what a translation misses (rotation, zoom, parallax, moving objects) counts little. At 32
  px wide, a pixel is ~10 px of a 256x341 frame.
* an adaptive threshold (the idea of PySceneDetect's AdaptiveDetector, here causal, so no look-ahead): a cut's
  score must also exceed `adaptive_ratio` times the mean score of the previous `window` frames of the shot,
  so sustained fast motion, which keeps every score high, is not a cut; a cut is a spike.

A gradual brightness change or a fade moves every pixel a little per frame and does not fire (it is not a hard
cut: clips across it are one continuous scene, and stabilisation copes with it).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import cv2
import numpy as np


class CutDetector:
    """`update(frame)` for each frame in order; True when a cut lies between the previous frame and this one.

    threshold: minimum score (motion-compensated mean |dHSV|, 0-255) of a cut. PySceneDetect uses 27 on raw
        differences; the compensation lowers every score. Measured here (benchmarks/RESULTS.md, "Stabilisation
        (issue 3)"): the hard cuts of Megamind.avi and of synthetic scenes score >= 24, while no other frame
        of the five sample videos scores above ~9, nor synthetic shake of 10 px + 1 degree + 2% zoom per
        frame.
    adaptive_ratio: a cut's score must also exceed this multiple of the mean of the previous `window` scores
        within the shot.
    width: frames are downscaled to this width first (speed, and insensitivity to fine texture and noise; at
        64 px, violent synthetic shake scored like cuts).
    tolerance: px at `width` of local misalignment that is forgiven (see the module docstring).
    """

    def __init__(self, threshold: float = 16.0, adaptive_ratio: float = 2.5, window: int = 8, width: int = 32,
                 tolerance: int = 1):
        self.threshold, self.adaptive_ratio = threshold, adaptive_ratio
        self.window, self.width = window, width
        self.tolerance = tolerance
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (the next update is a first frame again)."""
        self._prev: np.ndarray | None = None  # small blurred RGB of the previous frame
        self._recent: deque[float] = deque(maxlen=self.window)
        self.last_score: float = 0.0  # score of the last update (0 for a first frame), for tuning and tests

    def _small(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"CutDetector expects uint8 [H, W, 3] RGB frames, got {frame.dtype} "
                             f"{frame.shape}")
        h, w = frame.shape[:2]
        small = cv2.resize(frame, (self.width, max(8, round(h * self.width / w))),
                           interpolation=cv2.INTER_AREA)
        # damps aliasing of fine texture, which shake would turn into change
        return cv2.GaussianBlur(small, (3, 3), 0)

    def _difference(self, a: np.ndarray, b: np.ndarray) -> float:
        """Mean over pixels of the |dH|, |dS|, |dV| average (hue as an angle, full 0-255 range) between b and
        the best-matching pixel of a within `tolerance` px: small local motions (rotation, zoom, parallax)
        that a global translation does not capture do not count."""
        ha = cv2.cvtColor(a, cv2.COLOR_RGB2HSV_FULL).astype(np.int16)
        hb = cv2.cvtColor(b, cv2.COLOR_RGB2HSV_FULL).astype(np.int16)
        r = self.tolerance
        h, w = hb.shape[:2]
        padded = np.pad(ha, ((r, r), (r, r), (0, 0)), mode="edge")
        best = None
        for dy in range(2 * r + 1):
            for dx in range(2 * r + 1):
                d = np.abs(padded[dy:dy + h, dx:dx + w] - hb)
                d[..., 0] = np.minimum(d[..., 0], 256 - d[..., 0])
                d = d.mean(-1)
                best = d if best is None else np.minimum(best, d)
        return float(best.mean())

    def score(self, prev: np.ndarray, cur: np.ndarray) -> float:
        """Motion-compensated content change between two small frames (0-255)."""
        raw = self._difference(prev, cur)
        g0 = cv2.cvtColor(prev, cv2.COLOR_RGB2GRAY).astype(np.float32)
        g1 = cv2.cvtColor(cur, cv2.COLOR_RGB2GRAY).astype(np.float32)
        (dx, dy), _ = cv2.phaseCorrelate(g0, g1)
        h, w = g0.shape
        if not (abs(dx) < w / 4 and abs(dy) < h / 4):  # no plausible frame-to-frame motion
            return raw
        moved = cv2.warpAffine(prev, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
        mx, my = int(np.ceil(abs(dx))) + 1, int(np.ceil(abs(dy))) + 1  # compare only what both frames show
        return min(raw, self._difference(moved[my:h - my, mx:w - mx], cur[my:h - my, mx:w - mx]))

    def update(self, frame: np.ndarray) -> bool:
        """frame uint8 [H, W, 3] RGB (any size). True when a cut lies between the previous frame given and
        this one; False for the first frame. A frame of another aspect ratio than the previous one starts a
        shot."""
        small = self._small(frame)
        prev, self._prev = self._prev, small
        if prev is None or prev.shape != small.shape:
            self._recent.clear()
            self.last_score = 0.0 if prev is None else float("inf")
            return prev is not None
        s = self.last_score = self.score(prev, small)
        baseline = float(np.mean(self._recent)) if self._recent else 0.0
        cut = s >= self.threshold and s >= self.adaptive_ratio * baseline
        if cut:
            self._recent.clear()  # a new shot: its motion level is its own
        else:
            self._recent.append(s)
        return cut


def find_cuts(frames: Iterable[np.ndarray], **kwargs) -> list[int]:
    """Indices i > 0 where a new shot starts (a cut between frames i-1 and i). kwargs go to CutDetector."""
    detector = CutDetector(**kwargs)
    return [i for i, f in enumerate(frames) if detector.update(f)]
