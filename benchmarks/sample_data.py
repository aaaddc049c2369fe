"""Where the benchmark scripts find the project's sample videos (a source checkout's, never the package's)."""
from __future__ import annotations

import os
from pathlib import Path


def sample_videos_dir() -> Path:
    """The project's shared sample videos (vtest.avi, box.mp4, ...; never copied into the repository):
    $VIDEOGAN_SAMPLE_VIDEOS, or ../shared/data/videos beside the repository; the first that holds vtest.avi
    (as the tests look), else the first of them (whose files the caller then finds missing)."""
    candidates = [Path(c) for c in (os.environ.get("VIDEOGAN_SAMPLE_VIDEOS"),) if c]
    candidates.append(Path(__file__).resolve().parents[2] / "shared/data/videos")
    return next((c for c in candidates if (c / "vtest.avi").is_file()), candidates[0])
