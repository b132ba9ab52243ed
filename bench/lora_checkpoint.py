"""LoRA on a real-looking checkpoint. Builds a byte-level BPE Llama of about 10M parameters locally (the builder of
tests/checkpoints.py, briefly pretrained: this measures cost, not capability), then measures

1. the demo-size oversight experiment (16 runs, its 8 ceiling runs and the controls) with LoRA, `--workers 2`
   (with `--autocast`, in mixed precision): wall time and the peak resident memory of the largest process
   (measured first, so no other child counts; a call that had to build the checkpoint first stops after this,
   since a process started from it starts from its peak);
2. a run's extra memory over the base, as a share of the base's weights: the tensors training adds (the trained
   weights, their gradients and AdamW's two moments), and the peak resident memory of a process that loads the
   base and trains one run (LoRA, or full finetuning) minus that of one that only answers the diagnostic set (at
   this size the allocator's noise is several MiB, more than LoRA adds).

Run it alone: timings suffer from any other CPU work.

Usage: python bench/lora_checkpoint.py WORKDIR [--pretrain-steps 300] [--autocast]
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def one_run(base: str, how: str) -> None:
    """In this process: load the base and answer the diagnostic set, after training one run when `how` is lora or
    full; prints the peak resident memory in MiB."""
    from molab.config import load_config
    from molab.learners.lm import encode, generate_answers, load, with_lora
    from molab.runs import prepare
    from molab.training.loop import train
    from molab.training.objectives import sft
    from molab.training.phase import epochs

    cfg = load_config(overrides=[f"base={base}", f"finetune.method={'lora' if how == 'lora' else 'full'}"])
    setup = prepare(cfg)
    model, tokenizer = load(base)
    if how != "eval":
        model = with_lora(model, cfg.finetune.lora) if how == "lora" else model
        pairs = [(setup.runs_prompt(p), label) for p, label in setup.train]
        rows = encode(tokenizer, pairs)
        batches = ({k: v[i] for k, v in rows.items()} for i in epochs(range(len(pairs)), random.Random(0), 32))
        train(model, batches, sft, steps=20, lr=cfg.finetune.lr, progress=False)
    generate_answers(model, tokenizer, [setup.runs_prompt(p) for p in setup.diagnostic], setup.answer_len(tokenizer))
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad and how != "eval")
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, trainable / 2**20)


def peak_mib(base: Path, how: str) -> tuple[float, float]:
    """(peak resident MiB, MiB of trainable weights) of `one_run` in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--one-run", str(base), how], capture_output=True, text=True,
                         check=True)
    peak, trainable = map(float, out.stdout.split()[-2:])
    return peak, trainable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path, nargs="?")
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--autocast", action="store_true", help="the experiment's runs in mixed precision "
                        "(finetune.autocast = bfloat16)")
    parser.add_argument("--one-run", nargs=2, metavar=("BASE", "HOW"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_run:
        return one_run(*args.one_run)
    from checkpoints import bpe_checkpoint

    from molab.learners.lm import load, n_params

    base = args.workdir / "base"
    built = not (base / "config.json").is_file()
    if built:
        start = time.time()
        bpe_checkpoint(base, args.pretrain_steps, world=[], width=256, depth=10, vocab=1000)
        print(f"built the checkpoint in {time.time() - start:.0f} s")
    model, _ = load(base)
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    print(f"base: {n_params(model) / 1e6:.1f}M parameters, {weights:.1f} MiB of weights")
    out = args.workdir / ("oversight-lora" + "-bfloat16" * args.autocast)
    start = time.time()
    mixed = ["--set", "finetune.autocast=bfloat16"] if args.autocast else []
    subprocess.run([sys.executable, "-m", "molab", "demo", "--out", str(out), "--workers", "2", "--set", f"base={base}",
                    "--set", "finetune.method=lora", *mixed], check=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"oversight, 16 LoRA runs + 8 ceiling runs + controls, --workers 2{', bfloat16 autocast' * args.autocast}: "
          f"{time.time() - start:.0f} s wall, "
          f"largest process peak {children:.0f} MiB")
    if built:  # a process started from this one starts from this one's peak (Linux keeps it across exec)
        print("memory: run this again, now that the checkpoint is built; building it raised this process's peak")
        return
    eval_only, _ = peak_mib(base, "eval")
    for how in ("lora", "full"):
        peak, trainable = peak_mib(base, how)
        held = 4 * trainable  # the trained weights, their gradients and AdamW's two moments
        print(f"{how}: tensors a run adds {held:.2f} MiB = {held / weights:.1%} of the base's weights; peak resident "
              f"memory {peak - eval_only:+.0f} MiB over a process that only answers ({eval_only:.0f} MiB)")


if __name__ == "__main__":
    main()
