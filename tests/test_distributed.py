"""torchrun on CPU (gloo): the same code path as one process; only rank 0 writes; resume works."""
import json
import os
import subprocess
import sys

from videogan.checkpoint import list_checkpoints

SMALL = ["--set", "model.frames=4", "--set", "model.size=8", "--set", "model.g_width=8", "--set", "model.d_width=4",
         "--set", "train.num_samples=4", "--set", "train.log_every=1", "--device", "cpu", "--quiet"]


def _torchrun(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "videogan", "train", *args, *SMALL]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_two_ranks_train_and_resume(tmp_path):
    run = tmp_path / "run"
    printed = _torchrun("--preset", "tiny", "--out", str(run), "--steps", "2", "--batch-size", "4", cwd=tmp_path)
    assert len(printed) == 1 and printed[0]["step"] == 2  # only rank 0 reports
    printed = _torchrun("--out", str(run), "--resume", "--steps", "3", cwd=tmp_path)
    assert printed[0]["step"] == 3
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]  # one writer, no duplicate lines
    assert [p.name for p in list_checkpoints(run)][-1] == "step_00000003"
