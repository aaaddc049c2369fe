"""Does stabilisation keep a still camera still? Prepared clips of still-camera footage, stabilised and not.

    videogan prepare path/to/people/test.csv --out runs/stab --stride 4 --quality 95   # recipes/people/
    videogan prepare path/to/people/test.csv --out runs/nostab --stride 4 --quality 95 --no-stabilize
    python benchmarks/still_background.py runs/stab runs/nostab

For each source video, over the clips both folders hold (same source and start frame): the mean |frame t -
frame 0| (0-255) at the pixels that stay still in the unstabilised clip (mean change under 3 levels: the
background of a still camera), in the stabilised and the unstabilised clip, overall and at t = 1, 8, 16, 31.
On a still camera the truth is the unstabilised clip's change (noise and compression only): a stabiliser that
drifts makes the stabilised clip's change grow with t. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch

from videogan.data.shards import decode_clip, image_and_meta, read_shard, resolve_shards
from videogan.metrics.measures import changes_from_first

STILL_LEVELS = 3.0
TIMES = (1, 8, 16, 31)


def clips_by_key(folder: str) -> dict[tuple[str, int], torch.Tensor]:
    """(source video name, start frame) -> float clip [3, T, H, W] in 0-255."""
    out = {}
    for shard in resolve_shards(folder):
        for sample in read_shard(shard):
            _, meta, _ = image_and_meta(sample)
            out[(Path(meta["source"]).name, meta["start_frame"])] = decode_clip(sample).float()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stabilized", help="prepared folder (stabilised)")
    ap.add_argument("unstabilized", help="prepared folder of the same inputs with --no-stabilize")
    args = ap.parse_args()
    stab, plain = clips_by_key(args.stabilized), clips_by_key(args.unstabilized)
    per_video: dict[str, list[torch.Tensor]] = defaultdict(list)
    for key in sorted(stab.keys() & plain.keys()):
        change = [changes_from_first(c).abs().mean(0) for c in (stab[key], plain[key])]  # 2 x [T-1, H, W]
        still = change[1].mean(0) < STILL_LEVELS
        per_video[key[0]].append(torch.stack([ch[:, still].mean(1) for ch in change]))  # [2, T-1]
    result = {}
    for name, rows in per_video.items():
        mean = torch.stack(rows).mean(0)  # [2, T-1]
        result[name] = {"clips": len(rows),
                        "stabilized": round(mean[0].mean().item(), 2),
                        "unstabilized": round(mean[1].mean().item(), 2),
                        "stabilized_at_t": {t: round(mean[0, t - 1].item(), 2) for t in TIMES},
                        "unstabilized_at_t": {t: round(mean[1, t - 1].item(), 2) for t in TIMES}}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
