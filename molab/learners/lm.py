"""Transformers causal LMs: built from a small config, or loaded from a local path."""

from __future__ import annotations

import contextlib
import copy
import functools
import warnings
from pathlib import Path

import torch
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig, GPTNeoXConfig,
                          LlamaConfig)
from transformers.utils import logging as hf_logging

from molab.learners.onednn import faster_linears

IGNORE = -100  # label of positions that carry no loss (prompt and padding)


def model_config(cfg, tokenizer, max_len: int):
    """The transformers config of the architecture and size `cfg` (a ModelConfig) names."""
    common = dict(vocab_size=len(tokenizer), hidden_size=cfg.width, num_hidden_layers=cfg.depth,
                  num_attention_heads=cfg.heads, intermediate_size=4 * cfg.width,
                  max_position_embeddings=max_len, tie_word_embeddings=True,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                  bos_token_id=tokenizer.bos_token_id)
    if cfg.architecture == "llama":
        return LlamaConfig(num_key_value_heads=cfg.heads, **common)
    return GPTNeoXConfig(rotary_pct=1.0, use_parallel_residual=False, **common)


def build_model(cfg, tokenizer, max_len: int):
    """A fresh causal LM of the architecture and size `cfg` (a ModelConfig) names."""
    # compiled, plain attention fuses into the graph and beats the fused kernel at these short lengths
    attention = "eager" if cfg.compile else "sdpa"
    return AutoModelForCausalLM.from_config(model_config(cfg, tokenizer, max_len),
                                            attn_implementation=attention).to(device())


def skeleton(config):
    """A model of `config` with no weights (on torch's meta device): its structure, at no cost."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def device() -> torch.device:
    """The accelerator when there is one, else the CPU (asked at call time, never at import)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(dtype: str | None):
    """Mixed precision on the runs' device: matmuls in `dtype` (finetune.autocast) under torch.autocast, the weights
    left in theirs; nothing when `dtype` is None. The weights' casts are not cached: a run trains inside one such
    context, and a cached cast would keep a weight as it was before the first step."""
    return torch.autocast(device().type, dtype=getattr(torch, dtype or "bfloat16"), enabled=dtype is not None,
                          cache_enabled=False)


def load(path: str | Path, dropout: float | None = None, dtype: str = "float32", chat: bool = False,
         device_map: str | None = None):
    """Model (on `device()`, or placed layer by layer by accelerate's `device_map`; its weights in `dtype`: a torch
    dtype's name, or "auto" for the checkpoint's own; on a CPU, its linear layers through oneDNN where that pays:
    `molab.learners.onednn`) and tokenizer (`load_tokenizer`) saved with `save_pretrained` at `path`."""
    hf_logging.disable_progress_bar()  # a bar per load would bury molab's own progress bars
    config = AutoConfig.from_pretrained(path)
    if dropout is not None and hasattr(config, "attention_dropout"):
        config.attention_dropout = dropout
    dtype = dtype if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=dtype, device_map=device_map)
    if not device_map:
        model = model.to(device())
        if device().type == "cpu":
            faster_linears(model)
    return model, load_tokenizer(path, chat)


def unwrapped(model):
    """The transformers model itself: under LoRA, the model peft wraps (holding the adapters); else `model`."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def with_lora(model, options):
    """`model` with low-rank adapters (peft) on `options.target_modules` (a LoraOptions), only they trainable; the
    base's weights stay as they are."""
    from peft import LoraConfig, get_peft_model

    targets = list(options.target_modules) if options.target_modules else None
    with warnings.catch_warnings():  # peft asks transformers a deprecated question, once per run
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                                                target_modules=targets, task_type="CAUSAL_LM"))


@functools.cache
def _overseer(path: str):
    return load(path)


def overseer_answers(path: str, problems) -> list[tuple[str, float]]:
    """A model overseer's greedy answer to each problem and the probability it gives that answer (eos included):
    the checkpoint at `path`, loaded once per process, reads the bare prompts. An answer may run two tokens longer
    than the longest true answer, before its eos."""
    from molab.training.objectives import sequence_logprob

    model, tokenizer = _overseer(path)
    prompts = [p.prompt for p in problems]
    budget = max(map(len, tokenizer([p.honest for p in problems], add_special_tokens=False).input_ids)) + 3
    answers = generate_answers(model, tokenizer, prompts, budget)
    probabilities = []
    with torch.no_grad():
        for i in range(0, len(prompts), 256):
            batch = encode(tokenizer, list(zip(prompts[i:i + 256], answers[i:i + 256])))
            probabilities += sequence_logprob(model, {k: v.to(model.device) for k, v in batch.items()}).exp().tolist()
    return list(zip(answers, probabilities))


