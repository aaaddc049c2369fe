"""Checkpoints that resume everything and never execute code when loaded.

A checkpoint is a folder `RUN/checkpoints/step_XXXXXXXX/` holding
- generator.safetensors, discriminator.safetensors: weights and BatchNorm buffers;
- generator_ema.safetensors: the exponential moving average of G's weights (when train.ema_decay > 0);
- training_state.safetensors: both Adam states' tensors and the RNG states;
- checkpoint.json: step, the resolved config, Adam hyper-parameters, format version.
Only safetensors and JSON: loading parses data, never unpickles. The folder is written
under a temporary name and renamed into place, so a crash never leaves a half checkpoint,
and checkpoint.json is written last, so a folder without it is never taken for one. Every
file and the folder are flushed to the disk before the rename (a power cut leaves the old
state or the new one), and an old checkpoint is renamed to a hidden name before it is
deleted, so a half-deleted one never looks complete. What an interrupted write or deletion
leaves behind is removed by `sweep_leftovers` when a run starts or resumes.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import Config, ConfigError, from_dict
from ..errors import VideoGANError
from ..media import durable_replace, fsync_path, make_folder_durably, umask_mode, write_json

FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step_(\d{8,})$")
# Our hidden leftovers under checkpoints/: a folder being written (mkdtemp's ".step_XXXXXXXX.<8 random>") or
# one being deleted (".step_XXXXXXXX.trash").
_LEFTOVER_DIR = re.compile(r"^\.step_\d{8,}\.[a-z0-9_]+$")
CHECKPOINT_FILES = frozenset({"checkpoint.json", "generator.safetensors", "generator_ema.safetensors",
                              "discriminator.safetensors", "training_state.safetensors"})


class CheckpointError(VideoGANError, RuntimeError):
    """A missing, incomplete or corrupt checkpoint; the message names the path and the reason."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint file that could not be written (a full disk, say): `path` and the system's `reason`."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"cannot write {path} ({reason})")
        self.path, self.reason = path, reason


def system_reason(error: BaseException) -> str:
    """The system's words for a failed read or write: OSError's strerror, or the part of a SafetensorError
    that quotes it ("Error while serializing: I/O error: No space left on device (os error 28)")."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = (str(error).splitlines() or [type(error).__name__])[0]
    quoted = re.search(r"([^:]+?) \(os error \d+\)", text)
    return quoted.group(1).strip() if quoted else text


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failed write inside the block into a CheckpointWriteError naming `path`."""
    try:
        yield
    except (OSError, SafetensorError) as e:
        raise CheckpointWriteError(path, system_reason(e)) from None


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


# --------------------------------------------------------------------------- optimiser state <-> flat tensors

