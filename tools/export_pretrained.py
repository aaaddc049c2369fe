"""Train (optionally) and export a shipped pretrained model: one command per model.

    python tools/export_pretrained.py synthetic              # export runs/pretrained-synthetic
                                                               (latest checkpoint)
    python tools/export_pretrained.py pedestrians            # export runs/pretrained-pedestrians
                                                               (latest checkpoint)
    python tools/export_pretrained.py synthetic-animate      # export runs/pretrained-animate
    python tools/export_pretrained.py people-64              # export runs/people-64
    python tools/export_pretrained.py people-animate         # export runs/people-animate
    python tools/export_pretrained.py NAME --train           # first run the training command (resumes a run)

For NAME it (a) prints the exact training command, `videogan train --preset NAME ...` (config.PRESETS[NAME] is
the model's recipe; with --train, runs it: preparing the data first where needed, resuming where the run has
checkpoints); (b) exports the run's latest EMA generator (live where none was kept) as float16 safetensors
into src/videogan/generation/pretrained/NAME/ (atomically; each conv bias followed by a BatchNorm folded into
its running mean first, an exact change that float16 needs), with uint8 reference clips of the float32 weights
and the float16 weights' largest deviation from them; (c) measures FVD/KVD of the exported model with
`videogan evaluate`'s code at the quality ladder's protocol (N = 96, 16 frames, seed 0) against the model's
data (its held-out clips where the recipe has them; with the recipe's repeats, K draws and their interval; for
a model of more than 16 frames, also at its own frame count), and once more at a small N for
tests/test_pretrained.py; (d) writes the README's sample GIFs under
docs/. model.json is written before (c), without FVD, so that "pretrained:NAME" names the exported weights,
and again with FVD/KVD at the end; an export that stops in (c) leaves a model without FVD, which `videogan
pretrained` says.
"""
from __future__ import annotations

import argparse
import copy
import csv
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from videogan import media
from videogan.bench import cpu_name
from videogan.config import Config, preset
from videogan.generation import pretrained
from videogan.generation.loading import load_pretrained
from videogan.generation.sample import sample
from videogan.metrics.evaluate import Protocol, evaluate
from videogan.metrics.i3d import load_i3d, weights_sha256
from videogan.models import ImageToVideoGenerator, build_generator, fold_conv_bias_into_batchnorm
from videogan.training.checkpoint import load_checkpoint, load_state_dict, resolve

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))  # sample_data.py: where the benchmarks find the videos
from sample_data import sample_videos_dir  # noqa: E402

DOCS = REPO / "docs"  # where the README's images live
# OpenCV's sample video (samples/data/vtest.avi), found as the tests find it: $VIDEOGAN_SAMPLE_VIDEOS or
# ../shared/data/videos. The card shows a placeholder in its place, never one machine's absolute path.
VTEST = str(sample_videos_dir() / "vtest.avi")
VTEST_SHOWN = "path/to/vtest.avi"
VTEST_SOURCE = ("OpenCV's sample video samples/data/vtest.avi (in Debian's opencv-doc 4.6.0 and OpenCV's "
                "source tree; Apache-2.0 / BSD-3-Clause)")
LADDER_NUM = 96  # the quality ladder's N (benchmarks/RESULTS.md)
CHECK_NUM = 8  # the small N tests/test_pretrained.py recomputes
REFERENCE_CLIPS = 2  # float32 reference clips kept for the float16 test


