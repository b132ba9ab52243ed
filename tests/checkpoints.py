"""A real-looking checkpoint built without any download, for the tests and benchmarks of real checkpoints."""

import random

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from molab.config import load_config
from molab.learners.lm import device, encode
from molab.runs import prepare
from molab.training.loop import train
from molab.training.objectives import sft


WORLD = ["world.digits=2", "world.n_diagnostic=32", "scheme.n_train=300", "model.neutral_share=0.25"]


def bpe_checkpoint(path, steps: int, world=WORLD, width: int = 64, depth: int = 2, vocab: int = 300,
                   heads: int = 4, lr: float = 3e-3):
    """A byte-level BPE tokenizer of `vocab` entries trained on the world's problems (not on the tags, so each tag
    takes several tokens) with <bos> before every text and a chat template, and a Llama of `width`, `depth` and
    `heads` pretrained (on the accelerator when there is one) for `steps` at `lr` on the experiment's corpus; both
    saved at `path`."""
    cfg = load_config(overrides=list(world))
    setup = prepare(cfg)
    corpus = setup.experiment.corpus(setup.world, cfg, random.Random(0))
    examples = [next(corpus) for _ in range(steps * 32)]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator([p.prompt + p.honest for p in setup.problems()], trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=width, num_hidden_layers=depth,
                                         num_attention_heads=heads, num_key_value_heads=heads,
                                         intermediate_size=4 * width, max_position_embeddings=64,
                                         tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2)
                             ).to(device())
    batches = (encode(tokenizer, examples[i:i + 32]) for i in range(0, len(examples), 32))
    train(model, batches, sft, steps=steps, lr=lr, progress=False)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
