"""Run logging: metrics.jsonl (always), TensorBoard events (when tensorboard is installed).

Only the main process logs; on resume, entries after the resumed step are dropped so the
log reads as one uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import torch

from ..media import atomic_path


def truncate_metrics(path: Path, after_step: int, reopened: Collection[str] = ()) -> None:
    """Drop metrics.jsonl entries with step > after_step (written after the checkpoint we resume from), and
    the entry at after_step that holds any of the values `reopened`: the checkpoint carried that entry's
    interval on (a run that ended between two log_every steps), and the resumed run logs it again, whole, at
    the next one."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            if row["step"] < after_step or (row["step"] == after_step and not row.keys() & set(reopened)):
                kept.append(line)
        except (json.JSONDecodeError, RecursionError, KeyError, TypeError, AttributeError):
            continue  # a line cut short by a crash
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept))


class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool, start_step: int = 0, reopened: Collection[str] = ()):
        self.enabled = enabled
        self.tensorboard = None
        if not enabled:
            return
        self.metrics_path = run_dir / "metrics.jsonl"
        truncate_metrics(self.metrics_path, start_step, reopened)
        self.file = self.metrics_path.open("a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step or None)
        except ImportError:  # optional extra: pip install 'videogan[tensorboard]'
            self.tensorboard = None

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, step)

    def sync(self) -> None:
        """Flush metrics.jsonl to the disk: called before a checkpoint, so that the rows a resume from it
        keeps survive a power cut as the checkpoint does."""
        if self.enabled:
            os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tensorboard is not None:
                self.tensorboard.close()


class IntervalMeter:
    """Averages per-step values over a logging interval and measures its speed."""

    def __init__(self, clips_per_step: int, elapsed: float = 0.0):
        self.clips_per_step = clips_per_step
        self.elapsed = elapsed  # training seconds so far, carried across resumes
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}  # per value: some (the lazy R1 penalty) are not measured every step
        self._count = 0
        self._start = time.perf_counter()

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value.detach())
            self._counts[key] = self._counts.get(key, 0) + 1
        self._count += 1

    def flush(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
              restart: bool = True) -> dict[str, float]:
        """Means since the last flush (reduced across ranks by `reduce`), seconds_per_step, clips_per_second,
        time. With restart=False the interval stays open (a run's last row between two log_every steps: the
        checkpoint carries the interval on, see `state`)."""
        now = time.perf_counter()
        seconds, count = now - self._start, max(self._count, 1)
        means = {k: reduce(torch.tensor(v / self._counts[k])).item() for k, v in self._sums.items()}
        means.update(seconds_per_step=seconds / count, clips_per_second=count * self.clips_per_step / seconds,
                     time=round(self.elapsed + seconds, 2))
        if restart:
            self.elapsed += seconds
            self._sums, self._counts, self._count, self._start = {}, {}, 0, now
        return means

    def state(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> dict[str, Any]:
        """The open interval as JSON, for a checkpoint: a run resumed from it (`resume`) logs at its next
        log_every step the same means as an uninterrupted run. Under torchrun `reduce` averages the sums over
        ranks (their counts are equal), so that every rank resumes with the same share of the means a flush
        takes."""
        values = [[name, reduce(torch.tensor(total, dtype=torch.float64)).item(), self._counts[name]]
                  for name, total in self._sums.items()]
        # A list, not a JSON object: checkpoint.json sorts keys; logged rows keep the order values came in.
        return {"steps": self._count, "seconds": time.perf_counter() - self._start, "values": values}

    def resume(self, state: dict[str, Any]) -> None:
        """Reopen an interval saved by `state` (its sums, counts and the seconds it had run)."""
        self._sums = {name: total for name, total, _ in state["values"]}
        self._counts = {name: count for name, _, count in state["values"]}
        self._count = state["steps"]
        self._start = time.perf_counter() - state["seconds"]

    @staticmethod
    def finite(values: dict[str, float]) -> bool:
        return all(math.isfinite(v) for v in values.values())
