"""A linear layer's forward and backward through torch's own matmul against oneDNN's (`molab.learners.onednn`).

On this machine's CPU, at the demo's sizes (a batch of 32 rows of 14 tokens, 128 wide, layers to 512 and back) and
at a larger one, with one thread and with all: the median time of a forward and backward of `nn.Linear` and of
molab's `OneDNNLinear` on the same weights, and whether molab uses oneDNN here (`pays`: a processor with AVX-512
whose vendor is known and is not Intel). Where the rule and the timings disagree (oneDNN much faster where molab
does not use it, or slower where it does), the rule is wrong for this processor.

    python bench/onednn.py
"""

from __future__ import annotations

import copy
import os
import statistics
import time

import torch
from torch import nn

from molab.learners import onednn


def seconds(layer: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of a forward and backward of `layer` on `x`."""
    times = []
    for i in range(repeats + 5):
        start = time.perf_counter()
        layer(x).sum().backward()
        if i >= 5:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    print(f"CPU vendor {onednn._vendor() or 'unknown'}, torch's CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; molab computes linear layers through oneDNN here: "
          f"{onednn.pays()}")
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        for rows, width, out, repeats in [(448, 128, 512, 200), (448, 512, 128, 200), (4096, 1024, 1024, 10)]:
            plain = nn.Linear(width, out, bias=False)
            fast = onednn.faster_linears(nn.Sequential(copy.deepcopy(plain)), force=True)[0]
            x = torch.randn(rows, width, requires_grad=True)
            took = [seconds(layer, x, repeats) for layer in (plain, fast)]
            flop = 6 * rows * width * out  # the forward's product and the backward's two
            print(f"{threads} thread(s), {rows} x {width} -> {out}: torch {took[0] * 1e6:8.0f} us "
                  f"({flop / took[0] / 1e9:4.0f} GFLOP/s), oneDNN {took[1] * 1e6:8.0f} us "
                  f"({flop / took[1] / 1e9:4.0f} GFLOP/s): {took[0] / took[1]:.2f}x")


if __name__ == "__main__":
    main()
