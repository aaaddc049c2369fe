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

The sorted inputs split into N partitions (round robin, a function of the list and N alone); each writes
its own shards (clips-pIIIII-NNNNNN.tar), state, report and, last, a completion marker, so partitions run
at once on different machines (`--partition I/N`) without a coordinator, and `finalize` then writes the
data set's manifest and merged report. Sample keys are the video's place in the whole sorted list and the
clip's number in the video, so the clips are the same, byte for byte, however the work was split. A plain
run is partition 0 of 1 and its finalisation.
"""
from __future__ import annotations

import ctypes
import dataclasses
import hashlib
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

from ..media import write_json
from ..version import __version__
from .decode import DataError, VideoDecodeError, resample
from .inputs import VideoSource, list_inputs, source, timed_frames
from .shards import MANIFEST, encode_clip, write_shard
from .shots import CutDetector
from .stabilize import MotionEstimator, StabilizeSettings, stabilize_clip
from .storage import Folder, output_location

FORMAT_VERSION = 2  # 2: shards named by partition; inputs sorted, recorded as a count and digest
IDENTITY = ("format_version", "config", "inputs", "inputs_sha256", "partitions")  # see _identity


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


def video_clips(path: VideoSource | Path, cfg: PrepareConfig, stats: VideoStats,
                on_frame: Callable[[], None] | None = None, offset: int = 0) -> Iterator[Clip]:
    """The clips of one video (a path, or a source: a URL, a span of seconds), in order. Streams: memory holds
    one clip's frames, not the video.
    `offset`: leave out the first frames (decoded, not used; the training loader varies it per pass).

    Raises VideoDecodeError when decoding fails; clips yielded before that are valid.
    """
    T, stride = cfg.frames, cfg.clip_stride
    path = source(path)
    frames = timed_frames(path, short_side=max(cfg.work_size, cfg.size))
    if cfg.fps:
        frames = resample(frames, cfg.fps)
    estimator = MotionEstimator(cfg.stabilization) if cfg.stabilize else None
    cuts = CutDetector()
    window: deque = deque(maxlen=T)  # (working frame, time, index) of the current shot's last T frames
    motions: deque = deque(maxlen=T - 1)  # pair motions between consecutive frames in `window`
    features = None  # the previous frame's, for the motion from it to the next
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
        if estimator is not None:  # a shot starts afresh, so its motions depend on its own frames only
            gray = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
            if in_shot == 0:
                features = estimator.describe(gray)
            else:
                motion, features = estimator.follow(features, gray)
                motions.append(motion)
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


def prepare_video(index: int, path: VideoSource | Path, cfg: PrepareConfig, skip: int = 0,
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


def _why_no_clips(path: VideoSource, stats: VideoStats, cfg: PrepareConfig) -> str:
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


def _run_task(task: tuple[int, VideoSource, PrepareConfig, int]) -> VideoResult:
    return prepare_video(*task, on_frame=_count_frame)


# ----------------------------------------------------------------------------- the whole job

@dataclass
class PrepareSummary:
    out: Path | str  # a local folder, or the URL of one
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
    partition: str | None = None  # "I/N" for one partition's run, None for a whole preparation

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(out=str(self.out), frames_per_second=round(self.frames_per_second, 1),
                 seconds=round(self.seconds, 2))
        return d


# Recorded counts: what a finished partition's marker and the manifest keep of a summary.
_COUNTS = tuple(f.name for f in dataclasses.fields(PrepareSummary)
                if f.name not in ("out", "resumed", "already_complete", "partition"))
MAX_PARTITIONS = 99999  # five digits in the names


def shard_name(partition: int, number: int) -> str:
    """Shards are named by partition, so that partitions running at once on different machines never write
    the same name, and a finished partition's shards never change when others are added."""
    return f"clips-p{partition:05d}-{number:06d}.tar"


def state_name(partition: int) -> str:
    return f".prepare-state-p{partition:05d}.json"


def report_name(partition: int) -> str:
    return f"report-p{partition:05d}.json"


def marker_name(partition: int) -> str:
    """The completion marker, written last by a partition: its shards, counts and identity."""
    return f"done-p{partition:05d}.json"


STATE_FILE = state_name(0)  # the state file of a plain run (partition 0 of 1)


def parse_partition(text: str) -> tuple[int, int]:
    """"I/N" -> (I, N), 0 <= I < N; DataError in one line otherwise."""
    index, slash, count = text.partition("/")
    try:
        if not slash:
            raise ValueError
        i, n = int(index), int(count)
    except ValueError:
        raise DataError(f"prepare: --partition must be I/N (e.g. 3/8), got {text!r}") from None
    if not 1 <= n <= MAX_PARTITIONS or not 0 <= i < n:
        raise DataError(f"prepare: --partition {text}: need 0 <= I < N <= {MAX_PARTITIONS}")
    return i, n