def flatten_optimizer(prefix: str,
                      state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state_dict into flat tensors (for safetensors) and JSON-able param groups."""
    tensors: dict[str, torch.Tensor] = {}
    for param_id, state in state_dict["state"].items():
        for name, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}.state.{param_id}.{name}"] = tensor.detach().cpu().contiguous()
    return tensors, {"param_groups": state_dict["param_groups"]}


def unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor],
                        meta: dict[str, Any]) -> dict[str, Any]:
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
    """Write checkpoint `step` atomically and durably under RUN/checkpoints/; keep only the newest `keep`
    (0: all), and `keep_also` (the best checkpoint so far) whatever its age. A failed write (a full disk)
    raises CheckpointWriteError naming the file, and leaves nothing of the new checkpoint behind."""
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:08d}"
    with writing(root):
        make_folder_durably(root)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        state: dict[str, torch.Tensor] = {f"rng.{k}": v.cpu().contiguous() for k, v in rng.items()}
        opt_meta = {}
        for name, sd in optimizers.items():
            tensors, opt_meta[name] = flatten_optimizer(f"optimizer.{name}", sd)
            state.update(tensors)
        weights = {"generator.safetensors": generator, "generator_ema.safetensors": generator_ema,
                   "discriminator.safetensors": discriminator, "training_state.safetensors": state}
        for file_name, tensors in weights.items():
            if tensors is not None:
                with writing(final / file_name):
                    save_file(_cpu(tensors), tmp / file_name)
        meta = {"format_version": FORMAT_VERSION, "step": step, "config": config.to_dict(),
                "optimizers": opt_meta, **(extra or {})}
        with writing(final / "checkpoint.json"):
            # last: its presence marks a complete checkpoint
            write_json(tmp / "checkpoint.json", meta, sort_keys=True)
        for file in tmp.iterdir():
            with writing(final / file.name):
                os.chmod(file, umask_mode(0o666))  # safetensors writes private (0600) files
                fsync_path(file)  # a full disk may only show here (delayed allocation)
        with writing(final):
            os.chmod(tmp, umask_mode(0o777))  # mkdtemp's folder is private (0700); a checkpoint is not
            if final.exists():
                _discard(final)
            durable_replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            if keep_also is None or old.name != Path(keep_also).name:
                _discard(old)
    return final


def _discard(folder: Path) -> None:
    """Delete a checkpoint folder so that no moment of the deletion leaves something that looks complete: it
    is renamed to a hidden name first (which list_checkpoints ignores and sweep_leftovers removes if a crash
    interrupts the deletion), then its files go. A folder that cannot be renamed is left as it is."""
    trash = folder.with_name(f".{folder.name}.trash")
    shutil.rmtree(trash, ignore_errors=True)  # an earlier deletion of the same step, interrupted
    try:
        os.replace(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def sweep_leftovers(run_dir: str | os.PathLike) -> list[Path]:
    """Remove what interrupted checkpoint writes and deletions left under RUN/checkpoints/: hidden temporary
    and trash folders, and step folders without checkpoint.json that hold nothing but checkpoint files.
    Complete checkpoints and anything else are never touched. Returns the removed paths."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    removed = []
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or entry.is_symlink():
            continue
        if _LEFTOVER_DIR.match(entry.name) or _is_partial_checkpoint(entry):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _is_partial_checkpoint(folder: Path) -> bool:
    """A step folder without checkpoint.json whose entries are all checkpoint files (a deletion interrupted
    by an earlier version, which deleted in place)."""
    if not _STEP_DIR.match(folder.name) or (folder / "checkpoint.json").exists():
        return False
    return all(child.name in CHECKPOINT_FILES and child.is_file() and not child.is_symlink()
               for child in folder.iterdir())


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


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; CheckpointError naming it when it is missing or corrupt."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors file ({str(e).splitlines()[0]})") from None


def read_meta(ckpt_dir: Path) -> tuple[dict, int, Config]:
    """(checkpoint.json, step, config) of a checkpoint folder, checked."""
    meta_path = ckpt_dir / "checkpoint.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{meta_path}: corrupt checkpoint metadata ({e})") from None
    except OSError as e:
        raise CheckpointError(f"{meta_path}: unreadable ({system_reason(e)})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path}: corrupt checkpoint metadata (not a JSON object)")
    if meta.get("format_version") != FORMAT_VERSION or isinstance(meta.get("format_version"), bool):
        raise CheckpointError(f"{meta_path}: unsupported format version {meta.get('format_version')!r}")
    problem = meta_problem(meta, ckpt_dir.name)
    if problem:
        raise CheckpointError(f"{meta_path}: corrupt checkpoint metadata ({problem})")
    try:
        config = from_dict(meta["config"])
    except (TypeError, ValueError, ConfigError) as e:
        raise CheckpointError(f"{meta_path}: corrupt checkpoint metadata (config: {e})") from None
    return meta, meta["step"], config


# Adam's param_group entries and their JSON types (others pass unchecked, as the optimiser keeps them).
_GROUP_NUMBERS = ("lr", "eps", "weight_decay")
_GROUP_FLAGS = ("amsgrad", "maximize", "foreach", "capturable", "differentiable", "fused",
                "decoupled_weight_decay")


