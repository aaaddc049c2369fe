"""Run logging: metrics.jsonl (always), TensorBoard events (when tensorboard is installed).

Only the main process logs; on resume, entries after the resumed step are dropped so the
log reads as one uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch


def truncate_metrics(path: Path, after_step: int) -> None:
    """Drop metrics.jsonl entries with step > after_step (written after the checkpoint we resume from)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= after_step:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a crash
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool, start_step: int = 0):
        self.enabled = enabled
        self.tensorboard = None
        if not enabled:
            return
        self.metrics_path = run_dir / "metrics.jsonl"
        truncate_metrics(self.metrics_path, start_step)
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

    def flush(self, reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> dict[str, float]:
        """Means since the last flush (reduced across ranks by `reduce`), seconds_per_step, clips_per_second, time."""
        now = time.perf_counter()
        seconds, count = now - self._start, max(self._count, 1)
        self.elapsed += seconds
        means = {k: reduce(torch.tensor(v / self._counts[k])).item() for k, v in self._sums.items()}
        means.update(seconds_per_step=seconds / count, clips_per_second=count * self.clips_per_step / seconds,
                     time=round(self.elapsed, 2))
        self._sums, self._counts, self._count, self._start = {}, {}, 0, now
        return means

    @staticmethod
    def finite(values: dict[str, float]) -> bool:
        return all(math.isfinite(v) for v in values.values())