def partition_members(videos: int, partition: int, count: int) -> range:
    """The positions in the sorted input list that partition `partition` of `count` prepares: every
    count-th, from its own index. A function of the list and N alone, so every machine computes the same
    split; round robin rather than blocks, so that a folder of long videos sorted together is shared."""
    return range(partition, videos, count)


def sorted_inputs(inputs: list[str | os.PathLike]) -> tuple[list[VideoSource], list[dict]]:
    """`list_inputs`, sorted by location and span: the order of the arguments (a shell's glob on each node, a
    listing of object storage, a manifest's rows) must not change the split or the sample keys."""
    videos, missing = list_inputs(inputs)
    return sorted(videos, key=VideoSource.sort_key), missing


def _identity(cfg: PrepareConfig, videos: list[VideoSource], partitions: int) -> dict:
    """What makes two runs the same preparation (JSON round-tripped, so it compares equal to a saved one).
    The inputs as a count and a digest: every partition's marker carries it, and the list may be millions
    long (the paths themselves are in the reports)."""
    listing = "\n".join(map(str, videos)).encode()
    return json.loads(json.dumps({"format_version": FORMAT_VERSION, "config": cfg.to_dict(),
                                  "inputs": len(videos), "inputs_sha256": hashlib.sha256(listing).hexdigest(),
                                  "partitions": partitions}))


def _temporary_patterns(names: tuple[str, ...]) -> tuple[str, ...]:
    # How media.atomic_path names the temporary file of each output while writing it: `.STEM.XXXXXXXX.SUFFIX`.
    return tuple(f".{Path(name).stem}.*{Path(name).suffix}" for name in names)


def remove_temporary_files(out: Path | str | Folder, partition: int | None = 0) -> list[Path | str]:
    """Delete the temporary files a killed run of `partition` left in `out` (it had no chance to): hidden, so
    readers already pass them by, but each may hold most of a shard. Only that partition's: others may be
    running now on other machines. None: the files `--finalize` writes. Returns what was removed.
    (An object store never holds any: its files are uploaded whole, see storage.py.)"""
    folder = out if isinstance(out, Folder) else Folder(out)
    if partition is None:
        patterns = _temporary_patterns(("manifest.json", "report.json"))
    else:
        shards = shard_name(partition, 0).replace("000000.tar", "*.tar")
        patterns = _temporary_patterns((shards, state_name(partition), report_name(partition),
                                        marker_name(partition)))
    stale = sorted({name for pattern in patterns for name in folder.glob(pattern)})
    for name in stale:
        folder.remove(name)
    return [folder / name for name in stale]


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
    """Collects one partition's samples in order and writes full shards atomically, recording after each
    shard where a resumed run must start: (position in the partition's videos, clips of that video already
    written)."""

    def __init__(self, out: Folder, cfg: PrepareConfig, partition: int, identity: dict, state: dict):
        self.out, self.cfg, self.partition, self.identity, self.state = out, cfg, partition, identity, state
        self.pending: list[tuple[int, int, dict]] = []  # (position, clip number within the video, sample)
        self.entries: dict[int, dict] = {}  # report entries of videos not yet wholly written
        self.clip_offset: dict[int, int] = {state["resume_video"]: state["resume_clip"]}
        # time spent by interrupted runs
        self.started, self.earlier_seconds = time.perf_counter(), state["seconds"]

    def add(self, position: int, result: VideoResult) -> None:
        self.entries[position] = result.entry
        first = self.clip_offset.get(position, 0)
        self.pending += [(position, first + i, s) for i, s in enumerate(result.samples)]
        self.clip_offset.pop(position, None)
        while len(self.pending) >= self.cfg.clips_per_shard:
            self.flush(self.cfg.clips_per_shard, next_video=position + 1)

    def flush(self, count: int, next_video: int) -> None:
        """Write the first `count` pending samples as the next shard (count 0: just record progress)."""
        if count:
            batch, self.pending = self.pending[:count], self.pending[count:]
            name = shard_name(self.partition, self.state["shards"])
            with _writing(self.out / name, self.state["shards"]):
                self.out.write(name, lambda path: write_shard(path, (s for _, _, s in batch)))
            self.state["shards"] += 1
            self.state["clips"] += count
        # Resume point: the first sample not yet in a shard, else the first video not yet seen.
        video, clip = (self.pending[0][0], self.pending[0][1]) if self.pending else (next_video, 0)
        for position in sorted(i for i in self.entries if i < video):
            self.state["videos"].append(self.entries.pop(position))
        self.state.update(resume_video=video, resume_clip=clip,
                          seconds=self.earlier_seconds + time.perf_counter() - self.started)
        name, state = state_name(self.partition), {**self.identity, "partition": self.partition, **self.state}
        with _writing(self.out / name, self.state["shards"]):
            self.out.write(name, lambda path: write_json(path, state))


