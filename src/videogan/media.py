"""Turning tensors into things people look at: GIF, MP4 and PNG files, and grids of clips.

One fixed mapping from model values to pixels: [-1, 1] -> [0, 255] (masks: [0, 1] -> [0, 255]).
The original normalised each frame separately, which made brightness flicker; we do not.
All writes are atomic (temporary file + rename), so an interrupted run never leaves a half file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image


def to_uint8(x: torch.Tensor, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Map values in [low, high] to uint8 [0, 255] with one fixed affine map (clamped)."""
    scaled = (x.detach().float().cpu() - low) * (255.0 / (high - low))
    return scaled.round().clamp(0, 255).to(torch.uint8)


def from_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float in [-1, 1] (the inverse of to_uint8's default range), on x's device."""
    assert x.dtype == torch.uint8, f"expected uint8, got {x.dtype}"
    return x.float().div_(127.5).sub_(1.0)


def to_model_range(clips: torch.Tensor, device: torch.device | str,
                   memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 [B, C, T, H, W] -> float in [-1, 1] on the device (normalisation happens here, not in the data),
    in `memory_format` (training.runtime.clip_layout: what the networks expect)."""
    assert clips.dtype == torch.uint8 and clips.ndim == 5, \
        f"expected uint8 [B, C, T, H, W], got {clips.dtype} {list(clips.shape)}"
    # Shard batches arrive channels-last ([B, T, H, W, C] memory, as decoded); the layout is fixed here, on
    # the device, in uint8 (a quarter of the float copy's bytes).
    return from_uint8(clips.to(device, non_blocking=True).contiguous(memory_format=memory_format))


def grid(clips: torch.Tensor, columns: int | None = None, padding: int = 1,
         pad_value: int = 255) -> torch.Tensor:
    """Tile uint8 clips [N, C, T, H, W] into one clip [C, T, rows*(H+p)+p, cols*(W+p)+p]."""
    assert clips.ndim == 5 and clips.dtype == torch.uint8, \
        f"expected uint8 [N, C, T, H, W], got {clips.dtype} {list(clips.shape)}"
    n, c, t, h, w = clips.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    out = torch.full((c, t, rows * (h + padding) + padding, columns * (w + padding) + padding), pad_value,
                     dtype=torch.uint8)
    for i in range(n):
        y, x = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
        out[:, :, y : y + h, x : x + w] = clips[i]
    return out


def upscale(clip: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upscaling of the last two dims (keeps pixels crisp for viewing)."""
    if factor == 1:
        return clip
    return clip.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def _frames_hwc(clip: torch.Tensor) -> np.ndarray:
    """uint8 [C, T, H, W] (C = 1 or 3) -> numpy [T, H, W, 3]."""
    assert clip.ndim == 4 and clip.dtype == torch.uint8, \
        f"expected uint8 [C, T, H, W], got {clip.dtype} {list(clip.shape)}"
    if clip.shape[0] == 1:
        clip = clip.expand(3, *clip.shape[1:])
    return np.ascontiguousarray(clip.permute(1, 2, 3, 0).numpy())


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's or a folder's data and metadata to the disk (a folder: the names in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename `src` onto `dst` so that a power cut leaves either the old or the new file, never an empty one:
    `src` is flushed before the rename and the folder after it, as databases do (ext4's delayed allocation
    otherwise may commit the rename before the data). `src` may be a folder whose files are already
    flushed."""
    fsync_path(src)
    os.replace(src, dst)
    fsync_path(Path(dst).parent)


def make_folder_durably(folder: str | os.PathLike) -> None:
    """mkdir -p, and flush the new name into its parent folder (a power cut could otherwise lose it)."""
    folder = Path(folder)
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        fsync_path(folder.parent)


def umask_mode(mode: int = 0o666) -> int:
    """`mode` less the process's umask: the permissions an ordinary open() or mkdir() would give."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; move it onto `path` only if the block succeeds, durably
    (durable_replace). The file gets the usual permissions (0666 less the umask), not mkstemp's private
    0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, umask_mode(0o666))
        durable_replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | os.PathLike, data: Any, sort_keys: bool = False) -> None:
    """`data` as indented JSON, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")


def write_gif(path: str | os.PathLike, clip: torch.Tensor, fps: float = 8) -> None:
    frames = [Image.fromarray(f) for f in _frames_hwc(clip)]
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 / fps),
                       loop=0)


def _write_video(path: str | os.PathLike, clip: torch.Tensor, fps: int, container_format: str, codec: str,
                 options: dict[str, str]) -> None:
    """uint8 [C, T, H, W] -> a yuv420p video file (odd sizes padded by one pixel to even), written
    atomically."""
    frames = _frames_hwc(clip)
    _, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format=container_format) as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.options = options
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())


def write_mp4(path: str | os.PathLike, clip: torch.Tensor, fps: int = 8) -> None:
    """H.264 MP4, near-lossless: tiny clips, tiny files."""
    _write_video(path, clip, fps, "mp4", "libx264", {"crf": "12", "preset": "medium"})


def write_webm(path: str | os.PathLike, clip: torch.Tensor, fps: int = 8) -> None:
    """VP8 WebM, near-lossless (crf 4, bitrate cap 10 Mb/s). VP8 rather than VP9: the same quality on our
    clips in less encoding time, and every browser with WebM plays it (benchmarks/RESULTS.md, the realism
    study). One thread: clips this small gain nothing from more, and on a busy machine libvpx's threads slowed
    it down many times over (same section)."""
    _write_video(path, clip, fps, "webm", "libvpx",
                 {"crf": "4", "b": "10M", "deadline": "good", "cpu-used": "4", "threads": "1"})


def write_png(path: str | os.PathLike, image: torch.Tensor) -> None:
    """uint8 [C, H, W] (C = 1 or 3) -> PNG."""
    frames = _frames_hwc(image[:, None])
    with atomic_path(path) as tmp:
        Image.fromarray(frames[0]).save(tmp, format="PNG")