@dataclass(frozen=True)
class Recipe:
    """How a shipped model is exported; what it trains with is its preset, config.PRESETS[NAME]."""

    run: str  # the run directory it is exported from
    data: str  # what `train --data` got (and the real side of FVD, unless `real` says otherwise)
    data_description: str
    description: str
    can: str
    cannot: str
    real: str = ""  # FVD's real data (default: data)
    # the command that makes `data`, where it is not built in, as the card shows it
    prepare: tuple[str, ...] = ()
    # (placeholder in the prepare command, this machine's file, where a user gets it)
    inputs: tuple[tuple[str, str, str], ...] = ()
    repeats: int = 1  # draws of the recorded FVD (K > 1: its mean and 95% interval, `evaluate --repeats`)
    prepare_real: tuple[str, ...] = ()  # the command that makes `real`, where `prepare` does not
    assemble: Callable[[], None] | None = None  # puts the inputs where the prepare commands read them here

    @property
    def fvd_real(self) -> str:
        return self.real or self.data

    @property
    def prepare_argv(self) -> tuple[str, ...]:
        """The prepare command as it runs here: each placeholder replaced by this machine's file."""
        return self.here(self.prepare)

    @property
    def prepare_real_argv(self) -> tuple[str, ...]:
        return self.here(self.prepare_real)

    def here(self, command: tuple[str, ...]) -> tuple[str, ...]:
        files = {shown: here for shown, here, _ in self.inputs}
        return tuple(files.get(arg, arg) for arg in command)


PREPARE_VTEST = ("videogan", "prepare", VTEST_SHOWN, "--out", "runs/data-vtest-32", "--size", "32",
                 "--frames", "16", "--stride", "4", "--quality", "95", "--clips-per-shard", "98",
                 "--features", "sift")  # the stabiliser of its clips (the default until 2026-12-06)

# recipes/people/README.md: the two manifests, in a folder beside the videos they name
PEOPLE_RECIPE = REPO / "recipes" / "people"
PEOPLE_HERE = REPO / "runs" / "people-src"  # that folder on this machine, made by assemble_people
PEOPLE_SOURCE = ("recipes/people/README.md: OpenCV's vtest.avi, and the demo videos of PyPI sports2d 0.8.34 "
                 "and pose2sim 0.10.49 (BSD-3-Clause), in one folder with the manifest")
PEOPLE_INPUTS = tuple((f"path/to/people/{split}.csv", str(PEOPLE_HERE / f"{split}.csv"), PEOPLE_SOURCE)
                      for split in ("train", "test"))


def prepare_people(split: str) -> tuple[str, ...]:
    return ("videogan", "prepare", f"path/to/people/{split}.csv", "--out", f"runs/data-people-64-{split}",
            "--stride", "4", "--quality", "95")


def assemble_people() -> None:
    """PEOPLE_HERE as recipes/people/README.md asks a user to make it: both manifests beside links to this
    machine's copies of the videos (vtest.avi among the sample videos, the others in ../people beside
    them)."""
    PEOPLE_HERE.mkdir(parents=True, exist_ok=True)
    videos = sample_videos_dir()
    for split in ("train", "test"):
        shutil.copyfile(PEOPLE_RECIPE / f"{split}.csv", PEOPLE_HERE / f"{split}.csv")
        with open(PEOPLE_RECIPE / f"{split}.csv", newline="") as f:
            for row in csv.DictReader(f):
                name = row["path"]
                video = videos if name == "vtest.avi" else videos.parent / "people"
                link = PEOPLE_HERE / name
                if not link.is_symlink() and not link.exists():
                    link.symlink_to((video / name).resolve())


PEOPLE_DATA = dict(data="runs/data-people-64-train", real="runs/data-people-64-test",
                   prepare=prepare_people("train"), prepare_real=prepare_people("test"), inputs=PEOPLE_INPUTS,
                   assemble=assemble_people, repeats=3)
PEOPLE_DESCRIPTION = ("274 stabilised 32-frame 64x64 clips of static-camera videos of people "
                      "(recipes/people: the first 56 s of a plaza seen from above, the first 5.4 s of a "
                      "person walking across a lawn, cameras 1-3 of one and of two people moving in a lab); "
                      "FVD against 97 held-out clips (the rest of the first two, camera 4 of the lab)")

