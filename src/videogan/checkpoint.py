"""Checkpoints that resume everything and never execute code when loaded.

A checkpoint is a folder `RUN/checkpoints/step_XXXXXXXX/` holding
- generator.safetensors, discriminator.safetensors: weights and BatchNorm buffers;
- generator_ema.safetensors: the exponential moving average of G's weights (when train.ema_decay > 0);
- training_state.safetensors: both Adam states' tensors and the RNG states;
- checkpoint.json: step, the resolved config, Adam hyper-parameters, format version.
Only safetensors and JSON: loading parses data, never unpickles. The folder is written
under a temporary name and renamed into place, so a crash never leaves a half checkpoint,
and checkpoint.json is written last, so a folder without it is never taken for one.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import Config, ConfigError, from_dict
from .media import write_json

FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step_(\d{8,})$")


class CheckpointError(RuntimeError):
    """A missing, incomplete or corrupt checkpoint; the message names the path and the reason."""


@dataclass
class Checkpoint:
    path: Path
    step: int
    config: Config
    generator: dict[str, torch.Tensor]
    generator_ema: dict[str, torch.Tensor] | None
    discriminator: dict[str, torch.Tensor] | None
    training_state: dict[str, torch.Tensor] | None
    meta: dict[str, Any]


# ----------------------------------------------------------------------------- optimiser state <-> flat tensors

def flatten_optimizer(prefix: str, state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state_dict into flat tensors (for safetensors) and JSON-able param groups."""
    tensors: dict[str, torch.Tensor] = {}
    for param_id, state in state_dict["state"].items():
        for name, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}.state.{param_id}.{name}"] = tensor.detach().cpu().contiguous()
    return tensors, {"param_groups": state_dict["param_groups"]}


def unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    head = prefix + ".state."
    for key, value in tensors.items():
        if key.startswith(head):
            param_id, name = key[len(head) :].split(".", 1)
            state.setdefault(int(param_id), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


# ----------------------------------------------------------------------------- writing

def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    config: Config,
    generator: dict[str, torch.Tensor],
    discriminator: dict[str, torch.Tensor] | None,  # None: no discriminator (a model imported without one)
    optimizers: dict[str, dict[str, Any]],
    rng: dict[str, torch.Tensor],
    keep: int = 0,
    extra: dict[str, Any] | None = None,
    generator_ema: dict[str, torch.Tensor] | None = None,
    keep_also: Path | None = None,
) -> Path:
    """Write checkpoint `step` atomically under RUN/checkpoints/; keep only the newest `keep` (0: all), and
    `keep_also` (the best checkpoint so far) whatever its age."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        state: dict[str, torch.Tensor] = {f"rng.{k}": v.cpu().contiguous() for k, v in rng.items()}
        opt_meta = {}
        for name, sd in optimizers.items():
            tensors, opt_meta[name] = flatten_optimizer(f"optimizer.{name}", sd)
            state.update(tensors)
        save_file(_cpu(generator), tmp / "generator.safetensors")
        if generator_ema is not None:
            save_file(_cpu(generator_ema), tmp / "generator_ema.safetensors")
        if discriminator is not None:
            save_file(_cpu(discriminator), tmp / "discriminator.safetensors")
        save_file(state, tmp / "training_state.safetensors")
        meta = {"format_version": FORMAT_VERSION, "step": step, "config": config.to_dict(), "optimizers": opt_meta, **(extra or {})}
        write_json(tmp / "checkpoint.json", meta, sort_keys=True)  # last: its presence marks a complete checkpoint
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            if keep_also is None or old.name != Path(keep_also).name:
                shutil.rmtree(old, ignore_errors=True)
    return final


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


# ----------------------------------------------------------------------------- reading

def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found) if (p / "checkpoint.json").is_file()]


def resolve(path: str | os.PathLike) -> Path:
    """A run directory (-> its latest checkpoint), a checkpoint directory, or a file inside one."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_file():
        path = path.parent
    if (path / "checkpoint.json").is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(f"{path}: not a checkpoint and holds no complete checkpoint under checkpoints/")
    return found[-1]


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({str(e).splitlines()[0]})") from None