def module_names(model, kind: type = torch.nn.Module) -> set[str]:
    """The last part of the name of every submodule of type `kind` (what peft's target_modules match)."""
    return {name.rpartition(".")[2] for name, m in model.named_modules() if name and isinstance(m, kind)}


@contextlib.contextmanager
def frozen_copy(model):
    """The model as it is now, frozen, for a KL term: yields a function that runs it (run it under torch.no_grad). A
    model with LoRA adapters is not copied: its adapter is, into a second peft adapter switched in for the frozen
    model's forward passes, so the memory stays one model and two adapters; any other model is deep-copied.
    Either way the frozen weights require gradients as the run's do (they are in no optimizer): torch picks some
    kernels by that flag (a matmul on the CPU does), and with the same kernels the frozen forward equals the run's to
    the bit while the run has not moved, so a KL term starts at exactly 0. An error in the last bit there is no small
    matter: Adam scales it up to full-size steps, and a run that nothing pays moves as far as one that is paid."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        copy_ = copy.deepcopy(model).eval()
        yield lambda fn: fn(copy_)
        return
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    model.add_adapter("frozen", model.peft_config["default"])
    set_peft_model_state_dict(model, get_peft_model_state_dict(model, adapter_name="default"), adapter_name="frozen")
    model.set_adapter("default")  # only the run's own adapter trains

    def run(fn):
        was_training = model.training
        model.eval()
        model.set_adapter("frozen")
        try:
            return fn(model)
        finally:
            model.set_adapter("default")
            model.train(was_training)
    try:
        yield run
    finally:
        model.delete_adapter("frozen")


def load_tokenizer(path: str | Path, chat: bool = False):
    """The tokenizer saved at `path`, padding with eos when it has no pad token (as many LMs do); with `chat`, its
    prompts go through its chat template (`prompt_ids`)."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.molab_chat = chat
    return tokenizer


def prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of `prompts` as the model reads them: with the tokenizer's special tokens (e.g. <bos>), or, for a
    tokenizer loaded with `chat`, each prompt as a user's message in its chat template, ready for the answer."""
    if not getattr(tokenizer, "molab_chat", False):
        return tokenizer(prompts).input_ids
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    return tokenizer(texts, add_special_tokens=False).input_ids


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def encode(tokenizer, examples: list[tuple[str, str]], length: int | None = None) -> dict[str, torch.Tensor]:
    """Batch (prompt, answer) pairs for causal-LM training; loss falls on the answer and its eos.
    The prompt is read as `prompt_ids` reads it, the answer gets no special tokens.

    Sequences are right-padded to `length`, or to the longest where it is longer (nothing is cut: a cut answer would
    train toward a wrong one). Returns tensors of shape (batch, length): input_ids, attention_mask, labels.
    """
    prompts = prompt_ids(tokenizer, [p for p, _ in examples])
    answers = tokenizer([a for _, a in examples], add_special_tokens=False).input_ids
    return _batch(tokenizer, prompts, [a + [tokenizer.eos_token_id] for a in answers], length)