def meta_problem(meta: dict, folder_name: str = "") -> str | None:
    """What is wrong with a checkpoint.json's fields, naming the first wrong one (None: nothing). A step
    folder's name must agree with its "step": weights of step 300 must not resume as step 12."""
    step = meta.get("step")
    if not _is_count(step):
        return f'"step" must be a whole number >= 0, not {step!r}'
    if (named := _STEP_DIR.match(folder_name)) and int(named.group(1)) != step:
        return f'"step" is {step} but the folder is {folder_name}'
    if not isinstance(meta.get("config"), dict):
        return f'"config" must be an object, not {meta.get("config")!r}'
    if "elapsed_seconds" in meta and not _is_amount(meta["elapsed_seconds"]):
        return f'"elapsed_seconds" must be a number >= 0, not {meta["elapsed_seconds"]!r}'
    optimizers = meta.get("optimizers", {})
    if not isinstance(optimizers, dict):
        return f'"optimizers" must be an object, not {type(optimizers).__name__}'
    for name, entry in optimizers.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("param_groups"), list):
            return f'"optimizers.{name}" must be an object with a "param_groups" list'
        for i, group in enumerate(entry["param_groups"]):
            if problem := _param_group_problem(group):
                return f'"optimizers.{name}.param_groups[{i}]" {problem}'
    if "log_interval" in meta and (problem := log_interval_problem(meta["log_interval"])):
        return f'"log_interval" {problem}'
    return None


def _param_group_problem(group: Any) -> str | None:
    if not isinstance(group, dict):
        return "must be an object"
    params = group.get("params")
    if not isinstance(params, list) or not all(_is_count(p) for p in params):
        return '"params" must be a list of whole numbers'
    for key in _GROUP_NUMBERS:
        if key in group and not _is_amount(group[key]):
            return f'"{key}" must be a number >= 0, not {group[key]!r}'
    if "betas" in group and not (isinstance(group["betas"], list) and len(group["betas"]) == 2
                                 and all(_is_amount(b) for b in group["betas"])):
        return f'"betas" must be two numbers >= 0, not {group["betas"]!r}'
    for key in _GROUP_FLAGS:
        if key in group and group[key] not in (True, False, None):
            return f'"{key}" must be true, false or null, not {group[key]!r}'
    return None


def log_interval_problem(interval: Any) -> str | None:
    """What is wrong with a carried logging interval (logger.IntervalMeter.state), or None."""
    if not isinstance(interval, dict):
        return "must be an object"
    if not _is_count(interval.get("steps")) or not _is_amount(interval.get("seconds")):
        return '"steps" and "seconds" must be numbers >= 0'
    values = interval.get("values")
    if not isinstance(values, list) or not all(isinstance(v, list) and len(v) == 3 for v in values):
        return '"values" must be a list of [name, sum, count]'
    for name, total, count in values:
        number = isinstance(total, (int, float)) and not isinstance(total, bool)
        counted = _is_count(count) and 0 < count <= interval["steps"]
        if not (isinstance(name, str) and number and counted):
            return f'"values" entry {[name, total, count]!r} is not [name, sum, count from 1 to "steps"]'
    return None


def _is_count(value: Any) -> bool:
    """A JSON whole number >= 0 (not a float such as 12.7, not a boolean)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_amount(value: Any) -> bool:
    """A finite JSON number >= 0 (not a boolean)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value >= 0


def checkpoint_config(path: str | os.PathLike) -> Config:
    """The config of a run's latest checkpoint (or of a checkpoint folder), without loading any weights."""
    return read_meta(resolve(path))[2]


def load_checkpoint(path: str | os.PathLike, generator_only: bool = False) -> Checkpoint:
    ckpt_dir = resolve(path)
    meta, step, config = read_meta(ckpt_dir)
    return Checkpoint(
        path=ckpt_dir,
        step=step,
        config=config,
        generator=load_tensors(ckpt_dir / "generator.safetensors"),
        generator_ema=load_tensors(ema) if (ema := ckpt_dir / "generator_ema.safetensors").exists() else None,
        discriminator=(None if generator_only or not (d := ckpt_dir / "discriminator.safetensors").exists()
                       else load_tensors(d)),
        training_state=None if generator_only else load_tensors(ckpt_dir / "training_state.safetensors"),
        meta=meta,
    )