RECIPES = {
    "synthetic": Recipe(
        run="runs/pretrained-synthetic", data="synthetic",
        data_description="the built-in synthetic scenes (1-2 moving coloured objects over 2 static shapes; "
                         "tiny preset's settings)",
        description="two-stream video GAN: noise -> 16 frames of 32x32, "
                    "a moving foreground over a static background",
        can="draws the scenes' smooth backgrounds and puts solid, single-coloured, saturated objects in a "
            "learned mask that keep their colour as they move",
        cannot="draw the static background shapes sharply (the background stays blurred); some objects "
               "stretch or split in two along their path; checkerboard texture inside some objects"),
    "pedestrians": Recipe(
        run="runs/pretrained-pedestrians", data="runs/data-vtest-32",
        real="runs/data-vtest-32/clips-p00000-000000.tar",
        prepare=PREPARE_VTEST, inputs=((VTEST_SHOWN, VTEST, VTEST_SOURCE),),
        data_description="195 stabilised 16-frame 32x32 clips of OpenCV's vtest.avi (static camera above a "
                         "walkway beside a lawn, people walking)",
        description="two-stream video GAN: noise -> 16 frames of 32x32 of the vtest.avi walkway "
                    "with people walking",
        can="draws the scene (lawn, walkway, building) sharply and puts upright, dark, walker-sized figures "
            "on the walkway that move along it, most of them in the mask",
        cannot="draw a gait: the figures are blobs of a few pixels that glide rather than walk, some fade in "
               "or out mid-clip or stay faint grey ghosts; the mask also claims the sign on the building and "
               "scattered specks"),
    "synthetic-animate": Recipe(
        run="runs/pretrained-animate", data="synthetic",
        data_description="the built-in synthetic scenes (tiny preset's settings); "
                         "input = a clip's first frame",
        description="image to video (the paper's conditional model, with the input image as its static "
                    "background and its foreground drawn by warping the image along a flow made of 3 "
                    "translating layers and a still one, each pixel pushed to belong to one layer by an "
                    "entropy prior): one 32x32 image -> its 16-frame future",
        can="keeps the scene sharp and the first frame equal to the input (no layer moves in frame 0); what "
            "moves is the image's own pixels, carried by a few rigidly translating layers, so most objects "
            "keep their shape and colour as they move; the objects move a little more than real scenes do",
        cannot="cut objects out cleanly: a layer may carry a patch of background along with its object, or "
               "leave a piece of the object behind; objects only translate (no rotation or scaling); one "
               "future per image (deterministic); images unlike the synthetic scenes"),
    "people-64": Recipe(
        run="runs/people-64", **PEOPLE_DATA, data_description=PEOPLE_DESCRIPTION,
        description="two-stream video GAN at the paper's clip shape: noise -> 32 frames of 64x64 of "
                    "static-camera scenes of people (a plaza, a lawn, a lab)",
        can="draws the plaza (lawn, walkway, the building's edge) sharply, with small dark figures on the "
            "walkway in a mask that stays on them (a few percent of the frame), and the lab's floor and "
            "walls with a blurred person in them; the background stays still, as in the footage",
        cannot="draw a gait: the lab's person is part of the still background image and does not move, the "
               "plaza's figures jump from place to place or glide; the lawn scene and the lab's detail come "
               "out as blocky, blurred patches; faint vertical stripes in the mask; early in its training, "
               "its fvd96_32f (fvd_own_frames) is above that of a still video of real frames (the quality "
               "ladder, benchmarks/RESULTS.md)"),
    "people-animate": Recipe(
        run="runs/people-animate", **PEOPLE_DATA, data_description=PEOPLE_DESCRIPTION + "; input = a clip's "
                                                                                        "first frame",
        description="image to video (synthetic-animate's layered warp, with a discriminator that also sees "
                    "each frame minus the first): one 64x64 photo of a static-camera scene of people -> its "
                    "32-frame future",
        can="keeps the first frame equal to the input and the background still; moves only nearby pixels (at "
            "most 8 of 64, model.max_flow): the plaza's walkers and the lab's person shift by a pixel or two "
            "over the clip, and its fvd96_32f (fvd_own_frames) is below that of a still video of real frames "
            "(the quality ladder, benchmarks/RESULTS.md)",
        cannot="make the people walk: the walkers drift or smear rather than step, and the mask (about a "
               "quarter of the frame) is a soft blob over the walkway or the person, so the ground under it "
               "smears with them; in the lab the person's outline blurs by the last frames; one future per "
               "image (deterministic)"),
}


# ----------------------------------------------------------------------------- (a) the training command

