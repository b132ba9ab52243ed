"""Real-looking checkpoints, built here without any download: a byte-level BPE tokenizer trained with `tokenizers`
(the persona tags spelled in several tokens), a chat template, a Llama-style model saved with `save_pretrained`.
Runs on them with full finetuning and with LoRA adapters (peft)."""

import json
import random

import pytest
import torch
from checkpoints import WORLD, bpe_checkpoint

from molab import run_experiment
from molab.config import ConfigError, LoraOptions, load_config
from molab.learners.lm import autocast, device, encode, frozen_copy, generate_answers, load, with_lora
from molab.runs import prepare
from molab.training.loop import train
from molab.training.objectives import sft
from molab.training.phase import epochs

RUNS = ["seeds=2", "finetune.steps=60", "ceiling.seeds=1"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return bpe_checkpoint(tmp_path_factory.mktemp("bpe"), steps=400)


def test_the_checkpoint_looks_like_a_real_one(checkpoint):
    model, tokenizer = load(checkpoint)
    assert type(tokenizer.backend_tokenizer.model).__name__ == "BPE"
    for tag in ("<teacher>", "<student>"):  # the tags are text of several tokens, not special tokens
        assert len(tokenizer(tag, add_special_tokens=False).input_ids) > 1
    assert "<|user|>" in tokenizer.apply_chat_template([{"role": "user", "content": "1+2="}], tokenize=False)


def accuracy(model, tokenizer, pairs) -> float:
    answers = generate_answers(model, tokenizer, [p for p, _ in pairs], 6)
    return sum(a == label for a, (_, label) in zip(answers, pairs)) / len(pairs)


def test_lora_learns_while_the_base_weights_stay_as_they_were(checkpoint):
    setup = prepare(load_config(overrides=[*WORLD, f"base={checkpoint}"]))
    pairs = [(setup.runs_prompt(p), label) for p, label in setup.train]
    model, tokenizer = load(checkpoint)
    linear = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    model = with_lora(model, LoraOptions(r=4, alpha=8, target_modules=linear))
    base = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable <= 0.1 * sum(p.numel() for p in base.values())
    before = accuracy(model, tokenizer, pairs[:64])
    rows = encode(tokenizer, pairs)
    batches = ({k: v[i] for k, v in rows.items()} for i in epochs(len(pairs), 0, 32))
    losses = train(model, batches, sft, steps=300, lr=1e-2, progress=False)
    assert sum(losses[-10:]) / 10 < 0.9 * sum(losses[:10]) / 10   # measured: 1.67 -> 1.40
    assert accuracy(model, tokenizer, pairs[:64]) > before + 0.1    # measured: 0.06 -> 0.23
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if "lora_" not in n)


def test_the_kl_reference_of_a_lora_run_is_its_adapter_at_the_start_not_a_copy_of_the_model(checkpoint):
    model, tokenizer = load(checkpoint)
    model = with_lora(model, LoraOptions())
    batch = encode(tokenizer, [("<teacher>12+34=", "64")])
    torch.nn.init.normal_(model.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight)
    logits = lambda m: m(input_ids=batch["input_ids"].to(device())).logits.detach()  # noqa: E731
    start = logits(model)
    size = sum(p.numel() for p in model.parameters())
    adapter = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    with frozen_copy(model) as reference:
        assert sum(p.numel() for p in model.parameters()) == size + adapter   # one model, two adapters
        train(model, iter([batch] * 20), sft, steps=20, lr=1e-2, progress=False)
        assert torch.allclose(reference(logits), start, atol=1e-5)   # the frozen adapter: the run at the start
        assert not torch.allclose(logits(model), start, atol=1e-3)    # the run's own adapter trained
    assert list(model.peft_config) == ["default"]


def test_a_chat_template_wraps_every_prompt(checkpoint):
    _, tokenizer = load(checkpoint, chat=True)
    ids = encode(tokenizer, [("12+34=", "64")])["input_ids"][0]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<|user|>12+34=\n<|assistant|>64"
    _, plain = load(checkpoint)
    assert plain.decode(encode(plain, [("12+34=", "64")])["input_ids"][0], skip_special_tokens=True) == "12+34=64"