def _check_folder(out: Folder, identity: dict, partition: int | None = None) -> None:
    """Refuse a folder holding (part of) another preparation: other inputs, settings or number of partitions.
    Checked against the manifest, this partition's own files and one other finished partition: reading every
    marker in every partition would cost N^2 reads on a shared file system; `finalize` checks them all."""
    others = out.glob("done-p*.json")[:1]
    own = [] if partition is None else [marker_name(partition), state_name(partition)]
    for name in [MANIFEST, *own, *others]:
        previous = _read_json(out, name)
        if previous is not None and {k: previous.get(k) for k in identity} != identity:
            raise DataError(f"{out}: holds clips prepared from other inputs or settings (see {name}); "
                            "choose another --out")


ENGINES = ("local", "ray")  # how `prepare` runs the partitions: this machine's processes, or Ray tasks


def prepare(inputs: list[str | os.PathLike], out: str | os.PathLike, cfg: PrepareConfig = PrepareConfig(),
            workers: int = 1, progress: bool = True, partition: tuple[int, int] | None = None,
            partitions: int | None = None, engine: str = "local",
            address: str | None = None) -> PrepareSummary:
    """Prepare `inputs` into shards under `out`; resumes an interrupted run of the same command.

    partition (I, N): only partition I of N (its shards, report and completion marker; `finalize` makes the
    data set once all are done). Otherwise `engine` runs all `partitions` partitions, then `finalize`:
    "local", each in turn on this machine over a pool of `workers` processes (by default one partition: a
    plain run is partition 0 of 1); "ray", each as a task on the Ray cluster at `address` (None: a local Ray
    instance; by default one partition per video, see `ray_engine.default_partitions`). The number of
    partitions is part of the preparation's identity: resuming needs the same.

    Raises DataError only when nothing usable came out, `out` holds a different preparation, or a file cannot
    be written there (then what was written is kept, and the same command resumes from it).
    """
    cfg.validate()
    if engine not in ENGINES:
        raise DataError(f"prepare: engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if address is not None and engine != "ray":
        raise DataError("prepare: --address is the Ray cluster's: give it with --engine ray")
    if partition is not None and (engine != "local" or partitions is not None):
        raise DataError("prepare: --partition I/N runs one partition by itself: give it without --engine ray "
                        "or --partitions")
    if engine == "ray":
        from . import ray_engine  # Ray itself, an optional extra, is imported only when the engine runs
        ray_engine.import_ray()  # without it, one line now rather than after listing the inputs
    out = output_location(out)
    folder = Folder(out)  # without the driver for its URL, one line now rather than after listing the inputs
    videos, missing = sorted_inputs(inputs)
    if partition is not None:
        return prepare_partition(videos, missing, out, cfg, *partition, workers=workers, progress=progress)
    if partitions is None:
        partitions = 1 if engine == "local" else ray_engine.default_partitions(len(videos))
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise DataError(f"prepare: partitions must be in 1..{MAX_PARTITIONS}, got {partitions}")
    _check_folder(folder, _identity(cfg, videos, partitions), 0)
    manifest = _read_json(folder, MANIFEST)
    if manifest is not None:
        return _summary_from(out, manifest, already_complete=True)
    if engine == "ray":
        return ray_engine.prepare_with_ray(videos, missing, out, cfg, partitions, address=address,
                                           progress=progress)
    runs = [prepare_partition(videos, missing, out, cfg, i, partitions, workers=workers, progress=progress)
            for i in range(partitions)]
    summary = finalize(out)
    summary.resumed = any(run.resumed or run.already_complete for run in runs)  # went on from earlier work
    return summary


def prepare_partition(videos: list[VideoSource], missing: list[dict], out: Path | str, cfg: PrepareConfig,
                      partition: int, partitions: int, workers: int = 1, progress: bool = True,
                      on_frames: Callable[[int], None] | None = None) -> PrepareSummary:
    """Partition `partition` of `partitions` of the sorted `videos` (`missing`: inputs not found, reported
    by partition 0) into its own shards, report and completion marker under `out`. Does nothing once that
    marker is there; resumes where an interrupted run of it stopped. `out`: a local folder or an fsspec
    URL."""
    cfg.validate()
    if not 0 <= partition < partitions <= MAX_PARTITIONS:
        raise DataError(f"prepare: partition {partition}/{partitions}: need 0 <= I < N <= {MAX_PARTITIONS}")
    out = output_location(out)
    folder = Folder(out)
    identity = _identity(cfg, videos, partitions)
    _check_folder(folder, identity, partition)
    name = f"{partition}/{partitions}"
    marker = _read_json(folder, marker_name(partition))
    if marker is not None:
        return _summary_from(out, marker, already_complete=True, partition=name)
    members = partition_members(len(videos), partition, partitions)
    missing = missing if partition == 0 else []
    state = {"shards": 0, "clips": 0, "resume_video": 0, "resume_clip": 0, "videos": [], "seconds": 0.0}
    previous = _read_json(folder, state_name(partition))
    resumed = previous is not None
    if resumed:
        state.update({k: previous[k] for k in state})
        print(f"resuming {out} partition {name}: {state['shards']} shards ({state['clips']} clips) already "
              f"written; continuing at video {state['resume_video'] + 1} of {len(members)}", file=sys.stderr)
    with _writing(out, state["shards"]):
        folder.make()
        removed = remove_temporary_files(folder, partition)
    if removed:
        print(f"removed {len(removed)} temporary files an interrupted run left in {out}", file=sys.stderr)
    buffer = _ShardBuffer(folder, cfg, partition, identity, state)
    start = state["resume_video"]
    # Sample keys carry the video's place in the whole sorted list, not in the partition: the clips are the
    # same however the work is split.
    tasks = [(members[k], videos[members[k]], cfg, state["resume_clip"] if k == start else 0)
             for k in range(start, len(members))]

    file_bar = tqdm(total=len(members), initial=start, unit="video", desc="videos", disable=not progress,
                    dynamic_ncols=True)
    frame_bar = tqdm(unit="frame", desc="frames", disable=not progress, dynamic_ncols=True, position=1)
    try:
        for position, result in enumerate(_results(tasks, workers, frame_bar, on_frames), start=start):
            buffer.add(position, result)
            file_bar.update(1)
            file_bar.set_postfix(clips=state["clips"] + len(buffer.pending), refresh=False)
        buffer.flush(len(buffer.pending), next_video=len(members))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {state['shards']} shards kept in {out}; run the same command again to resume",
              file=sys.stderr)
        raise
    finally:
        frame_bar.close()
        file_bar.close()

    entries = missing + state["videos"]
    summary = PrepareSummary(
        out=out,
        videos_ok=sum(e["status"] != "skipped" for e in entries),
        videos_skipped=sum(e["status"] == "skipped" for e in entries),
        clips_written=state["clips"],
        clips_dropped_unstable=sum(e["dropped_unstable"] for e in entries),
        clips_dropped_static=sum(e["dropped_static"] for e in entries),
        frames=sum(e["frames"] for e in entries),
        shards=state["shards"],
        seconds=state["seconds"],
        resumed=resumed,
        partition=name,
    )
    _put_json(folder, report_name(partition), {"partition": partition, "partitions": partitions,
                                               "missing": missing, "videos": state["videos"]}, summary.shards)
    # The marker comes last: a partition without one is still being prepared.
    _put_json(folder, marker_name(partition), {
        **identity, "partition": partition, "videogan_version": __version__,
        "shards": [shard_name(partition, i) for i in range(summary.shards)],
        "summary": {k: getattr(summary, k) for k in _COUNTS}}, summary.shards)
    with _writing(folder / state_name(partition), summary.shards):
        folder.remove(state_name(partition))
    return summary


