"""Stabilisation and shot detection for `videogan prepare`: accuracy and speed of LK (pyramidal Lucas-Kanade),
SIFT and ORB, on this machine.

    python benchmarks/stabilization.py                   # everything (~3 minutes on 2 cores)
    python benchmarks/stabilization.py --max-frames 100  # quicker: the first 100 frames of each video
    python benchmarks/stabilization.py --lk-fresh        # also LK finding fresh corners in every frame

1. Synthetic clips with known camera shake (32 frames, 256x341, the working resolution): background motion
   (mean |difference| of consecutive frames over static background pixels, 0-255) before and after
   stabilisation, and the alignment error of the estimated homographies against the true ones (px).
2. The real sample videos (../shared/data/videos or $VIDEOGAN_SAMPLE_VIDEOS), resized to short side 256:
   pairs per second (describe + pair, on `--threads` OpenCV threads: 1 = one multiprocessing worker), the
   fraction of pairs within a shot judged reliable, and the fraction of 32-frame clips (stride 16) within a
   shot that stabilise; plus the cuts found by CutDetector and its speed.
3. Still cameras: the warp accumulated over a 32-frame clip, whose truth is the identity (px at the working
   resolution, largest frame-corner shift), on synthetic clips with a textured block creeping at 0.7 px/frame
   (`creeping_clip`) and on real still-camera videos given with --still-camera (e.g. the lab cameras of
   ../shared/data/people), clips every 16 frames.
4. The whole per-video pipeline (`prepare.video_clips`: decode, cuts, stabilise, crop) on the same videos in
   the same run, stabilisation off and with each method: source frames per second per core, clips dropped, and
   the stabilised / unstabilised rate (issue 31's goal: at least 0.5).
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from datetime import date
from itertools import pairwise
from pathlib import Path

import cv2
import numpy as np
from sample_data import sample_videos_dir

from videogan.bench import cpu_name
from videogan.data.decode import iter_frames
from videogan.data.shots import CutDetector
from videogan.data.stabilize import (
    MotionEstimator,
    PairMotion,
    StabilizeSettings,
    background_motion,
    corner_error,
    corner_shift,
    creeping_clip,
    shaken_clip,
    stabilize_clip,
)

VIDEOS = ["vtest.avi", "tree.avi", "Megamind.avi", "box.mp4", "bigbuckbunny.mp4"]
# (label, settings): each method at the default features (twice as many bought nothing measurable for SIFT or
# ORB in issue 3's run; see benchmarks/RESULTS.md).
METHODS = [(f"{m}_500", StabilizeSettings(method=m, max_features=500)) for m in ("lk", "sift", "orb")]


def with_lk_variants(keep: list[float], ages: list[int], fresh: bool) -> None:
    """Add LK with corner re-use at each fraction in `keep` (lk_keep_corners) and age in `ages`
    (lk_max_corner_age), and LK finding fresh corners in every frame if `fresh`, after the default LK."""
    extra = [(f"lk_500_keep{k:g}_age{a}", StabilizeSettings(method="lk", lk_keep_corners=k,
                                                            lk_max_corner_age=a))
             for k in keep for a in ages]
    if fresh:
        extra.insert(0, ("lk_500_fresh", StabilizeSettings(method="lk", lk_keep_corners=None)))
    METHODS[1:1] = extra


def shot_motions(est: MotionEstimator, grays: list[np.ndarray], cuts: list[int]) -> list[PairMotion]:
    """Pair motions the way `prepare.video_clips` computes them: frame by frame (`follow`), afresh at each cut
    (the pair across a cut is still measured, from fresh features, to check that it is rejected)."""
    motions, feats = [], est.describe(grays[0])
    for i, g in enumerate(grays[1:], start=1):
        if i in cuts:
            fresh = est.describe(g)
            motions.append(est.pair(feats, fresh))
            feats = fresh
        else:
            motion, feats = est.follow(feats, g)
            motions.append(motion)
    return motions


def videos_dir() -> Path:
    root = sample_videos_dir()
    if (root / "vtest.avi").is_file():
        return root
    raise SystemExit("sample videos not found: set VIDEOGAN_SAMPLE_VIDEOS or provide ../shared/data/videos")


def resize_short_side(frame: np.ndarray, short: int) -> np.ndarray:
    h, w = frame.shape[:2]
    s = short / min(h, w)
    return cv2.resize(frame, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def synthetic(seeds: int, frames: int, size: tuple[int, int]) -> dict:
    out: dict = {"clip": dict(frames=frames, size=list(size), shake_px=6.0, rotation_deg=1.0, zoom=0.02,
                              objects=2, seeds=seeds)}
    clips = [shaken_clip(frames, size, shake=6.0, rotation=1.0, zoom=0.02, objects=2, seed=s)
             for s in range(seeds)]
    ideal = [stabilize_clip(c.frames, [PairMotion(h, 0, 0, 0.0, None) for h in c.homographies])
             for c in clips]
    out["background_motion_before"] = round(float(np.mean([background_motion(c.frames, c.background)
                                                           for c in clips])), 3)
    out["background_motion_true_homographies"] = round(float(np.mean(
        [background_motion(i.frames, c.background) for i, c in zip(ideal, clips, strict=True)])), 3)
    for method, settings in METHODS:
        est = MotionEstimator(settings)
        after, pair_err, last_err, reliable = [], [], [], []
        for c in clips:
            motions = shot_motions(est, [gray(f) for f in c.frames], [])
            reliable += [m.reason is None for m in motions]
            pair_err += [corner_error(m.homography, h, size)
                         for m, h in zip(motions, c.homographies, strict=True)]
            acc_est, acc_true = np.eye(3), np.eye(3)
            for m, h in zip(motions, c.homographies, strict=True):
                acc_est, acc_true = acc_est @ m.homography, acc_true @ h
            last_err.append(corner_error(acc_est, acc_true, size))
            clip = stabilize_clip(c.frames, motions, settings)
            after.append(background_motion(clip.frames, c.background) if clip.reason is None
                         else float("nan"))
        out[method] = {
            "background_motion_after": round(float(np.mean(after)), 3),
            "reduction": round(out["background_motion_before"] / float(np.mean(after)), 1),
            "pair_corner_error_px_mean": round(float(np.mean(pair_err)), 3),
            "pair_corner_error_px_max": round(float(np.max(pair_err)), 3),
            "frame31_to_0_corner_error_px_mean": round(float(np.mean(last_err)), 3),
            "reliable_pairs": round(float(np.mean(reliable)), 3),
        }
    return out


def real_video(path: Path, max_frames: int | None, short: int, clip_frames: int) -> dict:
    frames = []
    for f in iter_frames(path):
        frames.append(resize_short_side(f, short))
        if max_frames and len(frames) >= max_frames:
            break
    det = CutDetector()
    t0 = time.perf_counter()
    cuts, scores = [], []
    for i, f in enumerate(frames):
        if det.update(f):
            cuts.append(i)
        scores.append(det.last_score)
    cut_fps = len(frames) / (time.perf_counter() - t0)
    bounds = [0] + cuts + [len(frames)]
    shots = [(a, b) for a, b in pairwise(bounds) if b > a]
    out: dict = {"frames": len(frames), "size": list(frames[0].shape[:2]), "cuts": cuts,
                 "cut_scores": [round(scores[i], 1) for i in cuts],
                 "max_score_elsewhere": round(max(s for i, s in enumerate(scores) if i not in cuts), 1),
                 "cut_detector_frames_per_s": round(cut_fps)}
    grays = [gray(f) for f in frames]
    for method, settings in METHODS:
        est = MotionEstimator(settings)
        t0 = time.perf_counter()
        motions = shot_motions(est, grays, cuts)
        t2 = time.perf_counter()
        within = [m for i, m in enumerate(motions) if i + 1 not in cuts]
        clips = accepted = 0
        reasons: Counter = Counter()
        for a, b in shots:
            for s in range(a, b - clip_frames + 1, clip_frames // 2):
                clip = stabilize_clip(np.stack(frames[s:s + clip_frames]), motions[s:s + clip_frames - 1],
                                      settings)
                clips += 1
                accepted += clip.reason is None
                if clip.reason:
                    reasons["accumulated warp" if clip.reason.startswith("accumulated")
                            else "unreliable pair"] += 1
        out[method] = {
            "pairs_per_s": round(len(motions) / (t2 - t0), 1),
            "ms_per_frame": round((t2 - t0) / len(frames) * 1e3, 2),
            "matches_median": int(np.median([m.matches for m in within])) if within else 0,
            "inliers_median": int(np.median([m.inliers for m in within])) if within else 0,
            "residual_px_median": (round(float(np.nanmedian([m.residual for m in within])), 3)
                                   if within else None),
            "reliable_pairs_within_shots": (round(float(np.mean([m.reason is None for m in within])), 3)
                                            if within else None),
            "unreliable_reasons": dict(Counter(m.reason.split(" (")[0] for m in within if m.reason)),
            "pairs_across_cuts_rejected": sum(motions[c - 1].reason is not None for c in cuts),
            f"clips{clip_frames}_accepted": f"{accepted}/{clips}",
            "clip_rejections": dict(reasons),
        }
    return out


def still_camera(videos: list[Path], seeds: int, short: int, clip_frames: int = 32) -> dict:
    """Per method, the accumulated warp (px) at the last frame of clips of still-camera footage."""
    sources = {f"creeping_seed{k}": [gray(f) for f in creeping_clip(clip_frames, seed=k)]
               for k in range(seeds)}
    for path in videos:
        sources[path.name] = [gray(resize_short_side(f, short)) for f in iter_frames(path)]
    out: dict = {}
    for method, settings in METHODS:
        drift: dict[str, list[float]] = {}
        for name, grays in sources.items():
            motions = shot_motions(MotionEstimator(settings), grays, [])
            size = grays[0].shape
            warps = [np.linalg.multi_dot([m.homography for m in motions[s:s + clip_frames - 1]])
                     for s in range(0, len(grays) - clip_frames + 1, clip_frames // 2)]
            drift[name] = [corner_shift(w, size) * float(np.hypot(*size)) for w in warps]
        out[method] = {name: {"clips": len(d), "drift_px_mean": round(float(np.mean(d)), 2),
                              "drift_px_max": round(float(np.max(d)), 2)} for name, d in drift.items()}
    return out


def pipeline(root: Path, max_frames: int | None) -> dict:
    """Source frames/s per core of `video_clips` over all VIDEOS, stabilisation off and with each method."""
    from videogan.data.prepare import PrepareConfig, VideoStats, video_clips

    out: dict = {}
    configs = [("off", PrepareConfig(stabilize=False))] + [
        (m, PrepareConfig(stabilization=s)) for m, s in METHODS]
    for label, cfg in configs:
        frames = dropped = clips = 0
        t0, cpu0 = time.perf_counter(), time.process_time()
        for name in VIDEOS:
            stats = VideoStats()
            for _ in video_clips(root / name, cfg, stats):
                clips += 1
                if max_frames and stats.frames >= max_frames:
                    break
            frames += stats.frames
            dropped += stats.dropped_unstable
        rate, cpu = frames / (time.perf_counter() - t0), frames / (time.process_time() - cpu0)
        out[label] = {"frames": frames, "frames_per_s": round(rate, 1), "frames_per_cpu_s": round(cpu, 1),
                      "clips": clips, "clips_dropped_unstable": dropped}
    off = out["off"]
    for label, _ in METHODS:
        out[label]["rate_vs_off"] = round(out[label]["frames_per_s"] / off["frames_per_s"], 3)
        # per second of this process's CPU time: less disturbed by other work on a busy machine
        out[label]["cpu_rate_vs_off"] = round(out[label]["frames_per_cpu_s"] / off["frames_per_cpu_s"], 3)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-frames", type=int, default=None, help="per video (default: all)")
    p.add_argument("--threads", type=int, default=1, help="OpenCV threads (1 = one multiprocessing worker)")
    p.add_argument("--short-side", type=int, default=256, help="working resolution")
    p.add_argument("--seeds", type=int, default=3, help="synthetic clips")
    p.add_argument("--lk-keep", type=float, nargs="*", default=[],
                   help="also measure LK re-using tracked corners at these lk_keep_corners fractions")
    p.add_argument("--lk-age", type=int, nargs="*", default=[StabilizeSettings().lk_max_corner_age],
                   help="with --lk-keep: at these lk_max_corner_age values")
    p.add_argument("--lk-fresh", action="store_true",
                   help="also measure LK finding fresh corners in every frame")
    p.add_argument("--still-camera", type=Path, nargs="*", default=[],
                   help="still-camera videos on which to measure the accumulated warp (truth: none)")
    args = p.parse_args()
    with_lk_variants(args.lk_keep, args.lk_age, args.lk_fresh)
    cv2.setNumThreads(args.threads)  # measure the cost of one worker, the way the pipeline runs it
    result = {"machine": f"{cpu_name()}, {os.cpu_count()} cores", "load_average_at_start": os.getloadavg()[0],
              "opencv": cv2.__version__,
              "opencv_threads": args.threads, "date": str(date.today()),
              "synthetic": synthetic(args.seeds, 32, (args.short_side, round(args.short_side * 4 / 3)))}
    root = videos_dir()
    result["videos"] = {name: real_video(root / name, args.max_frames, args.short_side, 32)
                        for name in VIDEOS}
    for method, _ in METHODS:
        per = [v[method] for v in result["videos"].values()]
        pairs = sum(v["frames"] - 1 for v in result["videos"].values())
        result[f"{method}_all_videos"] = {
            "pairs_per_s": round(pairs / sum((v["frames"] - 1) / m["pairs_per_s"] for v, m in
                                             zip(result["videos"].values(), per, strict=True)), 1),
            "reliable_pairs_within_shots_min": min(m["reliable_pairs_within_shots"] for m in per),
        }
    result["still_camera"] = still_camera(args.still_camera, args.seeds, args.short_side)
    result["pipeline"] = pipeline(root, args.max_frames)
    result["load_average_at_end"] = os.getloadavg()[0]  # other work on the machine slows the timings
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
