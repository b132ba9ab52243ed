"""Mixed precision (`finetune.autocast = "bfloat16"`) against float32: one finetuning step (forward, backward and
AdamW through molab's `train`, on 32 prompts of 25 tokens with 4-token answers) on one thread, as a sweep's worker
runs it, for the demo's model and for a 10.7M-parameter Llama shaped like `bench/lora_checkpoint.py`'s (vocabulary
1,000, 10 layers of 256), with full finetuning and with LoRA. Median of 8 steps after 2 of warm-up. Random weights:
this measures cost, not learning (tests/test_checkpoints.py checks that mixed precision learns as float32 does).

Usage: python bench/autocast.py
"""

from __future__ import annotations

import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from molab.config import LoraOptions
from molab.learners.lm import IGNORE, autocast, with_lora
from molab.training.loop import train
from molab.training.objectives import sft

SHAPES = {"demo (1.05M, vocabulary 18)": dict(vocab_size=18, hidden_size=128, num_hidden_layers=4),
          "10.7M (vocabulary 1,000)": dict(vocab_size=1000, hidden_size=256, num_hidden_layers=10)}


def step_ms(shape: dict, method: str, mixed: str | None) -> float:
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(intermediate_size=4 * shape["hidden_size"], num_attention_heads=4,
                                         max_position_embeddings=64, **shape))
    model = with_lora(model, LoraOptions()) if method == "lora" else model
    ids = torch.randint(0, shape["vocab_size"], (32, 25))
    labels = torch.full_like(ids, IGNORE)
    labels[:, -4:] = ids[:, -4:]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    times = []

    def timed():
        while True:
            start = time.perf_counter()
            yield batch
            times.append(time.perf_counter() - start)

    with autocast(mixed):
        train(model, timed(), sft, steps=11, lr=1e-4, progress=False)
    return 1000 * sorted(times[2:])[len(times[2:]) // 2]


def main() -> None:
    torch.set_num_threads(1)
    for name, shape in SHAPES.items():
        for method in ("full", "lora"):
            exact, mixed = step_ms(shape, method, None), step_ms(shape, method, "bfloat16")
            print(f"{name}, {method}: float32 {exact:.0f} ms, bfloat16 autocast {mixed:.0f} ms a step: "
                  f"{exact / mixed:.2f}x", flush=True)


if __name__ == "__main__":
    main()