def _read_meta(ckpt_dir: Path) -> tuple[dict, int, Config]:
    """(checkpoint.json, step, config) of a checkpoint folder, checked."""
    meta_path = ckpt_dir / "checkpoint.json"
    try:
        meta = json.loads(meta_path.read_text())
        step = int(meta["step"])
        config = from_dict(meta["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, ConfigError) as e:
        raise CheckpointError(f"{meta_path}: corrupt checkpoint metadata ({e})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{meta_path}: unsupported format version {meta.get('format_version')!r}")
    return meta, step, config


def checkpoint_config(path: str | os.PathLike) -> Config:
    """The config of a run's latest checkpoint (or of a checkpoint folder), without loading any weights."""
    return _read_meta(resolve(path))[2]


def load_checkpoint(path: str | os.PathLike, generator_only: bool = False) -> Checkpoint:
    ckpt_dir = resolve(path)
    meta, step, config = _read_meta(ckpt_dir)
    return Checkpoint(
        path=ckpt_dir,
        step=step,
        config=config,
        generator=_load_tensors(ckpt_dir / "generator.safetensors"),
        generator_ema=_load_tensors(ema) if (ema := ckpt_dir / "generator_ema.safetensors").exists() else None,
        discriminator=None if generator_only or not (d := ckpt_dir / "discriminator.safetensors").exists() else _load_tensors(d),
        training_state=None if generator_only else _load_tensors(ckpt_dir / "training_state.safetensors"),
        meta=meta,
    )


def load_state_dict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load weights strictly, turning a shape or key mismatch into a one-line CheckpointError."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise CheckpointError(f"{source}: weights do not fit the model in its checkpoint.json ({first})") from None


# ----------------------------------------------------------------------------- the whole training state

@dataclass
class TrainingState:
    """Everything a run needs to continue: nets (with BatchNorm statistics), optimisers, progress."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    generator_ema: torch.nn.Module | None = None
    step: int = 0
    elapsed_seconds: float = 0.0


def save_training_state(run_dir: str | os.PathLike, config: Config, state: TrainingState, keep: int = 0,
                        keep_also: Path | None = None) -> Path:
    return save_checkpoint(
        run_dir, state.step, config,
        generator=state.generator.state_dict(), discriminator=state.discriminator.state_dict(),
        optimizers={"generator": state.opt_g.state_dict(), "discriminator": state.opt_d.state_dict()},
        rng={"torch": torch.get_rng_state()},
        keep=keep,
        extra={"elapsed_seconds": state.elapsed_seconds},
        generator_ema=state.generator_ema.state_dict() if state.generator_ema is not None else None,
        keep_also=keep_also,
    )


BEST_FILE = "best.json"


def read_best(run_dir: str | os.PathLike) -> dict:
    """RUN/best.json: the checkpoint with the lowest FVD so far (step, metric, value, checkpoint), or {}."""
    path = Path(run_dir) / BEST_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None


def write_best(run_dir: str | os.PathLike, record: dict) -> None:
    write_json(Path(run_dir) / BEST_FILE, record, sort_keys=True)


def _keep_kernel_choice(opt: torch.optim.Optimizer, saved: dict[str, Any]) -> dict[str, Any]:
    """`saved` with this optimiser's kernel flags (fused, foreach): load_state_dict would otherwise bring back those
    of the run that wrote it (runs from before the fused Adam would resume on the slower per-op kernel)."""
    for group, current in zip(saved["param_groups"], opt.param_groups):
        group.update({key: current[key] for key in ("fused", "foreach") if key in current})
    return saved


def restore_training_state(run_dir: str | os.PathLike, config: Config, state: TrainingState) -> None:
    """Load the run's latest checkpoint into `state` (weights, BatchNorm statistics, Adam, RNG, step)."""
    ckpt = load_checkpoint(run_dir)
    if ckpt.config.model != config.model:
        raise CheckpointError(f"{ckpt.path}: resume cannot change the model section of the config")
    if ckpt.discriminator is None or not ckpt.meta.get("optimizers"):
        raise CheckpointError(f"{ckpt.path}: holds no discriminator or no optimiser state (an imported model?); "
                              "training cannot resume from it")
    load_state_dict(state.generator, ckpt.generator, ckpt.path / "generator.safetensors")
    load_state_dict(state.discriminator, ckpt.discriminator, ckpt.path / "discriminator.safetensors")
    if state.generator_ema is not None:
        if ckpt.generator_ema is None:
            raise CheckpointError(f"{ckpt.path}: generator_ema.safetensors missing (was train.ema_decay 0 then?)")
        load_state_dict(state.generator_ema, ckpt.generator_ema, ckpt.path / "generator_ema.safetensors")
    tensors, meta = ckpt.training_state, ckpt.meta
    try:
        for opt, name in ((state.opt_g, "generator"), (state.opt_d, "discriminator")):
            opt.load_state_dict(_keep_kernel_choice(opt, unflatten_optimizer(f"optimizer.{name}", tensors, meta["optimizers"][name])))
        torch.set_rng_state(tensors["rng.torch"])
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt.path}: training state does not fit this run ({e})") from None
    state.step, state.elapsed_seconds = ckpt.step, float(meta.get("elapsed_seconds", 0.0))
