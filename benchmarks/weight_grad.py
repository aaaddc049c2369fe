"""D's weight gradients: oneDNN's (PyTorch's CPU convolution backward) against the same sums as plain GEMMs.

    python benchmarks/weight_grad.py                    # paper preset's D layers, batch 8, 1 thread, CPU time
    python benchmarks/weight_grad.py --threads 2 --repeats 6

Why: in the paper step, oneDNN computes D's weight gradients at about half the machine's matmul rate
(benchmarks/RESULTS.md, issue 5). For D's stride-2, 4x4x4 convolutions with padding 1 the weight gradient is

    dW[co, ci, a, b, c] = sum_{n,t,h,w} dY[n, co, t, h, w] * Xpad[n, ci, 2t + a, 2h + b, 2w + c]

Writing a = 2q + r (q, r in {0, 1}), the 8 parity phases r of Xpad are laid out channels-last and stacked on
the channel axis once; then each of the 8 shifts q is one GEMM [Co, M] @ [M, 8 Ci] (M = N T' H' W') over a
shifted slice of the phases. The script checks that this equals oneDNN's result and times both.
Prints one JSON line per layer (median CPU time of the calling thread, ms, and GFLOP/s).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from functools import partial

import torch
import torch.nn.functional as F

from videogan.bench import cpu_name

# (in channels, out channels, input frames, input size): the paper preset's D at 32 frames of 64x64
PAPER_D_LAYERS = ((3, 64, 32, 64), (64, 128, 16, 32), (128, 256, 8, 16), (256, 512, 4, 8))


def weight_grad_onednn(x: torch.Tensor, grad_y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PyTorch's own weight gradient of conv3d(x, weight, stride 2, padding 1)."""
    return torch.ops.aten.convolution_backward(grad_y, x, weight, None, (2, 2, 2), (1, 1, 1), (1, 1, 1),
                                               False, (0, 0, 0), 1, (False, True, False))[1]


def weight_grad_gemm(x: torch.Tensor, grad_y: torch.Tensor) -> torch.Tensor:
    """The same weight gradient [Co, Ci, 4, 4, 4] as 8 GEMMs. x [N, Ci, T, H, W], grad_y
    [N, Co, T/2, H/2, W/2]."""
    n, ci, t, h, w = x.shape
    co, to, ho, wo = grad_y.shape[1:]
    assert (t, h, w) == (2 * to, 2 * ho, 2 * wo), \
        f"stride 2 expected: {list(x.shape)} -> {list(grad_y.shape)}"
    padded = F.pad(x, (1,) * 6)  # [N, Ci, 2(T'+1), 2(H'+1), 2(W'+1)]
    phases = (padded.view(n, ci, to + 1, 2, ho + 1, 2, wo + 1, 2)
              .permute(0, 2, 4, 6, 3, 5, 7, 1)  # [N, T'+1, H'+1, W'+1, rt, rh, rw, Ci]
              .reshape(n, to + 1, ho + 1, wo + 1, 8 * ci))
    grad_rows = grad_y.transpose(0, 1).reshape(co, -1)  # [Co, M]
    grad_w = x.new_empty(2, 2, 2, co, 2, 2, 2, ci)  # [qt, qh, qw, Co, rt, rh, rw, Ci]
    for qt in range(2):
        for qh in range(2):
            for qw in range(2):
                shifted = phases[:, qt:qt + to, qh:qh + ho, qw:qw + wo].reshape(-1, 8 * ci)  # [M, 8 Ci]
                torch.mm(grad_rows, shifted, out=grad_w[qt, qh, qw].view(co, 8 * ci))
    # kernel index a = 2q + r on each axis
    return grad_w.permute(3, 7, 0, 4, 1, 5, 2, 6).reshape(co, ci, 4, 4, 4)


def cpu_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for cin, cout, frames, size in PAPER_D_LAYERS:
        x = torch.randn(args.batch_size, cin, frames, size, size)
        weight = torch.randn(cout, cin, 4, 4, 4) * 0.05
        grad_y = torch.randn_like(F.conv3d(x, weight, stride=2, padding=1))
        reference, ours = weight_grad_onednn(x, grad_y, weight), weight_grad_gemm(x, grad_y)
        relative_error = ((reference - ours).abs().max() / reference.abs().max()).item()
        assert relative_error < 1e-4, \
            f"{cin}->{cout}: GEMM weight gradient differs from oneDNN's by {relative_error:.1e}"
        gflop = 2 * grad_y.numel() * cin * 64 / 1e9
        onednn = cpu_ms(partial(weight_grad_onednn, x, grad_y, weight), args.repeats)
        gemm = cpu_ms(partial(weight_grad_gemm, x, grad_y), args.repeats)
        print(json.dumps({"layer": f"{cin}->{cout}", "input": [frames, size, size], "gflop": round(gflop, 2),
                          "onednn_ms": round(onednn, 1), "gemm_ms": round(gemm, 1),
                          "onednn_gflops": round(gflop / onednn * 1e3, 1),
                          "gemm_gflops": round(gflop / gemm * 1e3, 1), "max_relative_error": relative_error,
                          "threads": args.threads, "batch_size": args.batch_size, "machine": cpu_name(),
                          "date": date.today().isoformat()}), flush=True)


if __name__ == "__main__":
    main()
