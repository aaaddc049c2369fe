"""`videogan prepare --engine ray`: the partitions of one preparation as Ray tasks on a Ray cluster.

Each partition (see `prepare.partition_members`) is one task on one CPU, which runs `prepare_partition` as
a `--partition I/N` run would: its own shards, report and completion marker under the output folder,
resuming by itself. So Ray only schedules: a task lost with its worker or node is run again (`max_retries`)
and goes on from the partition's last shard, and the clips are the same, byte for byte, as the local
engine's. The output folder must be the same path on every node (a shared file system), and so must the
inputs. The driver shows progress across the cluster (partitions done; frames decoded, which tasks report to
a small actor) and, once every partition is complete, writes the manifest and merged report with `finalize`.

Ray is an optional extra (`pip install 'videogan[ray]'`), imported only here and only when this engine runs.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
from tqdm import tqdm

from ..errors import VideoGANError
from .decode import DataError
from .prepare import PrepareConfig, PrepareSummary, finalize, number_ranges, prepare_partition

MAX_RETRIES = 3  # runs of a task after its worker process or node was lost; each resumes the partition
DEFAULT_PARTITIONS_CAP = 10_000  # --partitions by default: one per video, at most this many
REPORT_SECONDS = 0.5  # how often a task sends its count of frames decoded, and the driver redraws


def default_partitions(videos: int) -> int:
    """One partition per video, so that a cluster shares even a few long videos; at most 10,000, so that
    partitions stay long enough (and their last, partial shards few enough) with millions of videos, while
    still several per core of a large cluster, which balances the load."""
    return max(1, min(videos, DEFAULT_PARTITIONS_CAP))


def import_ray():
    """Ray, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DataError("prepare --engine ray needs Ray: install it with pip install 'videogan[ray]'"
                        ) from None
    return ray


class FrameCount:
    """The frames decoded by all tasks so far: a Ray actor that tasks add to and the driver reads."""

    def __init__(self) -> None:
        self.frames = 0

    def add(self, frames: int) -> None:
        self.frames += frames

    def total(self) -> int:
        return self.frames


class _Reporter:
    """Sends a task's frames decoded to the FrameCount actor in batches, at most every REPORT_SECONDS: one
    remote call per frame would cost more than decoding it."""

    def __init__(self, counter) -> None:
        self.counter, self.unsent, self.sent = counter, 0, time.monotonic()

    def __call__(self, frames: int) -> None:
        self.unsent += frames
        if time.monotonic() - self.sent >= REPORT_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.unsent:
            self.counter.add.remote(self.unsent)
        self.unsent, self.sent = 0, time.monotonic()


@contextmanager
def _working_directory(folder: str) -> Iterator[None]:
    """Relative inputs and output mean what they meant where the command ran (the shared file system has the
    same paths on every node); the worker process, which Ray reuses for other tasks, gets its own back."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def run_partition(videos: list, missing: list[dict], out, cfg: PrepareConfig, partition: int, partitions: int,
                  cwd: str, counter) -> PrepareSummary:
    """One Ray task: partition `partition` of `partitions`, on one CPU (OpenCV's own threads would take
    cores that other tasks were given)."""
    cv2.setNumThreads(1)
    reporter = _Reporter(counter)
    with _working_directory(cwd):
        try:
            return prepare_partition(videos, missing, out, cfg, partition, partitions, workers=1,
                                     progress=False, on_frames=reporter)
        finally:
            reporter.flush()


def _reason(error: Exception) -> str:
    """One line for a failed task: the partition's own error message where it raised one (a RayTaskError's
    cause), else what Ray says happened to it (worker or node lost after every retry)."""
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, VideoGANError):
        text = str(cause)
    else:
        text = f"{type(cause).__name__}: {cause}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def _connect(ray, address: str | None) -> bool:
    """Connect to the cluster at `address` ("auto": the one this node belongs to; HOST:PORT: its head node),
    or start a Ray instance of this machine's own (None). False when this process already was connected
    (then it stays connected afterwards)."""
    if ray.is_initialized():
        return False
    # Not the cluster's logs on this terminal (the tasks' output stays in each node's Ray logs): what matters
    # here is in the progress bars, the partitions' reports and the one line naming a failed partition.
    options = dict(logging_level="WARNING", configure_logging=True, log_to_driver=False)
    try:
        if address is None:
            ray.init(address="local", include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = "a local Ray instance" if address is None else f"the Ray cluster at --address {address}"
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise DataError(f"prepare --engine ray: cannot connect to {where}: {first}") from None
    return True


def prepare_with_ray(videos: list, missing: list[dict], out, cfg: PrepareConfig, partitions: int,
                     address: str | None = None, progress: bool = True) -> PrepareSummary:
    """Prepare all `partitions` partitions of the sorted `videos` into `out` as Ray tasks, then `finalize`.

    `videos` are passed to the tasks as they are (paths or source descriptions, the same list on every node).
    Partitions already complete are no-ops, interrupted ones resume: re-running the same command after a
    failure does only what is left. Raises DataError in one line naming the partitions that failed, after the
    others have finished (their work is kept).
    """
    ray = import_ray()
    connected_here = _connect(ray, address)
    try:
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(run_partition)
        counter = ray.remote(num_cpus=0)(FrameCount).remote()
        shared = ray.put(videos)  # once, not once per task: the list may be millions long
        cwd = os.getcwd()
        pending = {task.remote(shared, missing, out, cfg, i, partitions, cwd, counter): i
                   for i in range(partitions)}
        runs, failures = _wait(ray, pending, partitions, counter, progress)
    finally:
        if connected_here:
            ray.shutdown()
    if failures:
        numbers = sorted(failures)
        raise DataError(f"{out}: {len(numbers)} of {partitions} partitions failed "
                        f"({number_ranges(numbers)}); "
                        f"first, partition {numbers[0]}/{partitions}: {failures[numbers[0]]}; the others are "
                        "complete: run the same command again to retry the failed ones")
    summary = finalize(out)
    summary.resumed = any(run.resumed or run.already_complete for run in runs)  # went on from earlier work
    return summary


def _wait(ray, pending: dict, partitions: int, counter,
          progress: bool) -> tuple[list[PrepareSummary], dict[int, str]]:
    """Collect the tasks' results as they finish, redrawing the bars: partitions done across the cluster and
    frames decoded. Each failed partition is named in one line as it fails."""
    partition_bar = tqdm(total=partitions, unit="partition", desc="partitions", disable=not progress,
                         dynamic_ncols=True)
    frame_bar = tqdm(unit="frame", desc="frames", disable=not progress, dynamic_ncols=True, position=1)
    runs, failures = [], {}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=REPORT_SECONDS)
            for ref in done:
                number = pending.pop(ref)
                try:
                    runs.append(ray.get(ref))
                except ray.exceptions.RayError as e:
                    failures[number] = _reason(e)
                    tqdm.write(f"partition {number}/{partitions} failed: {failures[number]}", file=sys.stderr)
                partition_bar.update(1)
                if failures:
                    partition_bar.set_postfix(failed=len(failures), refresh=False)
            try:
                frames = ray.get(counter.total.remote(), timeout=10)
                frame_bar.update(frames - frame_bar.n)
            except ray.exceptions.RayError:
                pass  # the count is only for the bar; the partitions' own reports have the frames
    except KeyboardInterrupt:
        print("\ninterrupted: finished partitions are kept; run the same command again to resume",
              file=sys.stderr)
        raise
    finally:
        frame_bar.close()
        partition_bar.close()
    return runs, failures

