"""Seconds per training iteration (one D step + one G step) for a preset, on this machine.

    python benchmarks/step_time.py                      # paper at batch 8 and tiny at batch 32
    python benchmarks/step_time.py --preset tiny --batch-size 16 --steps 20

Times the real loop body (data, G forward, D on real and fake, both backward passes and Adam
steps) after warm-up iterations, and prints one JSON line per preset with the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date

import torch

from videogan.benchmarks import cpu_name
from videogan.config import override, preset
from videogan.data import make_source
from videogan.losses import discriminator_loss, generator_adversarial_loss, mask_l1_penalty
from videogan.models import Discriminator, build_generator
from videogan.train import to_model_range




def step_time(name: str, batch_size: int, steps: int, warmup: int, device: str, sets: list[str]) -> dict:
    cfg = preset(name)
    for s in sets:
        override(cfg, *s.split("=", 1))
    dev = torch.device(device)
    torch.manual_seed(0)
    G, D = build_generator(cfg.model).to(dev), Discriminator(cfg.model).to(dev)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.train.lr_g, betas=(cfg.train.beta1, cfg.train.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.train.lr_d, betas=(cfg.train.beta1, cfg.train.beta2))
    source = make_source(cfg)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        real = to_model_range(source.clips(i, batch_size, dev), dev)
        fake = G(torch.randn(batch_size, cfg.model.z_dim, device=dev))
        d_loss = discriminator_loss(D(real), D(fake.video.detach()))
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        g_loss = generator_adversarial_loss(D(fake.video)) + cfg.train.mask_l1_weight * mask_l1_penalty(fake.mask)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    median = times[len(times) // 2]
    return {
        "preset": name, "batch_size": batch_size, "seconds_per_step": round(median, 4),
        "clips_per_second": round(batch_size / median, 2), "steps_timed": steps, "overrides": sets,
        "device": device if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__, "date": str(date.today()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", help="preset to time (repeatable); default: paper and tiny")
    parser.add_argument("--batch-size", type=int, help="default: 8 for paper, 32 for tiny")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    defaults = {"paper": 8, "tiny": 32}
    for name in args.preset or ["paper", "tiny"]:
        batch = args.batch_size or defaults.get(name, 32)
        print(json.dumps(step_time(name, batch, args.steps, args.warmup, args.device, args.set)), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))
    main()
