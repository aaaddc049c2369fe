"""`videogan study create`: draw clips from two sources, write them as videos, and list the pairs to rate.

The paper's study (Sec. 4.2): workers saw two videos side by side and answered "Which video is more
realistic?"; generated videos were preferred over real ones 18% of the time (two-stream), and workers who
often called real videos unrealistic were screened. Here a SOURCE is real data (anything `train --data`
takes) or a run directory (its generator is sampled), drawn with the helpers FVD uses. Catch trials put a
real clip against a broken copy of itself (frames shuffled, or frozen halfway), which an attentive rater
never prefers.

Clips are written twice at viewing size, WebM (VP8) and MP4 (H.264), and once at their original size (MP4).
The page offers WebM first: Chromium and Firefox both decode VP8 themselves, while Firefox on Linux plays
H.264 only through the system's ffmpeg (often absent; Debian's Chromium does play it); the MP4 is the
fallback for browsers without WebM.
Viewing size is nearest-neighbour upscaling by an even factor, so every source pixel is a block of whole
2x2 chroma cells (yuv420p) and neither smoothing nor chroma subsampling blends neighbouring pixels.
"""
from __future__ import annotations

import hashlib
import random
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..config import Config, ConfigError
from ..data.decode import DataError
from ..generation.pretrained import card, strip_prefix
from ..generation.pretrained import config as pretrained_config
from ..media import upscale, write_mp4, write_webm
from ..metrics.evaluate import Protocol, clip_source, is_run_dir
from ..training.checkpoint import read_meta, resolve
from .manifest import MANIFEST, Pair, Side, Study, save_study

VIEW_SIZE = 256  # the default upscale brings clips to about this many pixels across


@dataclass
class CreateSettings:
    pairs: int = 20  # A-against-B pairs
    catch: int | None = None  # catch trials (None: one per 10 pairs, at least one)
    seed: int = 0
    frames: int | None = None  # None: the runs' frames (the shortest), else 32
    size: int | None = None  # None: the runs' size, else 64
    upscale: int | None = None  # None: an even factor bringing clips to about VIEW_SIZE pixels
    fps: int = 8
    real: str | None = None  # catch trials' real clips (None: the data side, else run A's training data)
    label_a: str | None = None
    label_b: str | None = None