def _flag_value(value) -> str:
    return json.dumps(value) if isinstance(value, (bool, list, dict)) else str(value)


def train_command(cfg: Config, out: str, steps: int, preset_name: str) -> list[str]:
    """`videogan train` arguments that rebuild `cfg` from the preset: every field that differs becomes a flag
    (none for a run of the model's own recipe, config.PRESETS[NAME])."""
    base = preset(preset_name, cfg.model.kind)
    cmd = ["videogan", "train", "--preset", preset_name]
    if cfg.model.kind != preset(preset_name).model.kind:
        cmd += ["--model", cfg.model.kind]
    if cfg.data.source != base.data.source:
        cmd += ["--data", cfg.data.source]
    cmd += ["--out", out, "--steps", str(steps)]
    ours, theirs = cfg.to_dict(), base.to_dict()
    # flags above; the device and the thread count are the machine's, not the recipe's
    skip = {"train.steps", "data.source", "model.kind", "train.device", "train.num_threads"}
    for section, fields in ours.items():
        for key, value in fields.items():
            if f"{section}.{key}" not in skip and theirs[section][key] != value:
                cmd += ["--set", f"{section}.{key}={_flag_value(value)}"]
    return cmd


def prepare_data(recipe: Recipe) -> None:
    """Make the recipe's training data and its held-out real clips where they are missing."""
    missing = [argv for made, argv in ((recipe.data, recipe.prepare_argv),
                                       (recipe.fvd_real, recipe.prepare_real_argv))
               if argv and not Path(made).exists()]
    if missing and recipe.assemble is not None:
        recipe.assemble()
    for argv in missing:
        print("+", shlex.join(argv), flush=True)
        subprocess.run([sys.executable, "-m", "videogan", *argv[1:]], check=True, cwd=REPO)


def run_train(recipe: Recipe, cfg_command: list[str]) -> None:
    prepare_data(recipe)
    args = cfg_command[2:]
    if (REPO / recipe.run / "checkpoints").is_dir():  # continue (and extend) the run with its own config
        args = ["--out", recipe.run, "--resume", "--steps", args[args.index("--steps") + 1]]
    print("+ videogan train", shlex.join(args), flush=True)
    subprocess.run([sys.executable, "-m", "videogan", "train", *args], check=True, cwd=REPO)


# ----------------------------------------------------------------------------- (b) export