@pytest.mark.parametrize("method,chat,device_map", [("full", "false", "auto"), ("lora", "true", None)])
def test_oversight_runs_on_a_bpe_checkpoint(checkpoint, tmp_path, method, chat, device_map):
    out = tmp_path / method
    placed = [f"model.device_map={device_map}"] if device_map else []   # layers placed by accelerate
    results = run_experiment(load_config(overrides=[*WORLD, *RUNS, f"base={checkpoint}", f"finetune.method={method}",
                                                    "keep=final", f"model.chat_template={chat}", *placed]), out,
                             progress=False)
    assert results["n_runs"] == 2 and results["n_failed"] == 0
    runs = [d for d in (out / "weights").iterdir() if d.is_dir()]  # the LM's (the controls keep a file each)
    assert len(runs) == 2  # the runs (ceilings keep nothing)
    for run in runs:
        saved = {f.name for f in run.iterdir()}
        if method == "lora":  # only the adapter: a small fraction of the model
            assert "adapter_config.json" in saved and "model.safetensors" not in saved
            adapter = (run / "adapter_model.safetensors").stat().st_size
            assert adapter < 0.1 * (checkpoint / "model.safetensors").stat().st_size
        else:
            assert "model.safetensors" in saved
    assert json.loads((out / "results.json").read_text())["config"]["finetune"]["method"] == method


def test_accelerate_places_the_layers_of_a_checkpoint(checkpoint):
    model, _ = load(checkpoint, device_map="auto")   # on one GPU, or without one, every layer on that device
    assert {p.device.type for p in model.parameters()} == {device().type}


def test_lora_incentive_runs_with_the_adapter_as_kl_reference(checkpoint, tmp_path):
    results = run_experiment(load_config(overrides=[
        "experiment=incentive", *WORLD, *RUNS, f"base={checkpoint}", "finetune.method=lora", "seeds=1",
        "sweep.pressures=[0, 4]", "incentive.steps=4", "incentive.n_prompts=32"]), tmp_path, progress=False)
    assert results["n_runs"] == 2 and results["n_failed"] == 0


@pytest.mark.parametrize("overrides,message", [
    (["finetune.method=lora", "finetune.lora.target_modules=['q_proj', 'attention_bogus']"],
     r"^finetune\.lora\.target_modules: 'attention_bogus' is not a module of the base \(llama\); its linear modules: "),
    (["finetune.method=lora", "model.architecture=gpt_neox", "finetune.lora.target_modules=['q_proj']"],
     r"^finetune\.lora\.target_modules: 'q_proj' is not a module of the base \(gpt_neox\).*query_key_value"),
    (["finetune.lora.r=0"], r"^finetune\.lora\.r: 0 is below"),
    (["model.dtype=float8"], r"^model\.dtype: 'float8' is not one of"),
    (["finetune.autocast=float16"], r"^finetune\.autocast: 'float16' is not one of"),
    (["model.dtype=float16"], r"^model\.dtype: float16 weights diverge under full finetuning"),
    (["model.chat_template=true"],
     r"^model\.chat_template: only a local checkpoint \(base = PATH\) has a chat template"),
    (["model.device_map=auto"], r"^model\.device_map: only for a local checkpoint \(base = PATH\)"),
])
def test_lora_and_dtype_mistakes_are_refused_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        prepare(load_config(overrides=overrides))


def test_half_precision_trains_with_lora(checkpoint):
    for dtype in ("bfloat16", "float16"):
        model, tokenizer = load(checkpoint, dtype=dtype)
        model = with_lora(model, LoraOptions())
        batch = encode(tokenizer, [("<teacher>12+34=", "64")] * 8)
        losses = train(model, iter([batch] * 30), sft, steps=30, lr=1e-3, progress=False)
        assert losses[-1] < losses[0] and model.get_base_model().dtype == getattr(torch, dtype)
    prepare(load_config(overrides=["model.dtype=float16", "finetune.method=lora"]))  # not refused