def _batch(tokenizer, prompts: list[list[int]], answers: list[list[int]], length: int | None = None) -> dict:
    """Token ids of prompt + answer, right-padded to `length` or to the longest, whichever is longer; labels are the
    answer tokens, -100 elsewhere."""
    seqs = [p + a for p, a in zip(prompts, answers)]
    length = max([length or 0, *map(len, seqs)])
    ids = torch.full((len(seqs), length), tokenizer.pad_token_id)
    labels = torch.full((len(seqs), length), IGNORE)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, (p, s) in enumerate(zip(prompts, seqs)):
        ids[i, :len(s)] = torch.tensor(s)
        labels[i, len(p):len(s)] = torch.tensor(s[len(p):], dtype=torch.long)
        mask[i, :len(s)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def encodes(tokenizer, text: str) -> bool:
    """Whether `tokenizer` writes `text` in tokens it knows (no unknown token) and reads it back unchanged."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == text


def writes(tokenizer, tag: str) -> bool:
    """Whether `tokenizer` already writes `tag`: a token of its vocabulary, or text it encodes."""
    return tag in tokenizer.get_vocab() or encodes(tokenizer, tag)


def add_tag(model, tokenizer, tag: str) -> None:
    """Make `tag` usable in prompts: left as text (of any number of tokens) when the tokenizer already writes it,
    else added as one special token with a freshly drawn embedding (a base molab pretrains has a character
    vocabulary, which spells no tag). A model whose tokenizer (shared with another model) already has the new token
    gets its row."""
    if not writes(tokenizer, tag):
        tokenizer.add_tokens([tag], special_tokens=True)
    if model is not None and len(tokenizer) > model.get_input_embeddings().num_embeddings:
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # not a notice per run that the new row is drawn from the old rows' moments
        try:
            model.resize_token_embeddings(len(tokenizer))
        finally:
            hf_logging.set_verbosity(verbosity)


def by_length(ids: list[list[int]]) -> dict[int, list[int]]:
    """The indices of token sequences, grouped by their length (so that batches of them need no padding)."""
    groups: dict[int, list[int]] = {}
    for i, seq in enumerate(ids):
        groups.setdefault(len(seq), []).append(i)
    return groups


def through_eos(row: list[int], eos: int) -> list[int]:
    """A generated continuation cut after its first eos (kept)."""
    return row[:row.index(eos) + 1] if eos in row else row


@torch.no_grad()
def _generate(model, tokenizer, prompts: list[str], max_new_tokens: int, sample: bool,
              batch_size: int = 256) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of each prompt and of its continuation (greedy, or sampled at temperature 1), the
    continuation cut after its first eos (kept). Prompts are grouped by token length, so no padding
    is needed and any causal LM behaves exactly as it would on one prompt at a time. A checkpoint's saved decoding
    settings (its generation_config: a repetition penalty, suppressed tokens, beams) do not apply: the answers are
    the model's own greedy continuation or samples of its own distribution, as stacked runs' are
    (`molab.learners.stacked.stacked_answers`)."""
    was_training = model.training
    model.eval()
    inner = unwrapped(model)
    saved, inner.generation_config = inner.generation_config, GenerationConfig()
    try:
        return _generated(model, tokenizer, prompts, max_new_tokens, sample, batch_size)
    finally:
        inner.generation_config = saved
        model.train(was_training)


def _generated(model, tokenizer, prompts: list[str], max_new_tokens: int, sample: bool,
               batch_size: int) -> tuple[list[list[int]], list[list[int]]]:
    """`_generate`'s answers, its model in eval mode and without its saved decoding settings."""
    ids = prompt_ids(tokenizer, prompts)
    how = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0) if sample else dict(do_sample=False)
    rows: list[list[int]] = [[] for _ in prompts]
    for length, members in by_length(ids).items():
        for start in range(0, len(members), batch_size):
            chunk = members[start:start + batch_size]
            batch = torch.tensor([ids[i] for i in chunk], device=model.device)  # (batch, length)
            out = model.generate(batch, attention_mask=torch.ones_like(batch), max_new_tokens=max_new_tokens,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **how)
            for i, row in zip(chunk, out[:, length:].tolist()):
                rows[i] = through_eos(row, tokenizer.eos_token_id)
    return ids, rows


def _decode(tokenizer, row: list[int]) -> str:
    return tokenizer.decode(row, skip_special_tokens=True)


def generate_answers(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 256) -> list[str]:
    """Greedy answers to `prompts` (see `_generate`)."""
    _, rows = _generate(model, tokenizer, prompts, max_new_tokens, sample=False, batch_size=batch_size)
    return [_decode(tokenizer, row) for row in rows]


def sample_answers(model, tokenizer, prompts: list[str],
                   max_new_tokens: int) -> tuple[list[str], dict[str, torch.Tensor]]:
    """Answers sampled at temperature 1, and the batch to score them: input_ids, attention_mask and
    labels (-100 outside the sampled tokens), exactly the tokens sampled, eos included when it came."""
    ids, rows = _generate(model, tokenizer, prompts, max_new_tokens, sample=True)
    return [_decode(tokenizer, r) for r in rows], _batch(tokenizer, ids, rows)