def default_upscale(size: int) -> int:
    """An even factor >= 2 bringing `size` to about VIEW_SIZE pixels (even: see the module docstring)."""
    return max(2, (VIEW_SIZE // size) // 2 * 2)


def clip_name(seed: int, role: str, index: int) -> str:
    """An opaque file name: a rater's browser learns nothing from it."""
    return hashlib.sha256(f"videogan-study|{seed}|{role}|{index}".encode()).hexdigest()[:12]


def shuffled_frames(clip: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """uint8 [C, T, H, W] with its frames in a random order that is not the original one."""
    t = clip.shape[1]
    order = list(range(t))
    rng.shuffle(order)
    if order == sorted(order):
        order = order[1:] + order[:1]
    return clip[:, order]


def frozen_halfway(clip: torch.Tensor) -> torch.Tensor:
    """uint8 [C, T, H, W] that plays its first half, then holds the middle frame
    (a stall, then a jump on loop)."""
    t = clip.shape[1]
    out = clip.clone()
    out[:, t // 2 :] = clip[:, t // 2 : t // 2 + 1]
    return out


# ----------------------------------------------------------------------------- sources

def resolve_side(spec: str, label: str | None) -> tuple[Side, Config | None]:
    """The side `spec` names and its generator's config (None for data), its metadata read once: a data
    source, a run or checkpoint directory (step of its latest checkpoint), or "pretrained:NAME"
    (step from its model card)."""
    if not spec.strip():
        raise ConfigError("an empty source: give a data source, a run directory or pretrained:NAME")
    if (name := strip_prefix(spec)) is not None:
        side = Side(source=spec, kind="run", label=label or spec, step=int(card(name)["steps"]))
        return side, pretrained_config(name)
    if not is_run_dir(spec):
        return Side(source=spec, kind="data", label=label or spec), None
    _, step, config = read_meta(resolve(spec))
    return Side(source=spec, kind="run", label=label or Path(spec).resolve().name, step=step), config


def clip_shape(sides: list[tuple[Side, Config | None]], frames: int | None,
               size: int | None) -> tuple[int, int]:
    """(frames, size) of the study: what the runs make (taking their first `frames` frames), else 32 x 64."""
    configs = [(s, c) for s, c in sides if c is not None]
    frames = frames or min((c.model.frames for _, c in configs), default=32)
    sizes = {c.model.size for _, c in configs}
    size = size or (sizes.pop() if len(sizes) == 1 else None) or 64
    for side, c in configs:
        if c.model.frames < frames:
            raise DataError(f"{side.source}: the generator makes {c.model.frames} frames, fewer than the "
                            f"study's {frames}")
        if c.model.size != size:
            raise DataError(f"{side.source}: the generator makes {c.model.size}x{c.model.size} clips, the "
                            f"study is {size}x{size} (runs of different sizes cannot be compared)")
    return frames, size


def draw_clips(spec: str, num: int, frames: int, size: int, seed: int, device: torch.device,
               synthetic) -> torch.Tensor:
    """`num` uint8 clips [num, 3, frames, size, size] from a data source or a run directory, drawn with
    `seed`."""
    protocol = Protocol(num=num, frames=frames, size=size, seed=seed)
    out, have = [], 0
    with closing(clip_source(spec, protocol, 16, device, synthetic)) as stream:
        for batch in stream:
            out.append(batch[:, :, :frames].cpu())
            have += len(batch)
            if have >= num:
                break
    if have < num:
        raise DataError(f"{spec}: gave only {have} of the {num} clips asked for")
    clips = torch.cat(out)[:num]
    assert clips.dtype == torch.uint8 and clips.shape[1:] == (3, frames, size, size), \
        f"{spec}: clips {clips.dtype} {list(clips.shape)}"
    return clips


# ----------------------------------------------------------------------------- the study

def plan_pairs(a_names: list[str], b_names: list[str], real_names: list[str], broken_names: list[str],
               broken_kinds: list[str], rng: random.Random) -> list[Pair]:
    """A against B, each side on the left exactly half the time (one more for odd counts, at random), and the
    catch trials, likewise balanced; then all in one shuffled order, numbered in that order."""
    def balanced(n: int) -> list[bool]:
        left = [i < n // 2 for i in range(n)] if rng.random() < 0.5 else [i >= n - n // 2 for i in range(n)]
        rng.shuffle(left)
        return left

    trials = []
    for a, b, a_left in zip(a_names, b_names, balanced(len(a_names)), strict=True):
        trials.append(dict(kind="ab", left=a, right=b, left_is="a", right_is="b") if a_left else
                      dict(kind="ab", left=b, right=a, left_is="b", right_is="a"))
    for real, broken, how, real_left in zip(real_names, broken_names, broken_kinds, balanced(len(real_names)),
                                            strict=True):
        trials.append(dict(kind="catch", left=real, right=broken, left_is="real", right_is="broken",
                           broken=how) if real_left else
                      dict(kind="catch", left=broken, right=real, left_is="broken", right_is="real",
                           broken=how))
    rng.shuffle(trials)
    width = max(3, len(str(len(trials) - 1)))
    return [Pair(id=f"p{i:0{width}d}", **t) for i, t in enumerate(trials)]


def create(a: str, b: str, out: str | Path, settings: CreateSettings | None = None,
           device: str | torch.device = "cpu", progress: bool = True) -> Study:
    """Write STUDY_DIR (clips/, clips/original/, study.json) and return the study. study.json is written last,
    so an interrupted create leaves no study behind (running it again starts over)."""
    out = Path(out)
    if (out / MANIFEST).exists():
        raise DataError(f"{out}: already holds a study ({MANIFEST}); choose another --out")
    s = settings or CreateSettings()
    if s.pairs < 1 or (s.catch is not None and s.catch < 0):
        raise ConfigError(f"a study needs at least 1 pair and 0 or more catch trials, not {s.pairs} and "
                          f"{s.catch}")
    catch = s.catch if s.catch is not None else max(1, s.pairs // 10)
    (side_a, config_a), (side_b, config_b) = resolve_side(a, s.label_a), resolve_side(b, s.label_b)
    frames, size = clip_shape([(side_a, config_a), (side_b, config_b)], s.frames, s.size)
    if catch and frames < 2:
        raise DataError(f"catch trials need clips of 2 frames or more, the study has {frames} "
                        "(use --catch 0)")
    factor = s.upscale or default_upscale(size)
    device = torch.device(device)

    # Real clips for catch trials: the data side, else the run's own training data (its scene settings too).
    first_run = config_a if config_a is not None else config_b
    real_spec = (s.real or next((side.source for side in (side_a, side_b) if side.kind == "data"), None)
                 or first_run.data.source)
    side_real, _ = resolve_side(real_spec, None)
    if side_real.kind == "run":
        raise DataError(f"--real {real_spec}: catch trials need real data, not a run directory")
    # compare like with like, as evaluate does
    synthetic = first_run.synthetic if first_run is not None else None

    # A, B and the catch trials' real clips from different seeds, so two draws of one source differ.
    draws = [("a", side_a.source, s.pairs, s.seed), ("b", side_b.source, s.pairs, s.seed + 1),
             ("real", real_spec, catch, s.seed + 2)]
    clips = {role: draw_clips(spec, n, frames, size, seed, device, synthetic) if n
             else torch.zeros(0, 3, frames, size, size, dtype=torch.uint8)
             for role, spec, n, seed in draws}
    rng = random.Random(s.seed)
    kinds = ["shuffled" if i % 2 == 0 else "frozen" for i in range(catch)]
    clips["broken"] = (torch.stack([shuffled_frames(c, rng) if k == "shuffled" else frozen_halfway(c)
                                    for c, k in zip(clips["real"], kinds, strict=True)])
                       if catch else clips["real"])
    names = {role: [clip_name(s.seed, role, i) for i in range(len(c))] for role, c in clips.items()}

    total = sum(len(c) for c in clips.values())
    bar = tqdm(total=total, desc="writing clips", unit="clip", disable=not progress, dynamic_ncols=True)
    for role, batch in clips.items():
        for name, clip in zip(names[role], batch, strict=True):
            big = upscale(clip, factor)
            write_webm(out / "clips" / f"{name}.webm", big, s.fps)
            write_mp4(out / "clips" / f"{name}.mp4", big, s.fps)
            write_mp4(out / "clips" / "original" / f"{name}.mp4", clip, s.fps)
            bar.update(1)
    bar.close()

    pairs = plan_pairs(names["a"], names["b"], names["real"], names["broken"], kinds, rng)
    study = Study(a=side_a, b=side_b, real=side_real, frames=frames, size=size, upscale=factor, fps=s.fps,
                  seed=s.seed, pairs=pairs, root=out)
    save_study(study, out)
    return study
