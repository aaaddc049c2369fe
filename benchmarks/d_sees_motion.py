"""Can the discriminator tell a real clip from its first frame held still? D alone, trained on that task.

    python benchmarks/d_sees_motion.py runs/data-people-64-train --preset people-animate --steps 80

An image-to-video G starts by copying its input (its first frame must equal it), so its first fakes are stills
of real first frames; if D cannot tell those from the real clips, G is never pushed to move. For each D input
view (the paper's: the clip; model.d_frame_differences: the clip and each frame minus the first), a fresh D of
the preset's shape is trained with Adam (the preset's D learning rate and betas) on real clips of DATA against
the same clips' first frames held still, real and still in separate passes as in training. Prints one JSON
line per view every 10 steps: D's loss and mean real probability on both. Results go into
benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from videogan.bench import cpu_name
from videogan.config import preset
from videogan.data.streaming import ShardClips
from videogan.models import Discriminator
from videogan.training.losses import discriminator_loss, real_probability


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="prepared clips (shards) of the preset's shape")
    ap.add_argument("--preset", default="people-animate")
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = preset(args.preset)
    print(json.dumps({"machine": cpu_name(), "torch": torch.__version__, "preset": args.preset,
                      "data": args.data, "batch_size": cfg.train.batch_size, "steps": args.steps}),
          flush=True)
    for differences in (False, True):
        torch.manual_seed(args.seed)
        d = Discriminator(replace(cfg.model, d_frame_differences=differences))
        opt = torch.optim.Adam(d.parameters(), lr=cfg.train.lr_d, betas=(cfg.train.beta1, cfg.train.beta2))
        clips = ShardClips(args.data, cfg.model.frames, cfg.model.size, seed=args.seed,
                           cfg=cfg.data).batches(0, cfg.train.batch_size)
        started = time.perf_counter()
        for step in range(args.steps + 1):
            real = next(clips).float() / 127.5 - 1  # [B, 3, T, S, S]
            still = real[:, :, :1].expand_as(real).contiguous()
            real_logits, still_logits = d(real), d(still)
            loss = discriminator_loss(real_logits, still_logits)
            if step % 10 == 0:
                print(json.dumps({"d_frame_differences": differences, "step": step,
                                  "d_loss": round(loss.item(), 3),
                                  "p_real_on_real": round(real_probability(real_logits).mean().item(), 3),
                                  "p_real_on_still": round(real_probability(still_logits).mean().item(), 3),
                                  "seconds": round(time.perf_counter() - started, 1)}), flush=True)
            if step < args.steps:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()


if __name__ == "__main__":
    main()
