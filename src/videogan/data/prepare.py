"""`videogan prepare`: any folder of videos -> stabilised 32-frame clips in WebDataset tar shards.

Per video (paper Sec. 4 and the original's data preparation, done more carefully):
decode (PyAV; rotation metadata applied, optional fixed-rate resampling) -> shrink to a working
resolution -> detect shot cuts -> for each window of `frames` frames inside one shot, every
`stride` frames: stabilise (feature matching + RANSAC homography accumulated to the window's
first frame) -> centre square crop -> area resize to `size` -> optional motion filter -> encode.

The original dropped a whole video on one failed match and never said why; here an unreliable
window is dropped and counted, and every input gets a line in report.json. Shards are written
atomically and durably in input order, and a state file records how far the output got, so re-running
the same command after a crash, Ctrl-C or a full disk resumes and produces exactly what an uninterrupted
run does.
"""
from __future__ import annotations

import ctypes
import dataclasses
import itertools
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..media import fsync_path, write_json
from ..version import __version__
from .decode import DataError, VideoDecodeError, iter_timed_frames, resample, videos_in
from .shards import encode_clip, write_shard
from .shots import CutDetector
from .stabilize import MotionEstimator, StabilizeSettings, stabilize_clip

FORMAT_VERSION = 1
STATE_FILE = ".prepare-state.json"


