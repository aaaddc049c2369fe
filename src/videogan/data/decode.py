"""Decoding video files with PyAV into uint8 frames."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import av
import numpy as np

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv"}


class DataError(ValueError):
    """Unusable training data; the message names the file or folder and the reason."""


class VideoDecodeError(DataError):
    """A video that cannot be decoded; the message names the file and the reason."""


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Frames of the first video stream, one at a time, as uint8 [H, W, 3] RGB (memory stays flat)."""
    path = Path(path)
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                count += 1
                yield frame.to_ndarray(format="rgb24")
    except VideoDecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise VideoDecodeError(f"{path}: cannot decode after {count} frames ({reason})") from None
    if count == 0:
        raise VideoDecodeError(f"{path}: no decodable frames")


def read_frames(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """All (or the first `max_frames`) frames of the first video stream as uint8 [T, H, W, 3] RGB."""
    frames = []
    for frame in iter_frames(path):
        frames.append(frame)
        if max_frames is not None and len(frames) >= max_frames:
            break
    return np.stack(frames)


def find_videos(inputs: list[str | os.PathLike]) -> list[Path]:
    """Video files among `inputs`: files as given, folders searched recursively by suffix."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or directory")
    return found