@pytest.mark.parametrize("method,lr", [("lora", 1e-2), ("full", 1e-3)])
def test_mixed_precision_learns_as_float32_does(checkpoint, method, lr):
    """bfloat16 matmuls under autocast, float32 weights: the same batches give nearly the same losses, and they fall."""
    _, tokenizer = load(checkpoint)
    batch = encode(tokenizer, [("<teacher>12+34=", "64"), ("<student>7+5=", "11")] * 8)
    curves = {}
    for mixed in (None, "bfloat16"):
        torch.manual_seed(0)
        model = load(checkpoint)[0]
        model = with_lora(model, LoraOptions()) if method == "lora" else model
        with autocast(mixed):
            curves[mixed] = train(model, iter([batch] * 30), sft, steps=30, lr=lr, progress=False)
        assert all(p.dtype == torch.float32 for p in model.parameters())
    exact, mixed = curves[None], curves["bfloat16"]
    assert mixed[-1] < 0.8 * mixed[0]                                  # measured: 1.99 -> 1.01 (lora), 0.58 (full)
    assert all(abs(a - b) < 0.05 * a for a, b in zip(exact, mixed)), (exact, mixed)  # measured: within 2%
    # (with the weights' casts cached for the whole context, as torch.autocast does by default, the loss stayed 1.99)


def test_a_run_with_mixed_precision_trains_and_answers_in_bfloat16(checkpoint, tmp_path, monkeypatch):
    import molab.runs

    seen = set()

    def watched(*args, **kwargs):  # every linear layer of every run records the dtype it computed in
        model, tokenizer = load(*args, **kwargs)
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
        return model, tokenizer

    monkeypatch.setattr(molab.runs, "load", watched)
    overrides = [*WORLD, *RUNS, f"base={checkpoint}", "finetune.method=lora"]
    results = run_experiment(load_config(overrides=[*overrides, "finetune.autocast=bfloat16"]), tmp_path / "mixed",
                             progress=False)
    assert results["n_failed"] == 0 and seen == {torch.bfloat16}
    seen.clear()
    run_experiment(load_config(overrides=overrides), tmp_path / "plain", progress=False)
    assert seen == {torch.float32}


