"""torchrun on CPU (gloo): the same code path as one process; only rank 0 writes; resume works."""
import json
import os
import subprocess
import sys

import pytest
import torch

from videogan.training.checkpoint import list_checkpoints

SMALL = ["--set", "model.frames=4", "--set", "model.size=8", "--set", "model.g_width=8",
         "--set", "model.d_width=4", "--set", "train.num_samples=4", "--set", "train.log_every=1",
         "--device", "cpu", "--quiet"]


def _torchrun(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "videogan", "train", *args, *SMALL]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_two_ranks_train_and_resume(tmp_path):
    run = tmp_path / "run"
    printed = _torchrun("--preset", "tiny", "--out", str(run), "--steps", "2", "--batch-size", "4",
                        cwd=tmp_path)
    assert len(printed) == 1 and printed[0]["step"] == 2  # only rank 0 reports
    printed = _torchrun("--out", str(run), "--resume", "--steps", "3", cwd=tmp_path)
    assert printed[0]["step"] == 3
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]  # one writer, no duplicate lines
    assert [p.name for p in list_checkpoints(run)][-1] == "step_00000003"


@pytest.mark.parametrize("r1_weight", [0.0, 1.0])
def test_two_ranks_step_equals_one_process_with_two_micro_batches(tmp_path, r1_weight):
    """After one DDP step (2 gloo ranks, each half of a fixed global batch) both ranks hold identical weights,
    and they equal one process's step on the whole batch as 2 accumulated micro-batches of the same halves.

    Why micro-batches and not one batch of 4: BatchNorm normalises each rank's half with that half's
    statistics (SyncBatchNorm, which would make it the global batch's, runs only on GPUs), so the maths equals
    per-half statistics, which is exactly what gradient accumulation computes. Everything else (the mean
    losses, DDP's averaging of gradients) is the same sum, up to float rounding. With R1 on, D's step also
    runs a double backward through DistributedDataParallel; its penalty is a per-clip mean too, so the same
    equality holds."""
    from distributed_case import build_case
    from safetensors.torch import load_file

    from videogan.training.distributed import DistributedContext
    from videogan.training.step import StepSetup, train_step

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = os.path.join(os.path.dirname(__file__), "ddp_step.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script,
           str(tmp_path), str(r1_weight)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)

    case = build_case(grad_accumulation=2, r1_weight=r1_weight)
    before = case.weights()
    single = DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    train_step(StepSetup(case.generator, case.discriminator, case.opt_g, case.opt_d, case.train, single),
               case.real, case.z, r1=r1_weight > 0)
    after = case.weights()
    # the step did something
    assert all(not torch.equal(before[k], after[k]) for k in after if k.startswith("D."))
    for k in after:
        assert torch.allclose(rank0[k], after[k], atol=1e-6, rtol=1e-5), k

    # And the difference is real: one batch of 4 (BatchNorm over all 4) gives other weights.
    whole = build_case(grad_accumulation=1, r1_weight=r1_weight)
    train_step(StepSetup(whole.generator, whole.discriminator, whole.opt_g, whole.opt_d, whole.train, single),
               whole.real, whole.z, r1=r1_weight > 0)
    assert not all(torch.allclose(rank0[k], v, atol=1e-6) for k, v in whole.weights().items())
