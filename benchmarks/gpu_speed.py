"""Issue 5's GPU measurement, prepared to run in one go on a GPU: the paper preset at batch 64, with and
without bf16 and torch.compile, and TF32's and bf16's numerics checked against plain fp32.

    python benchmarks/gpu_speed.py --out DIR                      # on the GPU machine (cuda, paper, batch 64)
    python benchmarks/gpu_speed.py --device cpu --preset tiny --batch-size 4 --steps 1 --peak-size 512 \\
        --sets fp32,bf16 --out /tmp/g

First `videogan bench precision` (one forward and backward pass of G and D in fp32, TF32 and bf16 from the
same weights, batch and noise: each output's and gradient's relative error against fp32, flagged above
--output-tolerance / --gradient-tolerance), then each option set as one `videogan bench train`, every one in
its own process, so that a compile failure or an out-of-memory in one cannot spoil the others, and each with a
time limit. Writes DIR/gpu_speed.jsonl (one line per run: the bench's JSON, or the error) and DIR/gpu_speed.md
(the tables for benchmarks/RESULTS.md), and prints the tables.

On a GPU machine that has torch but not PyAV, simplejpeg or webdataset, the command is
(the wheels downloaded here beforehand into the ignored folder .whl/, see benchmarks/RESULTS.md):

    python3 -m pip install -q --no-index --no-deps --target .whl/site .whl/*.whl && \\
    PYTHONPATH=.whl/site:src PYTHONUNBUFFERED=1 python3 benchmarks/gpu_speed.py --out $OUT
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# name -> config overrides; TF32 is the training default on CUDA (train.tf32=true).
OPTION_SETS = {  # the most wanted first: a set that runs out of time leaves the ones before it measured
    "tf32": [],
    "bf16": ["train.precision=bf16"],
    "bf16+compile": ["train.precision=bf16", "train.compile=true"],
    "tf32+compile": ["train.compile=true"],
    "fp32": ["train.tf32=false"],
    "bf16+channels_last": ["train.precision=bf16", "train.channels_last=true"],
}


OUTPUTS = ("video", "real_logits", "fake_logits")  # `bench precision`'s outputs; its other errors: gradients


def bench_command(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "videogan", "bench", "train", "--preset", args.preset,
           "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--device", args.device, "--peak-size", str(args.peak_size), "--quiet"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def precision_command(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "videogan", "bench", "precision", "--preset", args.preset,
            "--batch-size", str(args.batch_size), "--device", args.device]


def failed_checks(errors: dict[str, dict[str, float | None]], output_tolerance: float,
                  gradient_tolerance: float) -> list[str]:
    """The `mode/quantity` names whose relative error against fp32 is over its tolerance or not finite."""
    failed = []
    for mode, by_name in errors.items():
        for name, error in by_name.items():
            tolerance = output_tolerance if name in OUTPUTS else gradient_tolerance
            if error is None or error > tolerance:
                failed.append(f"{mode}/{name}")
    return failed


def precision_table(row: dict) -> str:
    """Markdown: one row per mode, its relative errors against fp32, and what failed."""
    if "error" in row:
        return f"Precision check: {row['error']}"
    errors = row["relative_error_vs_fp32"]
    names = list(next(iter(errors.values())))
    lines = ["| mode | " + " | ".join(f"{n} rel. error" for n in names) + " |",
             "| --- | " + " | ".join("---" for _ in names) + " |"]
    for mode, by_name in errors.items():
        cells = ["not finite" if by_name[n] is None else f"{by_name[n]:.3g}" for n in names]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    verdict = ("all within tolerance" if not row["failed"]
               else "over tolerance: " + ", ".join(row["failed"]))
    tolerances = row["tolerances"]
    return "\n".join(lines) + (f"\n\nAgainst fp32 (tolerances: outputs {tolerances['outputs']:g}, gradients "
                               f"{tolerances['gradients']:g}): {verdict}.")


def run_set(name: str, cmd: list[str], timeout: float) -> dict:
    """One option set: the bench's JSON (its last stdout line) plus the set's name and wall time,
    or the error."""
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"set": name, "error": f"timed out after {timeout:.0f} s"}
    wall = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"set": name, "error": f"exit {done.returncode}: {last}", "wall_seconds": wall}
    return {"set": name, **json.loads(done.stdout.strip().splitlines()[-1]), "wall_seconds": wall}


def table(rows: list[dict]) -> str:
    """Markdown: steps per second, model FLOP utilisation
    against the fp32 (TF32 as set) and bf16 matmul peaks."""
    lines = ["| options | s / step | steps / s | clips / s | TFLOP/s | fraction of fp32 peak | "
             "fraction of bf16 peak | h / 100k steps |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['set']} | {r['error']} | | | | | | |")
            continue
        bf16 = r.get("fraction_of_bf16_peak", "")
        lines.append(f"| {r['set']} | {r['step_seconds']:.4g} | {1 / r['step_seconds']:.3g} | "
                     f"{r['clips_per_second']:.4g} | {r['achieved_gflops'] / 1000:.3g} | "
                     f"{r['fraction_of_peak']:.3g} | {bf16} | {r['hours_per_100k_steps']:.3g} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for gpu_speed.jsonl and gpu_speed.md")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per set (median)")
    ap.add_argument("--warmup", type=int, default=3,
                    help="untimed steps after the FLOP-counting one (compile's too)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sets", default=",".join(OPTION_SETS),
                    help=f"comma-separated, of: {', '.join(OPTION_SETS)}")
    ap.add_argument("--peak-size", type=int, default=8192,
                    help="N of the N x N matmuls timed for the peaks (8192: large enough for an H100/H200's "
                         "bf16 rate; use ~1024 on a CPU, whose bf16 matmul is slow)")
    ap.add_argument("--timeout", type=float, default=90, help="seconds per set (6 sets fit a 10-minute call)")
    ap.add_argument("--output-tolerance", type=float, default=0.05,
                    help="largest relative error of G's clips and D's logits against fp32 that passes")
    ap.add_argument("--gradient-tolerance", type=float, default=0.3,
                    help="largest relative error of G's and D's gradients against fp32 that passes (bf16's "
                         "reach 0.11 for D and 0.17 for G with the paper's nets at batch 2 on a CPU)")
    args = ap.parse_args()
    names = args.sets.split(",")
    unknown = sorted(set(names) - set(OPTION_SETS))
    if unknown:
        raise SystemExit(f"--sets: unknown {', '.join(unknown)}; known: {', '.join(OPTION_SETS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONPATH", str(REPO / "src"))

    def record(row: dict) -> dict:
        print(json.dumps(row), flush=True)
        # appended per run: a set that hangs the machine keeps the others
        with open(out / "gpu_speed.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        return row

    check = run_set("precision check", precision_command(args), args.timeout)
    if "error" not in check:
        check["failed"] = failed_checks(check["relative_error_vs_fp32"], args.output_tolerance,
                                        args.gradient_tolerance)
        check["tolerances"] = {"outputs": args.output_tolerance, "gradients": args.gradient_tolerance}
    record(check)
    rows = [record(run_set(name, bench_command(args, OPTION_SETS[name]), args.timeout)) for name in names]
    first = next((r for r in rows if "error" not in r), {})
    header = (f"`python benchmarks/gpu_speed.py --preset {args.preset} --batch-size {args.batch_size} "
              f"--steps {args.steps}` on {first.get('device', args.device)}, "
              f"torch {first.get('torch', '?')}, {first.get('date', '?')}")
    text = header + "\n\n" + table(rows) + "\n\n" + precision_table(check) + "\n"
    (out / "gpu_speed.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
