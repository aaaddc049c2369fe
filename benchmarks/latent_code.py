"""Does a generator use its discrete code (model.z_modes)? Its clips per mode, and what moves them more.

    python benchmarks/latent_code.py runs/people-64-zm --out runs/people-64-zm/modes

For each of the K modes, N noise vectors are drawn and their code set to that mode; G's clips (EMA weights,
BatchNorm from running statistics) are compared with the same vectors' clips at the next mode (only the code
changed) and with fresh continuous entries at the same mode (only the rest changed): the mean |difference| of
the pixels (0-255). A G that ignores the code moves little with it; one that puts its scenes in the code moves
more with the code than with the rest. With --out: `modes.gif` and `modes.png` (frame 0), one row per mode.
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from videogan import load_generator
from videogan.generation.noise import generate_from_noise, noise
from videogan.media import grid, to_uint8, write_gif, write_png


def at_mode(z: torch.Tensor, modes: int, mode: int) -> torch.Tensor:
    """z [N, Z] with its first `modes` entries set so that their argmax, the code, is `mode`."""
    z = z.clone()
    z[:, :modes] = 0.0
    z[:, mode] = 1.0
    return z


def mean_abs_change(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean |a - b| of two uint8 batches of clips, in grey levels (0-255)."""
    return (a.float() - b.float()).abs().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run directory or checkpoint folder with model.z_modes > 0")
    ap.add_argument("--num", type=int, default=16, help="noise vectors per mode (default 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="folder for modes.gif and modes.png (the first 4 clips of each mode)")
    args = ap.parse_args()

    loaded = load_generator(args.run)
    modes = loaded.config.model.z_modes
    if modes < 2:
        raise SystemExit(f"{args.run}: model.z_modes is {modes}: this generator has no discrete code")
    z_dim = loaded.config.model.z_dim

    def clips(z: torch.Tensor) -> torch.Tensor:  # [N, 3, T, H, W] uint8
        return to_uint8(generate_from_noise(loaded.generator, z).video.cpu())

    code_moves, rest_moves, shown = [], [], []
    for mode in range(modes):
        z = noise(args.num, z_dim, args.seed + 2 * mode)
        rest = noise(args.num, z_dim, args.seed + 2 * mode + 1)
        at = clips(at_mode(z, modes, mode))
        code_moves.append(mean_abs_change(at, clips(at_mode(z, modes, (mode + 1) % modes))))
        rest_moves.append(mean_abs_change(at, clips(at_mode(rest, modes, mode))))
        shown.append(at[:4])
    result = {"run": args.run, "step": loaded.step, "modes": modes, "num": args.num,
              "mean_abs_change_code": round(sum(code_moves) / modes, 2),
              "mean_abs_change_rest": round(sum(rest_moves) / modes, 2),
              "per_mode_code": [round(v, 2) for v in code_moves],
              "per_mode_rest": [round(v, 2) for v in rest_moves]}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        tiled = grid(torch.cat(shown), columns=4)  # [3, T, H', W']: one row per mode
        write_gif(out / "modes.gif", tiled)
        write_png(out / "modes.png", tiled[:, 0])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
