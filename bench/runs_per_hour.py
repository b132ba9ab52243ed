"""Finetune runs per hour: molab's LM runs against the plain transformers `Trainer` doing the same work.

On the demo's base, alternating round by round so that all meet the same machine: each run finetunes the
base on the demo's training data (same examples, steps, batch, learning rate, warm-up, cosine schedule,
AdamW betas, gradient clipping; each batch padded to its longest row) and answers every diagnostic problem
greedily. Three ways of running them:

- `molab`: `molab.runs.run_lm` in this process, with torch's own thread count, exactly as a sweep with one
  worker runs it;
- `molab, torch's linear layers`: the same, its linear layers left to torch's own matmul where molab would have
  them compute through oneDNN (`molab.learners.onednn`: on a CPU with AVX-512 whose vendor is known and is not
  Intel); the same as `molab` elsewhere;
- `Trainer`: what a user would write with `Trainer` and `model.generate` (the model loaded by transformers, prompts
  left-padded, in batches of 256), in this process, with the same threads;
- `molab sweep`: two runs at once through molab's default executor for this machine (`--workers 2`: two
  worker processes, the cores shared among them), timed from submission to the last result; a run's time
  is the pair's wall time over two.

The first round is a warm-up (the workers start, import torch and load the base) and is not counted. All
report the shares of hard diagnostic problems answered honestly and sycophantically, to show the work was the
same.

    python bench/runs_per_hour.py [--base runs/demo/base] [--runs 4] [--set finetune.steps=300 ...]

Without a base at --base, the demo's base is pretrained there first (about 4 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

from molab.bases import capable_base
from molab.config import load_config
from molab.execution import Executor, run_all
from molab.experiments import RunSpec
from molab.learners import onednn
from molab.learners.lm import encode, load_tokenizer
from molab.runs import execute, prepare, run_lm
from molab.training.phase import trimmed


def trainer_run(setup, base: Path, seed: int) -> list[str]:
    """One run the plain way: Trainer on the run's examples, then model.generate on the diagnostic prompts."""
    f, spec = setup.cfg.finetune, RunSpec(seed)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(base, attention_dropout=f.dropout), load_tokenizer(base)
    pairs = [(setup.runs_prompt(p), label) for p, label in setup.train]
    rows = encode(tokenizer, pairs, setup.max_len(tokenizer, setup.problems()))
    data = [{k: v[i] for k, v in rows.items()} for i in range(len(pairs))]

    def collate(features):  # a Trainer user's padding collator: each batch as long as its longest row
        return trimmed({k: torch.stack([f[k] for f in features]) for k in features[0]})

    phase = setup.phases(spec)[0]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=f.batch_size, max_steps=phase.steps,
                                 learning_rate=phase.lr, warmup_steps=max(1, phase.steps // 20),
                                 lr_scheduler_type="cosine", weight_decay=0.0, adam_beta2=0.98, max_grad_norm=1.0,
                                 seed=seed, report_to=[], save_strategy="no", logging_strategy="no",
                                 disable_tqdm=True, use_cpu=True, dataloader_num_workers=0)
        # the Trainer's default optimiser: fused AdamW
        Trainer(model=model, args=args, train_dataset=data, data_collator=collate).train()
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
    names = ("molab", "molab, torch's linear layers", "Trainer", "molab sweep")
    seconds: dict[str, list[float]] = {name: [] for name in names}
    shares: dict[str, list[tuple]] = {name: [] for name in names}
    with Executor(workers=2).started() as executor:
        for seed in range(args.runs + 1):
            for name in names:
                start = time.perf_counter()
                if name == "Trainer":
                    answered = [trainer_run(setup, base, seed)]
                elif name == "molab sweep":  # two seeds of their own, so that no worker repeats another's run
                    tasks = [(setup, base, "lm", [RunSpec(1000 + 2 * seed + i)], None, False) for i in range(2)]
                    answered = [next(iter(r["answers"].values())) for rs in run_all(execute, tasks, executor)
                                for r in rs]
                else:  # in this process; "torch's linear layers": as if oneDNN did not pay on this CPU
                    plain = "torch" in name
                    with mock.patch.object(onednn, "pays", lambda: False) if plain else contextlib.nullcontext():
                        answered = [next(iter(run_lm(setup, base, [RunSpec(seed)], None)[0]["answers"].values()))]
                took = (time.perf_counter() - start) / len(answered)
                for answers in answered:
                    honest, sycophantic = hard_shares(setup, answers)
                    print(f"{name:28} seed {seed}: {took:6.2f} s a run; hard problems {honest:.3f} honest, "
                          f"{sycophantic:.3f} sycophantic{' (warm-up, not counted)' if seed == 0 else ''}", flush=True)
                    if seed:
                        shares[name].append((honest, sycophantic))
                if seed:
                    seconds[name].append(took)
    f = setup.cfg.finetune
    print(f"{torch.get_num_threads()} torch threads in this process, {Executor(workers=2).run_threads} in each of the "
          f"sweep's 2 workers; {f.steps} steps of {f.batch_size}, {len(setup.diagnostic)} diagnostic problems; "
          f"{args.runs} counted rounds")
    for name, s in seconds.items():
        print(f"{name:28} {statistics.median(s):6.2f} s per run (median; {', '.join(f'{x:.2f}' for x in s)}), "
              f"{3600 / statistics.median(s):5.0f} runs/hour; hard problems, mean over runs: "
              f"{statistics.mean(h for h, _ in shares[name]):.3f} honest, "
              f"{statistics.mean(y for _, y in shares[name]):.3f} sycophantic")
    for name in (n for n in names if n != "Trainer"):
        ratio = statistics.median(seconds["Trainer"]) / statistics.median(seconds[name])
        print(f"{name} runs per hour / Trainer runs per hour: {ratio:.2f}x")


if __name__ == "__main__":
    main()
