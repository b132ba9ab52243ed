"""Finetuning steps with logits only where the answers are (`molab.training.objectives.sft`) against logits at every
position (`sft_every_position`, the model's own loss), on Llama models whose vocabulary projection is a small or a
large share of the work: a batch of 32 prompts of 36 tokens, each followed by a 4-token answer (its eos included).
Forward and backward, AdamW step excluded; medians of 10 steps after 3 warm-up steps, the two alternating.

    python bench/answer_logits.py
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from molab.training.objectives import sft, sft_every_position


def step_seconds(model, batch, objective) -> float:
    start = time.perf_counter()
    objective(model, batch).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    prompt, answer, rows = 36, 4, 32
    for vocab, width, depth in [(18, 128, 4), (32_000, 256, 4), (50_304, 512, 6)]:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=depth,
                                             num_attention_heads=width // 64, intermediate_size=4 * width,
                                             max_position_embeddings=64))
        ids = torch.randint(0, vocab, (rows, prompt + answer))
        labels = ids.clone()
        labels[:, :prompt] = -100
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
        assert torch.allclose(sft(model, batch), sft_every_position(model, batch), atol=1e-5)
        times = {sft: [], sft_every_position: []}
        for i in range(13):
            for objective in times:
                took = step_seconds(model, batch, objective)
                if i >= 3:
                    times[objective].append(took)
        every, answers = (statistics.median(times[f]) for f in (sft_every_position, sft))
        share = vocab * width / sum(p.numel() for p in model.parameters())
        print(f"vocab {vocab:6}, width {width}, depth {depth} ({share:.0%} of the weights in the embedding): "
              f"{every * 1000:7.1f} ms a step with logits everywhere, {answers * 1000:7.1f} ms with logits at the "
              f"answers: {every / answers:.2f}x", flush=True)


if __name__ == "__main__":
    main()
