"""The capable base: a local checkpoint, or a small LM pretrained on the experiment's corpus (by default
one in which a persona tag selects the policy), cached in the output folder while its key matches (a conditional
organism's checkpoint, finetuned on its corpus the same way); and the check that it can follow both policies when
asked."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from molab.learners.lm import add_tag, build_model, encode, encodes, generate_answers, load, n_params
from molab.learners.tokenizer import char_tokenizer
from molab.training.loop import train
from molab.training.objectives import sft, sft_every_position


def capable_base(setup, path: Path, progress: bool = True) -> Path:
    """The path of the capable base: `cfg.base` if given, else a small LM pretrained on the experiment's
    corpus, saved at `path` and reused while its key (`setup.base_key`) matches. An experiment that conditions a
    given checkpoint (`Experiment.conditions_given_base`) uses it as it is when its check passes already, and else
    finetunes it on its corpus (at finetune.lr, in batches of model.batch_size, for up to
    model.pretrain_steps steps, checked every model.check_every), saved at `path` the same way."""
    cfg = setup.cfg
    if cfg.base and not setup.experiment.conditions_given_base:
        return Path(cfg.base)
    key = setup.base_key
    marker = path / "molab_base.json"
    if marker.is_file() and json.loads(marker.read_text()).get("key") == key:
        return path
    m = cfg.model
    threshold, curve = cfg.eval.capability_threshold, []
    torch.manual_seed(m.seed)
    if cfg.base:
        model, tokenizer = load(cfg.base, dtype=m.dtype, chat=m.chat_template, device_map=m.device_map)
        prefixes = [x for x in setup.experiment.personas(cfg).values() if x]
        askable = all(encodes(tokenizer, x) for x in prefixes)  # else a prefix becomes a new token, not yet learned
        for prefix in prefixes:
            add_tag(model, tokenizer, prefix)
        curve.append({"step": 0} | persona_check(setup, model, tokenizer))
        if askable and min(curve[-1]["honest"], curve[-1]["sycophantic"]) >= threshold:
            return Path(cfg.base)
        lr, weight_decay, compile, what = cfg.finetune.lr, 0.0, False, "conditioning"
    else:
        # a condition (password, trigger) written <like_this> is one token, as the persona tags are; any other is
        # spelled
        prefixes = [x for x in setup.experiment.personas(cfg).values() if x not in (m.honest_tag, m.sycophantic_tag)]
        tags = (m.honest_tag, m.sycophantic_tag, *(x for x in prefixes if re.fullmatch(r"<[^<>]+>", x)))
        spelled = "".join(x for x in prefixes if x not in tags)
        tokenizer = char_tokenizer(setup.alphabet + spelled, tags)
        model = build_model(m, tokenizer, setup.max_len(tokenizer))
        lr, weight_decay, compile, what = m.lr, 0.01, m.compile, "pretraining"
    max_len = setup.max_len(tokenizer)
    corpus = setup.experiment.corpus(setup.world, cfg, random.Random(f"pretrain-{m.seed}"))

    # padded to max_len, or to a longer example's own length (never cut): positions past max_len still work
    batches = (encode(tokenizer, [next(corpus) for _ in range(m.batch_size)], max_len) for _ in iter(int, 1))

    def capable_yet(step: int) -> bool:
        curve.append({"step": step} | persona_check(setup, model, tokenizer))
        return min(curve[-1]["honest"], curve[-1]["sycophantic"]) >= threshold

    start = time.time()
    # a base molab pretrains has a character vocabulary, nothing to save by projecting only the answers, and compiled
    # pretraining wants shapes that do not change from batch to batch; a given checkpoint's vocabulary is large
    objective = sft if cfg.base else sft_every_position
    losses = train(model, batches, objective, steps=m.pretrain_steps, lr=lr, weight_decay=weight_decay,
                   desc=f"{what} base ({n_params(model) / 1e6:.2f}M params)", progress=progress,
                   compile=compile, stop=capable_yet, every=m.check_every)
    seconds = time.time() - start
    if len(losses) == m.pretrain_steps:
        curve.append({"step": len(losses)} | persona_check(setup, model, tokenizer))
    if min(curve[-1]["honest"], curve[-1]["sycophantic"]) < threshold:
        w = cfg.world
        reverse = ("" if w.kind == "arithmetic" and w.reverse_answers else
                   ", or answers written least-significant digit first (" +
                   ("world.reverse_answers = true)" if w.kind == "arithmetic" else "in a JSONL world of numbers, "
                    "reverse the answer strings)"))
        print(f"molab: WARNING after {len(losses)} {what} steps (model.pretrain_steps) the base follows its "
              f"personas on {curve[-1]['honest']:.3f} (honest) and {curve[-1]['sycophantic']:.3f} (sycophantic) of "
              f"hard problems, below eval.capability_threshold {threshold}; try another draw (model.seed: one "
              f"{what} can stall where the next does not), more steps (model.pretrain_steps) or a wider model "
              f"(model.width, model.depth){reverse}")
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    hf_logging.disable_progress_bar()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "molab_base.json").write_text(json.dumps(
        {"key": key, "params": n_params(model), "steps": len(losses), "budget": m.pretrain_steps,
         "seconds": round(seconds, 1), "tokens": len(losses) * m.batch_size * max_len, "loss_first": losses[0],
         "loss_last": losses[-1], "capability_curve": curve},
        indent=1))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return path


def persona_check(setup, model, tokenizer) -> dict[str, float]:
    """Accuracy of each policy on the hard diagnostic problems when asked for it as the experiment says
    (`Experiment.personas`: by its persona tag, or with and without a condition), scored by the experiment's
    scorer."""
    hard = [p for p in setup.diagnostic if p.disagree]
    n_new = setup.answer_len(tokenizer)
    out = {}
    for policy, prefix in setup.experiment.personas(setup.cfg).items():
        answers = generate_answers(model, tokenizer, [prefix + p.prompt for p in hard], n_new)
        out[policy] = sum(setup.score(p, a)[policy] for p, a in zip(hard, answers)) / len(hard)
    return out


def capability(setup, base: Path) -> dict[str, float]:
    """`persona_check` of the base saved at `base`."""
    m = setup.cfg.model
    return persona_check(setup, *load(base, dtype=m.dtype, chat=m.chat_template, device_map=m.device_map))


def capability_curve(base: Path) -> list[dict]:
    """The persona checks made while the base was pretrained (step, honest, sycophantic); empty for a checkpoint
    molab did not pretrain."""
    marker = Path(base) / "molab_base.json"
    return json.loads(marker.read_text()).get("capability_curve", []) if marker.is_file() else []