def number_ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8": the partitions a message names, however many."""
    runs = [list(g) for _, g in itertools.groupby(enumerate(numbers), key=lambda pair: pair[1] - pair[0])]
    groups = [[n for _, n in run] for run in runs]
    return ", ".join(str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups)


def finalize(out: str | os.PathLike) -> PrepareSummary:
    """Once every partition of the preparation in `out` is complete: its manifest.json (all shards, counts,
    config, version) and the merged report.json. DataError in one line naming the missing partitions
    otherwise (and when nothing at all came out, after writing the report). `out`: a local folder or an fsspec
    URL."""
    out = output_location(out)
    folder = Folder(out)
    markers = {}
    for name in folder.glob("done-p*.json"):
        marker = _read_json(folder, name)
        if not isinstance(marker, dict) or not isinstance(marker.get("partition"), int):
            raise DataError(f"{folder / name}: not a completion marker written by videogan prepare")
        markers[marker["partition"]] = marker
    started = [_read_json(folder, name) or {} for name in folder.glob(".prepare-state-p*.json")]
    counts = {m.get("partitions") for m in [*markers.values(), *started]}
    if not counts:
        manifest = _read_json(folder, MANIFEST)
        if manifest is not None:
            return _summary_from(out, manifest, already_complete=True)
        raise DataError(f"{out}: no partition of a preparation here to finalize")
    identities = {json.dumps({k: m.get(k) for k in IDENTITY}, sort_keys=True)
                  for m in [*markers.values(), *started]}
    if len(counts) > 1 or len(identities) > 1:
        raise DataError(f"{out}: holds partitions of different preparations (partitions of "
                        f"{', '.join(map(str, sorted(counts, key=str)))}); prepare each into its own --out")
    partitions = counts.pop()
    absent = [i for i in range(partitions) if i not in markers]
    if absent:
        raise DataError(f"{out}: {len(absent)} of {partitions} partitions not complete: "
                        f"{number_ranges(absent)} "
                        f"(run `videogan prepare INPUT... --out {out} --partition I/{partitions}` for each, "
                        "then --finalize again)")
    with _writing(out, 0):
        remove_temporary_files(folder, None)
    missing, entries = [], []
    for i in range(partitions):
        report = _read_json(folder, report_name(i))
        if report is None:
            raise DataError(f"{folder / report_name(i)}: missing, though partition {i} is marked complete; "
                            f"delete {marker_name(i)} and run partition {i}/{partitions} again")
        missing += report["missing"]
        entries += report["videos"]
    entries = missing + sorted(entries, key=lambda e: e["path"])  # the order of the sorted inputs
    recorded = [markers[i]["summary"] for i in range(partitions)]
    summary = PrepareSummary(out=out, **{k: sum(r[k] for r in recorded) for k in _COUNTS})
    _put_json(folder, "report.json", {"videos": entries}, summary.shards)
    if summary.clips_written == 0:
        raise DataError(f"{out}: no clips came out of {markers[0]['inputs'] + len(missing)} inputs "
                        f"(reasons in {folder / 'report.json'})")
    identity = {k: markers[0][k] for k in IDENTITY}
    cfg = identity["config"]
    # The manifest comes last: its shard list is what readers of the folder take, so it must name only
    # complete shards, and a folder without one is still being prepared.
    _put_json(folder, MANIFEST, {
        **identity, "videogan_version": __version__, "format": "webdataset",
        "image": "png" if cfg["lossless"] else "jpg",
        "layout": "frames stacked vertically: height frames*size, width size",
        "frames": cfg["frames"], "size": cfg["size"],
        "shards": [name for i in range(partitions) for name in markers[i]["shards"]],
        "summary": {k: getattr(summary, k) for k in _COUNTS},
    }, summary.shards)
    return summary