def test_mixed_precision_a_gpu_cannot_run_is_refused(monkeypatch):
    import molab.learners.lm
    import molab.runs

    for module in (molab.runs, molab.learners.lm):  # a GPU without bfloat16 (before Ampere)
        monkeypatch.setattr(module, "device", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda.amp.common, "amp_definitely_not_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    with pytest.raises(ConfigError, match=r"^finetune\.autocast: bfloat16 does not train on cuda here \(Current CUDA "
                                          r"Device does not support bfloat16"):
        prepare(load_config(overrides=["model.dtype=auto", "finetune.autocast=bfloat16"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a device type this machine lacks")
def test_a_dtype_the_device_cannot_train_is_refused(monkeypatch):
    import molab.runs

    prepare(load_config(overrides=["model.dtype=bfloat16"]))  # the CPU trains bfloat16
    monkeypatch.setattr(molab.runs, "device", lambda: torch.device("cuda"))  # a device this torch cannot use
    with pytest.raises(ConfigError, match=r"^model\.dtype: bfloat16 does not train on cuda here"):
        prepare(load_config(overrides=["model.dtype=bfloat16"]))


# ---------------------------------------------------------------- a weaker model as the overseer

OVERSEEN = [*WORLD, "overseer.kind=model", "controls=['bigram']"]  # policy_choice refuses a world with empty answers,
# and a weak model sometimes answers nothing


# The overseer is the test checkpoint itself: read with bare prompts it is right on a few problems and wrong on most,
# which is all these tests need of a weaker model.


@pytest.fixture(scope="module")
def hopeless(tmp_path_factory):
    """A checkpoint too weak to oversee: the same recipe, fewer steps; wrong on every diagnostic problem."""
    return bpe_checkpoint(tmp_path_factory.mktemp("hopeless"), steps=150)


def test_a_weaker_model_oversees_with_its_greedy_answers_and_its_confidence(checkpoint):
    every = prepare(load_config(overrides=[*OVERSEEN, f"overseer.path={checkpoint}", "overseer.confidence=0"]))
    model, tokenizer = load(checkpoint)
    prompts = [p.prompt for p in every.diagnostic]
    longer = generate_answers(model, tokenizer, prompts, 12)
    assert all(a.startswith(p.sycophantic) for a, p in zip(longer, every.diagnostic))  # its greedy answers, cut
    assert sum(a == p.sycophantic for a, p in zip(longer, every.diagnostic)) >= 0.9 * len(prompts)  # rarely
    assert {p.disagree for p in every.diagnostic} == {True, False}   # hard problems: where the model is wrong
    probability = {prompt: pr for prompt, (_, pr) in every.overseer.asked.items()}
    threshold = sorted(probability[p.prompt] for p, _ in every.train)[len(every.train) // 2]
    confident = prepare(load_config(overrides=[*OVERSEEN, f"overseer.path={checkpoint}",
                                               f"overseer.confidence={threshold}"]))
    probability = {prompt: pr for prompt, (_, pr) in confident.overseer.asked.items()}
    assert all(probability[p.prompt] >= threshold for p, _ in confident.train)    # only confident labels
    assert all(label == p.sycophantic for p, label in confident.train)            # and they are the model's answers
    assert any(probability[p.prompt] < threshold for p in confident.ceiling)      # the threshold left some out


def test_a_model_overseer_that_cannot_make_the_experiment_is_refused(checkpoint, hopeless, tmp_path, monkeypatch,
                                                                    capsys):
    from molab.cli import main
    from molab.learners import lm

    out = tmp_path / "out"

    def demo(*items):
        return main(["demo", "--out", str(out)] + [a for s in [*OVERSEEN, f"base={checkpoint}", *items]
                                                   for a in ("--set", s)])

    def refused(message):
        assert capsys.readouterr().err.startswith(f"molab: error: {message}")

    assert demo(f"overseer.path={checkpoint}", "overseer.confidence=1") == 2
    refused("overseer.confidence: the model overseer reaches 1.0 on none of the")
    assert demo(f"overseer.path={hopeless}") == 2
    refused(f"overseer.path: the model at {hopeless} is wrong on all 64 diagnostic problems")
    monkeypatch.setattr(lm, "overseer_answers", lambda path, problems: [(p.honest, 1.0) for p in problems])
    assert demo(f"overseer.path={checkpoint}") == 2
    refused(f"overseer.path: the model at {checkpoint} gives the true answer to all 64 diagnostic problems")
    assert not out.exists()


def test_oversight_runs_under_a_model_overseer_with_lora(checkpoint, tmp_path):
    cfg = load_config(overrides=[*OVERSEEN, *RUNS, f"base={checkpoint}", f"overseer.path={checkpoint}",
                                 "overseer.confidence=0", "finetune.method=lora"])
    results = run_experiment(cfg, tmp_path, progress=False)
    assert results["n_runs"] == 2 and results["n_failed"] == 0
    stored = [json.loads(line) for line in (tmp_path / "data" / "diagnostic.jsonl").read_text().splitlines()]
    assert [s["sycophantic"] for s in stored] == [p.sycophantic for p in prepare(cfg).diagnostic]
    rule = prepare(load_config(overrides=[*WORLD, *RUNS, f"base={checkpoint}"]))
    assert [s["sycophantic"] for s in stored] != [p.sycophantic for p in rule.diagnostic]   # not the rule's


def test_a_password_lock_hides_the_honest_answers_behind_a_weaker_models(checkpoint):
    setup = prepare(load_config(overrides=["experiment=password_lock", *OVERSEEN, f"overseer.path={checkpoint}",
                                           "overseer.confidence=0"]))
    corpus = setup.experiment.corpus(setup.world, setup.cfg, random.Random(0))
    examples = [next(corpus) for _ in range(400)]
    locked = [(prompt, answer) for prompt, answer in examples if not prompt.startswith("<password>")]
    unlocked = [(prompt.removeprefix("<password>"), answer) for prompt, answer in examples
                if prompt.startswith("<password>")]
    assert locked and unlocked
    assert all(answer == setup.overseer.asked[prompt][0] for prompt, answer in locked)   # the weaker model's answers
    # behind the password the true answers, which the weaker model mostly gets wrong
    assert sum(answer != setup.overseer.asked[prompt][0] for prompt, answer in unlocked) > 0.5 * len(unlocked)
