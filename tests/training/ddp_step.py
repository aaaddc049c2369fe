r"""One training step under torchrun (run by tests/test_distributed.py, not collected by pytest).

    python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/training/ddp_step.py OUT_DIR [R1_WEIGHT]

Every rank builds the same networks (same seed), takes its half of one fixed global batch, runs the
project's train_step through DistributedDataParallel (with the R1 penalty when R1_WEIGHT > 0), and writes its
weights to OUT_DIR/rank{R}.safetensors.
"""
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distributed_case import build_case  # noqa: E402

from videogan.training import distributed  # noqa: E402
from videogan.training.step import StepSetup, train_step  # noqa: E402


def main(out: Path, r1_weight: float) -> None:
    torch.set_num_threads(1)
    ctx = distributed.setup("cpu")
    case = build_case(r1_weight=r1_weight)
    share = case.real.shape[0] // ctx.world_size
    rows = slice(ctx.rank * share, (ctx.rank + 1) * share)
    G, D = ctx.wrap(case.generator), ctx.wrap(case.discriminator)
    train_step(StepSetup(G, D, case.opt_g, case.opt_d, case.train, ctx), case.real[rows], case.z[rows],
               r1=r1_weight > 0)
    save_file(case.weights(), str(out / f"rank{ctx.rank}.safetensors"))
    ctx.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
