"""Small videos made by the tests themselves (PyAV), with known content: textured background,
moving objects, optional camera shake and a hard cut."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest


def textured_background(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 [H, W, 3]: smoothed noise at two scales plus a few rectangles, so features are found
    everywhere."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(rng.uniform(0, 255, (height // 16 + 1, width // 16 + 1, 3)).astype(np.float32),
                        (width, height))
    fine = cv2.GaussianBlur(rng.uniform(0, 255, (height, width, 3)).astype(np.float32), (0, 0), 1.5)
    image = 0.6 * coarse + 0.4 * fine
    for _ in range(12):
        y, x = rng.integers(0, height - 8), rng.integers(0, width - 8)
        image[y : y + rng.integers(4, 20), x : x + rng.integers(4, 20)] = rng.uniform(0, 255, 3)
    return image.clip(0, 255).astype(np.uint8)


def scene_frames(count: int, height: int = 96, width: int = 128, seed: int = 0, shake: float = 0.0,
                 cut_at: int | None = None, objects: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [T, H, W, 3], shifts float [T, 2]): a still camera over a textured scene with moving
    squares; `shake` px of random camera translation per frame (the true shifts are returned); a different
    scene from frame `cut_at` on."""
    rng = np.random.default_rng(seed + 1000)
    margin = int(np.ceil(shake)) + 2
    scenes = [textured_background(height + 2 * margin, width + 2 * margin, seed + k) for k in range(2)]
    shifts = rng.uniform(-shake, shake, (count, 2)) if shake else np.zeros((count, 2))
    shifts[0] = 0
    starts = rng.uniform(0.2, 0.8, (objects, 2)) * (height, width)
    speeds = rng.uniform(-3, 3, (objects, 2))
    colours = rng.integers(0, 256, (objects, 3))
    frames = []
    for t in range(count):
        canvas = scenes[int(cut_at is not None and t >= cut_at)].copy()
        for (y0, x0), (vy, vx), colour in zip(starts, speeds, colours, strict=True):
            y, x = int(y0 + vy * t) % height + margin, int(x0 + vx * t) % width + margin
            canvas[y : y + 10, x : x + 10] = colour
        dy, dx = shifts[t]
        move = np.float32([[1, 0, dx - margin], [0, 1, dy - margin]])  # the camera moves by (dx, dy)
        frames.append(cv2.warpAffine(canvas, move, (width, height), flags=cv2.INTER_LINEAR))
    return np.stack(frames), shifts


def write_video(path: Path, frames: np.ndarray, fps: int = 10, codec: str = "libx264", rotation: int = 0,
                gray: bool = False) -> Path:
    """Encode uint8 [T, H, W, 3] frames with PyAV (x264 near-lossless by default, so content survives)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        if codec == "gif":
            stream.pix_fmt = "rgb8"
        elif gray:
            stream.pix_fmt = "gray"
        else:
            stream.pix_fmt = "yuv444p" if codec == "libx264" else "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "4", "preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def make_video(tmp_path):
    """make_video(name, count=..., **scene_and_codec_options) -> path of a fresh test video."""

    def make(name: str, count: int = 40, fps: int = 10, codec: str = "libx264", rotation: int = 0,
             gray: bool = False, **scene) -> Path:
        frames, _ = scene_frames(count, **scene)
        return write_video(tmp_path / name, frames, fps=fps, codec=codec, rotation=rotation, gray=gray)

    return make
