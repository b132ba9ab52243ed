"""Finetune runs per hour: molab's LM runs against the plain transformers `Trainer` doing the same work.

In one process, on the demo's base, alternating run by run so that both meet the same machine: each run
finetunes the base on the demo's training data (same examples, padded length, steps, batch, learning rate,
warm-up, cosine schedule, AdamW betas, gradient clipping) and answers every diagnostic problem greedily.
molab's run is `molab.runs.run_lm`, exactly as a sweep runs it; the Trainer's is what a user would write
with `Trainer` and `model.generate` (prompts left-padded, in batches of 256). The first run of each is a
warm-up and is not counted. Both report the shares of hard diagnostic problems answered honestly and
sycophantically, to show the work was the same.

    python bench/runs_per_hour.py [--base runs/demo/base] [--runs 4] [--set finetune.steps=300 ...]

Without a base at --base, the demo's base is pretrained there first (about 4 minutes).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

from molab.bases import capable_base
from molab.config import load_config
from molab.experiments import RunSpec
from molab.learners.lm import encode, load
from molab.runs import prepare, run_lm


def trainer_run(setup, base: Path, seed: int) -> list[str]:
    """One run the plain way: Trainer on the run's examples, then model.generate on the diagnostic prompts."""
    f, spec = setup.cfg.finetune, RunSpec(seed)
    model, tokenizer = load(base, dropout=f.dropout)
    pairs = [(setup.runs_prompt(p), label) for p, label in setup.train]
    rows = encode(tokenizer, pairs, setup.max_len(tokenizer, setup.problems()))
    data = [{k: v[i] for k, v in rows.items()} for i in range(len(pairs))]
    phase = setup.phases(spec)[0]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=f.batch_size, max_steps=phase.steps,
                                 learning_rate=phase.lr, warmup_steps=max(1, phase.steps // 20),
                                 lr_scheduler_type="cosine", weight_decay=0.0, adam_beta2=0.98, max_grad_norm=1.0,
                                 seed=seed, report_to=[], save_strategy="no", logging_strategy="no",
                                 disable_tqdm=True, use_cpu=True, dataloader_num_workers=0)
        Trainer(model=model, args=args, train_dataset=data).train()  # its default optimiser: fused AdamW
    model.eval()
    tokenizer.padding_side = "left"
    prompts, answers = [setup.runs_prompt(p) for p in setup.diagnostic], []
    n_new = setup.answer_len(tokenizer)
    with torch.no_grad():
        for i in range(0, len(prompts), 256):
            batch = tokenizer(prompts[i:i + 256], return_tensors="pt", padding=True)
            out = model.generate(**batch, max_new_tokens=n_new, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            answers += tokenizer.batch_decode(out[:, batch.input_ids.shape[1]:], skip_special_tokens=True)
    return answers


def hard_shares(setup, answers: list[str]) -> tuple[float, float]:
    """Shares of hard diagnostic problems answered honestly and sycophantically."""
    scores = [setup.score(p, a) for p, a in zip(setup.diagnostic, answers) if p.disagree]
    return tuple(sum(s[policy] for s in scores) / len(scores) for policy in ("honest", "sycophantic"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="runs/demo/base")
    parser.add_argument("--runs", type=int, default=4, help="counted runs of each (after one warm-up run each)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    hf_logging.set_verbosity_error()
    setup = prepare(load_config(overrides=args.overrides))
    base = capable_base(setup, Path(args.base))
    seconds: dict[str, list[float]] = {"molab": [], "Trainer": []}
    shares: dict[str, list[tuple]] = {"molab": [], "Trainer": []}
    for seed in range(args.runs + 1):
        for name in seconds:
            start = time.perf_counter()
            if name == "molab":
                answers = next(iter(run_lm(setup, base, [RunSpec(seed)], None)[0]["answers"].values()))
            else:
                answers = trainer_run(setup, base, seed)
            took = time.perf_counter() - start
            honest, sycophantic = hard_shares(setup, answers)
            print(f"{name:8} seed {seed}: {took:6.2f} s; hard problems {honest:.3f} honest, {sycophantic:.3f} "
                  f"sycophantic{' (warm-up, not counted)' if seed == 0 else ''}", flush=True)
            if seed:
                seconds[name].append(took)
                shares[name].append((honest, sycophantic))
    f = setup.cfg.finetune
    print(f"{torch.get_num_threads()} torch threads; {f.steps} steps of {f.batch_size}, {len(setup.diagnostic)} "
          f"diagnostic problems; {args.runs} counted runs each")
    for name, s in seconds.items():
        print(f"{name:8} {statistics.median(s):6.2f} s per run (median; {', '.join(f'{x:.2f}' for x in s)}), "
              f"{3600 / statistics.median(s):5.0f} runs/hour; hard problems, mean over runs: "
              f"{statistics.mean(h for h, _ in shares[name]):.3f} honest, "
              f"{statistics.mean(y for _, y in shares[name]):.3f} sycophantic")
    ratio = statistics.median(seconds["Trainer"]) / statistics.median(seconds["molab"])
    print(f"molab runs per hour / Trainer runs per hour: {ratio:.2f}x")


if __name__ == "__main__":
    main()