def _results(tasks: list, workers: int, frame_bar: tqdm,
             on_frames: Callable[[int], None] | None = None) -> Iterator[VideoResult]:
    """Process videos in order: in this process, or on a pool of `workers` processes
    (results still in order). Frames decoded are counted on `frame_bar` and told to `on_frames` (the Ray
    engine's progress across the cluster) as they come."""
    counted = 0

    def count(total: int) -> None:  # `total` frames decoded so far
        nonlocal counted
        frame_bar.update(total - counted)
        if on_frames is not None and total > counted:
            on_frames(total - counted)
        counted = total

    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield prepare_video(*task, on_frame=lambda: count(counted + 1))
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
                    count(counter.value)
            count(counter.value)
            yield result


def _put_json(folder: Folder, name: str, data: dict, shards_kept: int) -> None:
    """Write `name` in `folder` atomically (storage.Folder.write), a failure as one line (_writing)."""
    with _writing(folder / name, shards_kept):
        folder.write(name, lambda path: write_json(path, data))


def _read_json(folder: Folder, name: str) -> dict | None:
    """The JSON file `name` in `folder`; None when there is none (or it is gone since: another partition's
    state file, removed as that one finished)."""
    try:
        data = folder.read_bytes(name)
        return None if data is None else json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, OSError) as e:
        raise DataError(f"{folder / name}: unreadable ({e}); delete it to start this preparation "
                        "over") from None


def _summary_from(out: Path | str, recorded: dict, already_complete: bool = False,
                  partition: str | None = None) -> PrepareSummary:
    """The summary a finished preparation (manifest) or partition (marker) recorded; `out` as now given."""
    return PrepareSummary(out=out, already_complete=already_complete, partition=partition,
                          **{k: recorded["summary"][k] for k in _COUNTS})