def load_state_dict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load weights strictly, turning a shape or key mismatch into a one-line CheckpointError."""
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise CheckpointError(f"{source}: weights do not fit the model in its checkpoint.json "
                              f"({first})") from None


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
    log_interval: dict | None = None  # the logging interval open at `step` (logger.IntervalMeter.state)


def save_training_state(run_dir: str | os.PathLike, config: Config, state: TrainingState, keep: int = 0,
                        keep_also: Path | None = None) -> Path:
    return save_checkpoint(
        run_dir, state.step, config,
        generator=state.generator.state_dict(), discriminator=state.discriminator.state_dict(),
        optimizers={"generator": state.opt_g.state_dict(), "discriminator": state.opt_d.state_dict()},
        rng={"torch": torch.get_rng_state()},
        keep=keep,
        extra={"elapsed_seconds": state.elapsed_seconds,
               **({"log_interval": state.log_interval} if state.log_interval else {})},
        generator_ema=state.generator_ema.state_dict() if state.generator_ema is not None else None,
        keep_also=keep_also,
    )


BEST_FILE = "best.json"


def read_best(run_dir: str | os.PathLike) -> dict:
    """RUN/best.json: the checkpoint with the lowest FVD so far (step, metric, value, checkpoint), or {}."""
    path = Path(run_dir) / BEST_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, RecursionError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None


def write_best(run_dir: str | os.PathLike, record: dict) -> None:
    write_json(Path(run_dir) / BEST_FILE, record, sort_keys=True)


def _with_this_runs_settings(opt: torch.optim.Optimizer, saved: dict[str, Any]) -> dict[str, Any]:
    """`saved` (the moments and step counts to resume) with this optimiser's settings: its learning rate and
    betas, from the config it was built with, and its kernel flags (fused, foreach). load_state_dict would
    otherwise bring back those of the run that wrote it, so `--resume --set train.lr_d=...` would change
    nothing, and runs from before the fused Adam would resume on the slower per-op kernel."""
    for group, current in zip(saved["param_groups"], opt.param_groups, strict=False):
        group.update({key: value for key, value in current.items() if key != "params"})
    return saved


def restore_training_state(run_dir: str | os.PathLike, config: Config, state: TrainingState) -> None:
    """Load the run's latest checkpoint into `state` (weights, BatchNorm statistics, Adam, RNG, step)."""
    ckpt = load_checkpoint(run_dir)
    if ckpt.config.model != config.model:
        raise CheckpointError(f"{ckpt.path}: resume cannot change the model section of the config")
    if ckpt.discriminator is None or not ckpt.meta.get("optimizers"):
        raise CheckpointError(f"{ckpt.path}: holds no discriminator or no optimiser state "
                              "(an imported model?); training cannot resume from it")
    load_state_dict(state.generator, ckpt.generator, ckpt.path / "generator.safetensors")
    load_state_dict(state.discriminator, ckpt.discriminator, ckpt.path / "discriminator.safetensors")
    if state.generator_ema is not None:
        if ckpt.generator_ema is None:
            raise CheckpointError(f"{ckpt.path}: generator_ema.safetensors missing "
                                  "(was train.ema_decay 0 then?)")
        load_state_dict(state.generator_ema, ckpt.generator_ema, ckpt.path / "generator_ema.safetensors")
    tensors, meta = ckpt.training_state, ckpt.meta
    try:
        for opt, name in ((state.opt_g, "generator"), (state.opt_d, "discriminator")):
            saved = unflatten_optimizer(f"optimizer.{name}", tensors, meta["optimizers"][name])
            opt.load_state_dict(_with_this_runs_settings(opt, saved))
        torch.set_rng_state(tensors["rng.torch"])
    except (KeyError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{ckpt.path}: training state does not fit this run ({e})") from None
    state.step, state.elapsed_seconds = ckpt.step, float(meta.get("elapsed_seconds", 0.0))
    state.log_interval = meta.get("log_interval")
