"""Pretraining throughput of the capable base, as a fraction of this machine's float32 matmul peak.

Model FLOP/s = 6 x parameters x tokens per second (forward and backward, the usual estimate);
the peak is the best float32 rate over a few square sizes, with the same threads, of torch.mm and, where torch
has it, of oneDNN's product (on AMD processors with AVX-512, torch.mm runs AVX2 kernels at about half oneDNN's rate;
molab's runs multiply through oneDNN there, `molab.learners.onednn`, while compiled pretraining's products are
torch's). Both drift by 10% or more on a shared machine, so the run is cut into windows, the peak is measured just
before each window, and the median of the per-window fractions is reported.

    python bench/pretrain_throughput.py [--steps 20] [--windows 15]
        [--set model.compile=false --set model.batch_size=64 ...]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time

import torch

from molab.config import load_config
from molab.runs import prepare
from molab.learners import onednn
from molab.learners.lm import build_model, encode, n_params
from molab.learners.tokenizer import char_tokenizer
from molab.training.loop import train
from molab.training.objectives import sft
from molab.worlds import make_world


def matmul_peak(repeats: int = 5) -> float:
    """The best float32 FLOP/s of torch.mm and (where torch has it) oneDNN's product over a few square sizes."""
    products = [torch.mm] + [onednn._linear] * torch.backends.mkldnn.is_available()
    best = 0.0
    for n, product in itertools.product((512, 1024, 2048), products):
        a, b = torch.randn(n, n), torch.randn(n, n)
        product(a, b)
        for _ in range(repeats):
            start = time.perf_counter()
            product(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per measured window")
    parser.add_argument("--windows", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg = load_config(overrides=args.overrides)
    setup = prepare(cfg)
    m = cfg.model
    tokenizer = char_tokenizer(setup.alphabet, (m.honest_tag, m.sycophantic_tag))
    max_len = setup.max_len(tokenizer)
    model = build_model(m, tokenizer, max_len)
    stream = make_world(cfg).stream(random.Random(0))
    batch = encode(tokenizer, [(m.honest_tag + p.prompt, p.honest) for p, _ in zip(stream, range(m.batch_size))],
                   max_len)
    starts, ends, peaks = [], [], []

    def batches():  # one fixed batch: measures the step, not data generation
        for step in itertools.count():
            if step >= args.warmup and (step - args.warmup) % args.steps == 0:
                ends.append(time.perf_counter())  # ends[0] closes the warm-up
                if len(peaks) < args.windows:
                    peaks.append(matmul_peak())
                    starts.append(time.perf_counter())
            yield batch

    begin = time.perf_counter()
    train(model, batches(), sft, steps=args.warmup + args.windows * args.steps + 1, lr=m.lr, progress=False,
          compile=m.compile)
    rates = [args.steps * m.batch_size * max_len / (end - start) for start, end in zip(starts, ends[1:])]
    fractions = [6 * n_params(model) * r / p for r, p in zip(rates, peaks)]
    print(f"model: {m.architecture}, {n_params(model) / 1e6:.2f}M params, batch {m.batch_size} x {max_len} tokens, "
          f"compile={m.compile}, threads={torch.get_num_threads()}")
    print(f"warm-up ({args.warmup} steps, compilation included): {ends[0] - begin:.1f} s")
    print(f"throughput: {statistics.median(rates):,.0f} tokens/s (windows: {', '.join(f'{r:,.0f}' for r in rates)})")
    print(f"model FLOP/s: {6 * n_params(model) * statistics.median(rates) / 1e9:.1f} GFLOP/s; float32 matmul peak "
          f"before each window: {', '.join(f'{p / 1e9:.0f}' for p in peaks)} GFLOP/s")
    print(f"fraction of peak: {statistics.median(fractions):.2f} (median over windows: "
          f"{', '.join(f'{f:.2f}' for f in fractions)})")


if __name__ == "__main__":
    main()