def to_half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float tensors -> float16 (BatchNorm's int64 counters stay), contiguous, on the CPU."""
    return {k: (v.half() if v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in state.items()}


def example_images(cfg: Config, source: str, num: int = 4, seed: int = 1234) -> torch.Tensor:
    """First frames of `num` clips of `source` (the recipe's held-out clips, where it has them), drawn with a
    seed training never used first: uint8 [num, 3, S, S]."""
    from videogan.metrics.evaluate import data_clips

    protocol = Protocol(num=num, frames=cfg.model.frames, size=cfg.model.size, seed=seed)
    clips = next(iter(data_clips(source, protocol, cfg.synthetic)))
    return clips[:num, :, 0].contiguous()


@torch.no_grad()
def reference_clips(generator: torch.nn.Module, images: torch.Tensor | None) -> torch.Tensor:
    """uint8 clips [REFERENCE_CLIPS, 3, T, H, W]: seed 0's noise, or the example images animated."""
    if isinstance(generator, ImageToVideoGenerator):
        from videogan.generation.animate import animate

        return media.to_uint8(animate(generator, images[:REFERENCE_CLIPS], samples=1, seed=0).video)
    return media.to_uint8(sample(generator, num=REFERENCE_CLIPS, seed=0).video)


def export(name: str, recipe: Recipe) -> dict:
    """Write generator.safetensors (float16), reference.safetensors, examples/;
    returns model.json's export fields."""
    ckpt = load_checkpoint(REPO / recipe.run, generator_only=True)
    weights = "ema" if ckpt.generator_ema is not None else "live"
    source = ckpt.path / ("generator_ema.safetensors" if weights == "ema" else "generator.safetensors")
    fp32 = build_generator(ckpt.config.model)
    load_state_dict(fp32, ckpt.generator_ema if weights == "ema" else ckpt.generator, source)
    fp32.eval()
    stored = copy.deepcopy(fp32)
    # exact; keeps float16 from losing (bias - running_mean), see its docstring
    fold_conv_bias_into_batchnorm(stored)
    half = to_half(stored.state_dict())
    roundtrip = build_generator(ckpt.config.model)
    # what load_pretrained makes of the float16 file
    load_state_dict(roundtrip, pretrained.upcast(half), source)
    roundtrip.eval()

    folder = pretrained.ROOT / name
    folder.mkdir(exist_ok=True)
    images = None
    if isinstance(fp32, ImageToVideoGenerator):
        images = example_images(ckpt.config, recipe.fvd_real)
        for i, image in enumerate(images):
            media.write_png(folder / pretrained.EXAMPLES_DIR / f"scene_{i}.png", image)  # [3, S, S]
    ref32, ref16 = reference_clips(fp32, images), reference_clips(roundtrip, images)
    with media.atomic_path(folder / pretrained.WEIGHTS_FILE) as tmp:
        save_file(half, str(tmp), metadata={"format": "pt", "model": name, "step": str(ckpt.step)})
    with media.atomic_path(folder / pretrained.REFERENCE_FILE) as tmp:
        save_file({"video": ref32.contiguous()}, str(tmp),
                  metadata={"what": "uint8 clips of the float32 weights"})
    levels = (ref32.int() - ref16.int()).abs()
    meta = ckpt.meta
    # the steps the weights were trained for, where a run set to go further was stopped or is exported early
    config = replace(ckpt.config, train=replace(ckpt.config.train, steps=ckpt.step))
    return {
        "step": ckpt.step, "config": config, "weights": weights,
        "checkpoint": str(ckpt.path.relative_to(REPO)),
        "training_seconds": round(float(meta.get("elapsed_seconds", 0.0)), 1),
        "date": datetime.date.fromtimestamp((ckpt.path / "checkpoint.json").stat().st_mtime).isoformat(),
        "storage": {"dtype": "float16 (BatchNorm counters int64), conv biases folded into the BatchNorm "
                             "running means first (exact); upcast to float32 when loaded",
                    "reference": {"clips": REFERENCE_CLIPS, "seed": 0,
                                  "input": ("examples/*.png, in order" if images is not None
                                            else "noise seed 0"),
                                  "float16_vs_float32_max_levels": int(levels.max()),
                                  "float16_vs_float32_mean_levels": round(levels.float().mean().item(), 4)}},
    }


# ----------------------------------------------------------------------------- (c) FVD / KVD, (d) README GIFs

def measure(spec: str, real: str, size: int, num: int, i3d, frames: int = 16, repeats: int = 1) -> dict:
    """FVD/KVD at seed 0 (repeats K > 1: K draws, with their mean, standard deviation and 95% interval)."""
    protocol = Protocol(num=num, frames=frames, size=size, seed=0)
    r = evaluate(real, spec, protocol, batch_size=8, device="cpu", progress=True, i3d=i3d, repeats=repeats)
    spread_keys = ("fvd_std", "fvd_ci95", "kvd_std", "kvd_ci95", "repeats") if repeats > 1 else ()
    spread = {k: r[k] for k in spread_keys}
    return {"fvd": round(r["fvd"], 2), "kvd": round(r["kvd"], 2), "metric": r["metric"], "num": num,
            "frames": frames, "seed": 0, **spread, "real": real, "protocol": r["protocol"],
            "seconds": r["seconds"]}


def measure_recorded(name: str, real: str, size: int, num: int, frames: int = 16,
                     repeats: int = 1) -> tuple[dict, dict, dict | None]:
    """model.json's fvd (N = num, 16 frames: the protocol every model is compared by), fvd_check (N =
    CHECK_NUM, what the tests recompute) and, for a model of more than 16 frames, fvd_own_frames (at its own
    frame count) of the shipped "pretrained:NAME", one I3D load."""
    i3d = (load_i3d(torch.device("cpu")), weights_sha256())
    spec = pretrained.PREFIX + name
    own = measure(spec, real, size, num, i3d, frames, repeats) if frames > 16 else None
    check = measure(spec, real, size, CHECK_NUM, i3d)
    return measure(spec, real, size, num, i3d, repeats=repeats), check, own


def readme_gifs(name: str) -> list[str]:
    """docs/pretrained_NAME*.gif: 8 clips (seed 0) and their masks,
    or each example image beside its future; clips enlarged to about 96 pixels (32x32 models 3x, 64x64 as they
    are: 32 frames of 64x64 enlarged 3x make GIFs of 4 MB)."""
    loaded = load_pretrained(name)
    upscale = max(1, 96 // loaded.config.model.size)
    out = []
    if isinstance(loaded.generator, ImageToVideoGenerator):
        from videogan.generation.animate import animate, load_image

        stills = torch.stack([load_image(p, loaded.config.model.size) for p in pretrained.examples(name)])
        video = media.to_uint8(animate(loaded.generator, stills, samples=1, seed=0).video)  # [N, 3, T, S, S]
        held = stills[:, :, None].expand_as(video)
        # input, future, input, future...
        pairs = torch.stack([held, video], dim=1).reshape(-1, *video.shape[1:])
        path = DOCS / f"pretrained_{name}.gif"
        media.write_gif(path, media.upscale(media.grid(pairs, columns=4), upscale), 8)
        out.append(path)
    else:
        s = sample(loaded.generator, num=8, seed=0)
        for suffix, clips in (("", media.to_uint8(s.video)), ("_mask", media.to_uint8(s.mask, 0.0, 1.0))):
            path = DOCS / f"pretrained_{name}{suffix}.gif"
            media.write_gif(path, media.upscale(media.grid(clips, columns=4), upscale), 8)
            out.append(path)
    return [str(p.relative_to(REPO)) for p in out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=sorted(RECIPES))
    ap.add_argument("--run", help="export this run directory instead of the recipe's")
    ap.add_argument("--train", action="store_true", help="first run the training command (resumes the run)")
    ap.add_argument("--steps", type=int,
                    help="with --train: train to this step (default: the recipe's run config)")
    ap.add_argument("--num", type=int, default=LADDER_NUM,
                    help="clips a side for the recorded FVD (default 96)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--remeasure", action="store_true",
                    help="only re-measure the shipped model's FVD/KVD (N = --num and the test's N) against "
                         "its data as prepared now, and record them in model.json; the weights stay")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = RECIPES[args.name]
    if args.run:
        recipe = replace(recipe, run=args.run)
    os.chdir(REPO)  # the recipes' paths are relative to the repository

    if recipe.prepare:
        print("data:", shlex.join(recipe.prepare_argv), flush=True)
    if args.remeasure:
        remeasure(args.name, recipe, args.num)
        return
    if args.train:
        run_train(recipe, training_command(args.name, recipe, args.steps))
    resolve(recipe.run)  # a one-line error when the run has no checkpoint
    started = time.perf_counter()
    fields = export(args.name, recipe)
    cfg: Config = fields.pop("config")
    command = shlex.join(train_command(cfg, recipe.run, fields["step"], args.name))
    print("train:", command, flush=True)

    folder = pretrained.ROOT / args.name
    card = {
        "name": args.name, "kind": cfg.model.kind, "description": recipe.description, "can": recipe.can,
        "cannot": recipe.cannot, "preset": args.name, "clip_shape": cfg.clip_shape, "steps": fields["step"],
        "training_seconds": fields["training_seconds"],
        "machine": f"{os.cpu_count()} cores {cpu_name()}, torch {torch.__version__}",
        "date": fields["date"], "weights": fields["weights"], "exported_from": fields["checkpoint"],
        "data": {"source": recipe.data, "description": recipe.data_description,
                 "prepare": shlex.join(recipe.prepare) or None,
                 # the held-out clips FVD compares against, where another command makes them
                 **({"prepare_real": shlex.join(recipe.prepare_real)} if recipe.prepare_real else {}),
                 # where a user gets each file the prepare command names
                 **({"inputs": {shown: src for shown, _, src in recipe.inputs}} if recipe.inputs else {})},
        "command": command, "export_command": f"python tools/export_pretrained.py {args.name}",
        "fvd": None, "fvd_check": None,
        "bytes": (folder / pretrained.WEIGHTS_FILE).stat().st_size, "storage": fields["storage"],
        "config": cfg.to_dict(),
    }
    media.write_json(folder / pretrained.CARD_FILE, card)  # now "pretrained:NAME" loads the exported weights

    fvd, check, own = measure_recorded(args.name, recipe.fvd_real, cfg.model.size, args.num,
                                       cfg.model.frames, recipe.repeats)
    card["fvd"], card["fvd_check"] = fvd, check
    if own is not None:
        card["fvd_own_frames"] = own
    card["readme_gifs"] = readme_gifs(args.name)
    media.write_json(folder / pretrained.CARD_FILE, card)
    print(json.dumps({k: card[k] for k in ("name", "steps", "bytes", "command")}
                     | {"fvd": fvd["fvd"], "kvd": fvd["kvd"], "fvd_check": check["fvd"],
                        "storage": card["storage"], "gifs": card["readme_gifs"],
                        "seconds": round(time.perf_counter() - started, 1)}))


def remeasure(name: str, recipe: Recipe, num: int) -> None:
    """model.json's fvd and fvd_check recomputed for the shipped weights, against the recipe's data as it is
    now (for data re-prepared with newer code, or an I3D/evaluate change); the previous values are kept under
    "fvd_history"."""
    if recipe.prepare and not Path(recipe.fvd_real).exists():
        raise SystemExit(f"{recipe.fvd_real}: not found; make it first with: "
                         f"{shlex.join(recipe.prepare_real_argv or recipe.prepare_argv)}")
    card = pretrained.card(name)
    fvd, check, own = measure_recorded(name, recipe.fvd_real, card["clip_shape"][-1], num,
                                       card["clip_shape"][1], recipe.repeats)
    card["fvd_history"] = [*card.get("fvd_history", []),
                           {"fvd": card["fvd"]["fvd"], "kvd": card["fvd"]["kvd"],
                            "fvd_check": card["fvd_check"]["fvd"],
                            **({"fvd_own_frames": card["fvd_own_frames"]["fvd"],
                                "kvd_own_frames": card["fvd_own_frames"]["kvd"]}
                               if "fvd_own_frames" in card else {}),
                            "protocol_version": card["fvd"]["protocol"]["version"],
                            "replaced": datetime.date.today().isoformat()}]
    card["fvd"], card["fvd_check"] = fvd, check
    if own is not None:
        card["fvd_own_frames"] = own
    media.write_json(pretrained.ROOT / name / pretrained.CARD_FILE, card)
    print(json.dumps({"name": name, "fvd": fvd["fvd"], "kvd": fvd["kvd"], "fvd_check": check["fvd"],
                      "kvd_check": check["kvd"], "previous": card["fvd_history"][-1]}))


def training_command(name: str, recipe: Recipe, steps: int | None) -> list[str]:
    """What --train runs: for a new run, the shipped model's recorded command (model.json); for a run with
    checkpoints, its own config (run_train turns it into --resume)."""
    if not (REPO / recipe.run / "checkpoints").is_dir() and name in pretrained.names():
        cmd = shlex.split(pretrained.card(name)["command"])
        cmd[cmd.index("--out") + 1] = recipe.run
        if steps:
            cmd[cmd.index("--steps") + 1] = str(steps)
        return cmd
    cfg = pretrained_config_of(name, recipe)
    return train_command(cfg, recipe.run, steps or cfg.train.steps, name)


def pretrained_config_of(name: str, recipe: Recipe) -> Config:
    """The config the recipe trains with: the run's own where it exists, else the model's preset
    (config.PRESETS[name])."""
    from videogan.training.checkpoint import checkpoint_config

    if (REPO / recipe.run / "checkpoints").is_dir():
        return checkpoint_config(REPO / recipe.run)
    return preset(name)


if __name__ == "__main__":
    main()
