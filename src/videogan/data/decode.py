"""Decoding video files with PyAV into uint8 frames; DataError and DataWarning, with which every data module
rejects unusable data or skips a damaged part of it."""
from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import av
import cv2
import numpy as np

from ..errors import VideoGANError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                  ".ogv"}


class DataError(VideoGANError, ValueError):
    """Unusable training data; the message names the file or folder and the reason."""


class VideoDecodeError(DataError):
    """A video that cannot be decoded; the message names the file and the reason."""


class DataWarning(UserWarning):
    """A skipped shard, clip or video; the message names it."""


_SHOWN: dict = {}  # the same message is shown once per process (not again on every pass)


def warn(message: str) -> None:
    """One line on stderr (through `warnings`, so tests and users can filter or record it)."""
    warnings.warn_explicit(message, DataWarning, "videogan-data", 0, module="videogan.data", registry=_SHOWN)


@dataclass(frozen=True)
class TimedFrame:
    image: np.ndarray  # uint8 [H, W, 3] RGB, upright (rotation metadata applied)
    time: float  # seconds from the stream's start
    # the source stream's average frame rate (None: the container does not say)
    stream_fps: float | None = None


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise, as PyAV reports it): phone videos
    are stored sideways with this flag, and ffmpeg's players rotate them the same way."""
    quarter_turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def shrink(image: np.ndarray, short_side: int | None) -> np.ndarray:
    """Shrink uint8 [H, W, 3] so its short side is `short_side` (aspect kept; never enlarged).

    Area averaging by the largest whole factor (OpenCV's fast path), then linear for the remaining
    factor below 2: close to a true area resize at a tenth of the cost of a fractional one.
    """
    h, w = image.shape[:2]
    if not short_side or min(h, w) <= short_side:
        return image
    factor = min(h, w) // short_side
    if factor >= 2:
        image = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    if min(h, w) == short_side:
        return image
    scale = short_side / min(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_LINEAR)


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    """uint8 [H, W, 3] RGB. The common 4:2:0 case converts with OpenCV, several times faster than swscale."""
    if frame.format.name in ("yuv420p", "yuvj420p") and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def iter_timed_frames(path: str | os.PathLike | BinaryIO, short_side: int | None = None,
                      name: str | None = None, seek: float = 0.0) -> Iterator[TimedFrame]:
    """Frames of the first video stream, one at a time (memory stays flat), upright, with times (and the
    stream's average frame rate, so callers need not open the file again for it).

    `short_side`: shrink each frame so its short side is at most this (see `shrink`). `path` may be an open
    binary file (a remote object through fsspec), then `name` is how messages name it. `seek`: start at the
    last keyframe before this many seconds (the frames before it are still yielded from there; the caller
    drops them), instead of decoding everything before a span.

    Grayscale and paletted sources (e.g. animated GIFs) come out as RGB. A file that cannot be opened,
    has no video stream, no frames, or fails mid-way raises VideoDecodeError naming it and the reason.
    """
    file = not isinstance(path, (str, os.PathLike))
    where = name or (getattr(path, "name", "video") if file else str(path))
    count, last_time = 0, -1.0
    try:
        with av.open(path if file else str(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{where}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate) if stream.average_rate else None
            rate = fps or 25.0
            if seek > 1.0 and stream.time_base:
                # Backward to a keyframe, with a margin: some muxers' indexes point just past the time asked.
                container.seek(max(0, int((seek - 1.0) / stream.time_base)), stream=stream, backward=True)
            for frame in container.decode(stream):
                # Frames without a timestamp (some AVI/GIF muxers) follow the previous one at
                # the average rate.
                time = float(frame.time) if frame.time is not None else last_time + 1.0 / rate
                last_time = time
                count += 1
                yield TimedFrame(_upright(shrink(_rgb(frame), short_side), frame.rotation), time, fps)
    except VideoDecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        when = f"after {count} frames" if count else "at the start"
        raise VideoDecodeError(f"{where}: cannot decode {when} ({reason})") from None
    if count == 0:
        raise VideoDecodeError(f"{where}: no decodable frames")


def resample(frames: Iterator[TimedFrame], fps: float) -> Iterator[TimedFrame]:
    """Frames at a fixed rate: at each tick k/fps (from the first frame's time) the frame on screen then,
    i.e. the latest one that started at or before the tick. Handles variable frame rate sources; frames
    are repeated or dropped as the rate requires."""
    assert fps > 0
    tick, previous = None, None
    for frame in frames:
        if tick is None:
            tick = frame.time
        while previous is not None and tick < frame.time - 1e-6:
            yield dataclasses.replace(previous, time=tick)
            tick += 1.0 / fps
        previous = frame
    if previous is not None and tick is not None and tick <= previous.time + 1e-6:
        yield dataclasses.replace(previous, time=tick)


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Frames of the first video stream as uint8 [H, W, 3] RGB, upright (see iter_timed_frames)."""
    for frame in iter_timed_frames(path):
        yield frame.image


def read_frames(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """All (or the first `max_frames`) frames of the first video stream as uint8 [T, H, W, 3] RGB."""
    frames = []
    for frame in iter_frames(path):
        frames.append(frame)
        if max_frames is not None and len(frames) >= max_frames:
            break
    return np.stack(frames)


def videos_in(folder: Path) -> list[Path]:
    """The video files under `folder` (recursively, by suffix), sorted."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def find_videos(inputs: list[str | os.PathLike]) -> list[Path]:
    """Video files among `inputs`: files as given, folders searched recursively by suffix."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += videos_in(item)
        elif item.is_file():
            found.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or directory")
    return found