@dataclass(frozen=True)
class PrepareConfig:
    size: int = 64  # output frames are size x size
    frames: int = 32  # frames per clip
    stride: int = 0  # frames between the starts of consecutive clips in a shot (0: `frames`, no overlap)
    fps: float = 0.0  # resample every video to this rate first (0: keep each video's own rate)
    stabilize: bool = True
    min_motion: float = 0.0  # drop clips whose mean |frame difference| (0-255 scale) is below this
    lossless: bool = False  # PNG instead of JPEG inside the shards
    # JPEG quality. 85: the loader's decoding, its whole cost, is markedly cheaper than at 95 for a
    # little more error; most of the error is the 4:2:0 chroma (benchmarks/RESULTS.md, "Data loading").
    quality: int = 85
    # ~50 MB shards at 32x64x64 JPEG: large enough to stream, small enough to shuffle
    clips_per_shard: int = 1000
    # Short side (px) at which cuts are detected and features matched, capped at the source's: 4x the
    # paper's 64 px output is ample detail for a homography at a fraction of full-resolution cost.
    work_size: int = 256
    stabilization: StabilizeSettings = field(default_factory=StabilizeSettings)

    @property
    def clip_stride(self) -> int:
        return self.stride or self.frames

    def validate(self) -> None:
        for name in ("size", "frames", "clips_per_shard", "work_size"):
            if getattr(self, name) < 1:
                raise DataError(f"prepare: --{name.replace('_', '-')} must be at least 1, got "
                                f"{getattr(self, name)}")
        if self.frames < 2:
            raise DataError(f"prepare: --frames must be at least 2, got {self.frames}")
        if self.stride < 0 or self.fps < 0 or self.min_motion < 0:
            raise DataError("prepare: --stride, --fps and --min-motion cannot be negative")
        if not 1 <= self.quality <= 100:
            raise DataError(f"prepare: JPEG quality must be in 1..100, got {self.quality}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- inputs

def list_inputs(inputs: list[str | os.PathLike]) -> tuple[list[Path], list[dict]]:
    """Expand INPUT arguments into video paths, in a stable order.

    Files given explicitly are taken whatever their suffix (a non-video then fails in decoding and is
    reported); folders are searched recursively for video suffixes; a .txt file lists one path per
    line (relative to the list's folder; blank lines and # comments ignored). Missing paths come back
    as report entries, not exceptions: one typo must not stop a long job.
    """
    videos: list[Path] = []
    missing: list[dict] = []
    for item in map(Path, inputs):
        if item.is_dir():
            videos += videos_in(item)
        elif item.is_file() and item.suffix.lower() == ".txt":
            for line in item.read_text(errors="replace").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    path = Path(line) if Path(line).is_absolute() else item.parent / line
                    if path.is_file():
                        videos.append(path)
                    else:
                        missing.append(_skipped(path, f"listed in {item} but not found"))
        elif item.is_file():
            videos.append(item)
        else:
            missing.append(_skipped(item, "no such file or directory"))
    unique = list(dict.fromkeys(videos))  # the same file twice would duplicate its clips
    return unique, missing


def _skipped(path: Path, reason: str) -> dict:
    return {"path": str(path), "status": "skipped", "reason": reason, "frames": 0, "shots": 0, "clips": 0,
            "dropped_unstable": 0, "dropped_static": 0}


# ----------------------------------------------------------------------------- one video

@dataclass
class Clip:
    frames: np.ndarray  # uint8 [T, S, S, 3]
    meta: dict


@dataclass
class VideoStats:
    frames: int = 0
    shots: int = 0
    clips: int = 0
    dropped_unstable: int = 0
    dropped_static: int = 0
    first_drop_reason: str | None = None


def crop_resize(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 [T, H, W, 3] -> [T, size, size, 3]: centre square crop, then area averaging."""
    _, h, w, _ = frames.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frames[:, top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interpolation) for f in square])


def clip_motion(clip: np.ndarray) -> float:
    """Mean |difference| of consecutive frames, 0-255 scale: ~0 for a still shot."""
    return float(np.abs(np.diff(clip.astype(np.int16), axis=0)).mean())


def video_clips(path: Path, cfg: PrepareConfig, stats: VideoStats,
                on_frame: Callable[[], None] | None = None, offset: int = 0) -> Iterator[Clip]:
    """The clips of one video, in order. Streams: memory holds one clip's frames, not the video.
    `offset`: leave out the first frames (decoded, not used; the training loader varies it per pass).

    Raises VideoDecodeError when decoding fails; clips yielded before that are valid.
    """
    T, stride = cfg.frames, cfg.clip_stride
    frames = iter_timed_frames(path, short_side=max(cfg.work_size, cfg.size))
    if cfg.fps:
        frames = resample(frames, cfg.fps)
    estimator = MotionEstimator(cfg.stabilization) if cfg.stabilize else None
    cuts = CutDetector()
    window: deque = deque(maxlen=T)  # (working frame, time, index) of the current shot's last T frames
    motions: deque = deque(maxlen=T - 1)  # pair motions between consecutive frames in `window`
    previous_features = None
    in_shot = 0
    for index, frame in enumerate(itertools.islice(frames, offset, None), start=offset):
        stats.frames += 1
        if on_frame is not None:
            on_frame()
        work = frame.image  # decoded at the working resolution
        fps = cfg.fps or frame.stream_fps or 0.0
        if cuts.update(work) or (window and window[-1][0].shape != work.shape):
            window.clear()  # a clip never spans a cut
            motions.clear()
            in_shot = 0
        if in_shot == 0:
            stats.shots += 1
        if estimator is not None:
            features = estimator.describe(cv2.cvtColor(work, cv2.COLOR_RGB2GRAY))
            if in_shot > 0:
                motions.append(estimator.pair(previous_features, features))
            previous_features = features
        window.append((work, frame.time, index))
        in_shot += 1
        if in_shot < T or (in_shot - T) % stride:
            continue

        stack = np.stack([w for w, _, _ in window])  # [T, h, w, 3] at the working resolution
        residual = None
        if estimator is not None:
            stabilized = stabilize_clip(stack, list(motions), cfg.stabilization)
            if stabilized.reason is not None:
                stats.dropped_unstable += 1
                stats.first_drop_reason = (stats.first_drop_reason
                                           or f"frame {window[0][2]}: {stabilized.reason}")
                continue
            stack = stabilized.frames
            residual = float(stabilized.residual) * cfg.size / min(stack.shape[1:3])  # in output pixels
        clip = crop_resize(stack, cfg.size)
        motion = clip_motion(clip)
        if motion < cfg.min_motion:
            stats.dropped_static += 1
            continue
        stats.clips += 1
        yield Clip(clip, {
            "source": str(path), "start_frame": window[0][2], "start_time": round(window[0][1], 4),
            "fps": round(fps, 4), "frames": T, "size": cfg.size, "shot": stats.shots - 1,
            "stabilized": estimator is not None, "stabilization_residual": residual,
            "motion": round(motion, 3),
        })


@dataclass
class VideoResult:
    index: int
    entry: dict  # the video's line in report.json
    samples: list[dict]  # encoded WebDataset samples, in clip order


def prepare_video(index: int, path: Path, cfg: PrepareConfig, skip: int = 0,
                  on_frame: Callable[[], None] | None = None) -> VideoResult:
    """Process one video completely; never raises for bad input (the reason goes into the entry).
    `skip`: clips already written by an interrupted run (they are cut again but not encoded)."""
    stats, samples, error = VideoStats(), [], None
    started = time.perf_counter()
    try:
        for number, clip in enumerate(video_clips(path, cfg, stats, on_frame)):
            if number >= skip:
                key = f"{index:07d}_{number:05d}"
                samples.append(encode_clip(key, clip.frames, clip.meta, lossless=cfg.lossless,
                                           quality=cfg.quality))
    except VideoDecodeError as e:
        error = str(e)
    except Exception as e:  # noqa: BLE001 - a decoder or OpenCV failure on one file must not stop the run
        error = f"{path}: {type(e).__name__}: {e}"
    entry = {"path": str(path), "frames": stats.frames, "shots": stats.shots, "clips": stats.clips,
             "dropped_unstable": stats.dropped_unstable, "dropped_static": stats.dropped_static,
             "seconds": round(time.perf_counter() - started, 3)}
    if error and stats.clips:
        entry.update(status="partial", reason=f"kept {stats.clips} clips cut before the error: {error}")
    elif error:
        entry.update(status="skipped", reason=error)
    elif stats.clips:
        entry.update(status="ok", reason=None)
    else:
        entry.update(status="skipped", reason=_why_no_clips(path, stats, cfg))
    if stats.first_drop_reason:
        entry["first_drop_reason"] = stats.first_drop_reason
    return VideoResult(index, entry, samples)


def _why_no_clips(path: Path, stats: VideoStats, cfg: PrepareConfig) -> str:
    if stats.dropped_unstable or stats.dropped_static:
        return (f"{path}: no usable clip ({stats.dropped_unstable} dropped by stabilisation, "
                f"{stats.dropped_static} below --min-motion {cfg.min_motion})")
    return (f"{path}: no shot as long as one clip ({stats.frames} frames in {stats.shots} shots, need "
            f"{cfg.frames})")


# ----------------------------------------------------------------------------- worker processes

_frame_counter = None  # a shared counter in worker processes, for the frames progress bar
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _init_worker(counter, parent: int) -> None:
    global _frame_counter
    _frame_counter = counter
    _end_with_parent(parent)
    cv2.setNumThreads(1)  # parallelism comes from the processes; OpenCV's own threads would oversubscribe


def _end_with_parent(parent: int) -> None:
    """Make this worker end as soon as `parent` does, even when that is killed outright (SIGKILL, the
    out-of-memory killer) and cannot stop its pool: the worker would otherwise go on with its video for
    nobody. Linux kills it then (PR_SET_PDEATHSIG); elsewhere a thread looks every second for the parent."""
    if sys.platform.startswith("linux") and ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) == 0:
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
        return
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _count_frame() -> None:
    with _frame_counter.get_lock():
        _frame_counter.value += 1


def _run_task(task: tuple[int, Path, PrepareConfig, int]) -> VideoResult:
    return prepare_video(*task, on_frame=_count_frame)


# ----------------------------------------------------------------------------- the whole job

@dataclass
class PrepareSummary:
    out: Path
    videos_ok: int
    videos_skipped: int
    clips_written: int
    clips_dropped_unstable: int
    clips_dropped_static: int
    frames: int
    shards: int
    seconds: float
    resumed: bool = False
    already_complete: bool = False

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(out=str(self.out), frames_per_second=round(self.frames_per_second, 1),
                 seconds=round(self.seconds, 2))
        return d


def shard_name(number: int) -> str:
    return f"clips-{number:06d}.tar"


# How media.atomic_path names the temporary file of each output while writing it: `.STEM.XXXXXXXX.SUFFIX`.
TEMPORARY_PATTERNS = tuple(f".{Path(name).stem}.*{Path(name).suffix}"
                           for name in ("clips-*.tar", STATE_FILE, "manifest.json", "report.json"))


def remove_temporary_files(out: Path) -> list[Path]:
    """Delete the temporary files a killed run left in `out` (it had no chance to): hidden, so readers already
    pass them by, but each may hold most of a shard. Returns what was removed."""
    stale = sorted({path for pattern in TEMPORARY_PATTERNS for path in out.glob(pattern) if path.is_file()})
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextmanager
def _writing(path: Path, shards_kept: int):
    """Turn a failed write (full disk, no permission, read-only file system) into one line naming the file.
    What is already written stays, and the state file says where the same command resumes."""
    try:
        yield
    except OSError as e:
        raise DataError(f"{path}: cannot write ({e.strerror or e}); the {shards_kept} shards written before "
                        f"are kept: run the same command again to resume once that is fixed") from None


class _ShardBuffer:
    """Collects samples in input order and writes full shards atomically, recording after each shard
    where a resumed run must start: (video index, clips of that video already written)."""

    def __init__(self, out: Path, cfg: PrepareConfig, identity: dict, state: dict):
        self.out, self.cfg, self.identity, self.state = out, cfg, identity, state
        self.pending: list[tuple[int, int, dict]] = []  # (video index, clip number within the video, sample)
        self.entries: dict[int, dict] = {}  # report entries of videos not yet wholly written
        self.clip_offset: dict[int, int] = {state["resume_video"]: state["resume_clip"]}
        # time spent by interrupted runs
        self.started, self.earlier_seconds = time.perf_counter(), state["seconds"]

    def add(self, result: VideoResult) -> None:
        self.entries[result.index] = result.entry
        first = self.clip_offset.get(result.index, 0)
        self.pending += [(result.index, first + i, s) for i, s in enumerate(result.samples)]
        self.clip_offset.pop(result.index, None)
        while len(self.pending) >= self.cfg.clips_per_shard:
            self.flush(self.cfg.clips_per_shard, next_video=result.index + 1)

    def flush(self, count: int, next_video: int) -> None:
        """Write the first `count` pending samples as the next shard (count 0: just record progress)."""
        if count:
            batch, self.pending = self.pending[:count], self.pending[count:]
            path = self.out / shard_name(self.state["shards"])
            with _writing(path, self.state["shards"]):
                write_shard(path, (s for _, _, s in batch))
            self.state["shards"] += 1
            self.state["clips"] += count
        # Resume point: the first sample not yet in a shard, else the first video not yet seen.
        video, clip = (self.pending[0][0], self.pending[0][1]) if self.pending else (next_video, 0)
        for index in sorted(i for i in self.entries if i < video):
            self.state["videos"].append(self.entries.pop(index))
        self.state.update(resume_video=video, resume_clip=clip,
                          seconds=self.earlier_seconds + time.perf_counter() - self.started)
        with _writing(self.out / STATE_FILE, self.state["shards"]):
            write_json(self.out / STATE_FILE, {**self.identity, **self.state})


def prepare(inputs: list[str | os.PathLike], out: str | os.PathLike, cfg: PrepareConfig = PrepareConfig(),
            workers: int = 1, progress: bool = True) -> PrepareSummary:
    """Prepare `inputs` into shards under `out`; resumes an interrupted run of the same command.

    Raises DataError only when nothing usable came out, `out` holds a different preparation, or a file cannot
    be written there (then what was written is kept, and the same command resumes from it).
    """
    cfg.validate()
    out = Path(out)
    videos, missing = list_inputs(inputs)
    # What makes two runs the same preparation (JSON round-tripped, so it compares equal to a saved one).
    identity = json.loads(json.dumps({"format_version": FORMAT_VERSION, "config": cfg.to_dict(),
                                      "inputs": [str(p) for p in videos]}))

    manifest_path, state_path = out / "manifest.json", out / STATE_FILE
    manifest = _read_json(manifest_path)
    previous = _read_json(state_path) or manifest
    if previous is not None:
        if {k: previous.get(k) for k in identity} != identity:
            raise DataError(f"{out}: holds clips prepared from other inputs or settings; "
                            "choose another --out")
        if manifest is not None:
            return _summary_from_manifest(out, manifest)
    state = {"shards": 0, "clips": 0, "resume_video": 0, "resume_clip": 0, "videos": [], "seconds": 0.0}
    resumed = previous is not None
    if resumed:
        state.update({k: previous[k] for k in state})
        print(f"resuming {out}: {state['shards']} shards ({state['clips']} clips) already written; "
              f"continuing at video {state['resume_video'] + 1} of {len(videos)}", file=sys.stderr)
    with _writing(out, state["shards"]):
        _make_folder(out)
        removed = remove_temporary_files(out)
    if removed:
        print(f"removed {len(removed)} temporary files an interrupted run left in {out}", file=sys.stderr)
    buffer = _ShardBuffer(out, cfg, identity, state)
    start = state["resume_video"]
    tasks = [(i, videos[i], cfg, state["resume_clip"] if i == start else 0)
             for i in range(start, len(videos))]

    file_bar = tqdm(total=len(videos), initial=start, unit="video", desc="videos", disable=not progress,
                    dynamic_ncols=True)
    frame_bar = tqdm(unit="frame", desc="frames", disable=not progress, dynamic_ncols=True, position=1)
    try:
        for result in _results(tasks, workers, frame_bar):
            buffer.add(result)
            file_bar.update(1)
            file_bar.set_postfix(clips=state["clips"] + len(buffer.pending), refresh=False)
        buffer.flush(len(buffer.pending), next_video=len(videos))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {state['shards']} shards kept in {out}; run the same command again to resume",
              file=sys.stderr)
        raise
    finally:
        frame_bar.close()
        file_bar.close()

    entries = missing + state["videos"]
    seconds = state["seconds"]
    summary = PrepareSummary(
        out=out,
        videos_ok=sum(e["status"] != "skipped" for e in entries),
        videos_skipped=sum(e["status"] == "skipped" for e in entries),
        clips_written=state["clips"],
        clips_dropped_unstable=sum(e["dropped_unstable"] for e in entries),
        clips_dropped_static=sum(e["dropped_static"] for e in entries),
        frames=sum(e["frames"] for e in entries),
        shards=state["shards"],
        seconds=seconds,
        resumed=resumed,
    )
    with _writing(out / "report.json", summary.shards):
        write_json(out / "report.json", {"videos": entries})
    if summary.clips_written == 0:
        raise DataError(f"{out}: no clips came out of {len(videos) + len(missing)} inputs (reasons in "
                        f"{out / 'report.json'})")
    # The manifest comes last: its shard list is what readers of the folder take, so it must name only
    # complete shards, and a folder without one is still being prepared.
    with _writing(manifest_path, summary.shards):
        write_json(manifest_path, {
            **identity, "videogan_version": __version__, "format": "webdataset",
            "image": "png" if cfg.lossless else "jpg",
            "layout": "frames stacked vertically: height frames*size, width size",
            "frames": cfg.frames, "size": cfg.size,
            "shards": [shard_name(i) for i in range(summary.shards)],
            "summary": {k: v for k, v in summary.to_dict().items()
                        if k not in ("out", "resumed", "already_complete")},
        })
        state_path.unlink(missing_ok=True)
    return summary


def _make_folder(out: Path) -> None:
    """Create `out` if needed, durably: its own entry in the parent folder is synced too."""
    if not out.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        fsync_path(out.parent)


def _results(tasks: list, workers: int, frame_bar: tqdm) -> Iterator[VideoResult]:
    """Process videos in order: in this process, or on a pool of `workers` processes
    (results still in order)."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield prepare_video(*task, on_frame=lambda: frame_bar.update(1))
        return
    context = multiprocessing.get_context("spawn")  # no fork: safe beside torch's and OpenCV's threads
    counter = context.Value("q", 0)
    with context.Pool(min(workers, len(tasks)), initializer=_init_worker,
                      initargs=(counter, os.getpid())) as pool:
        results = pool.imap(_run_task, tasks, chunksize=1)
        for _ in range(len(tasks)):
            while True:
                try:
                    result = results.next(timeout=0.5)
                    break
                except multiprocessing.TimeoutError:
                    frame_bar.update(counter.value - frame_bar.n)
            frame_bar.update(counter.value - frame_bar.n)
            yield result


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, RecursionError, OSError) as e:
        raise DataError(f"{path}: unreadable ({e}); delete it to start this preparation over") from None


def _summary_from_manifest(out: Path, manifest: dict) -> PrepareSummary:
    """The summary a finished preparation recorded (its counts; `out` as now given)."""
    recorded = {f.name: manifest["summary"][f.name] for f in dataclasses.fields(PrepareSummary)
                if f.name not in ("out", "resumed", "already_complete")}
    return PrepareSummary(out=out, already_complete=True, **recorded)
