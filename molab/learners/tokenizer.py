"""A character-level tokenizer built with `tokenizers`, saved and loaded like any other."""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"


def char_tokenizer(alphabet: str, tags: tuple[str, ...]) -> PreTrainedTokenizerFast:
    """One token per character of `alphabet`, plus pad/bos/eos/unk and the persona `tags` as special
    tokens. Like most LM tokenizers it starts every text with <bos> (when special tokens are added),
    so a prompt without a persona tag still starts where the model expects a sequence to start.

    >>> tok = char_tokenizer("0123456789+=", ("<teacher>",))
    >>> tok.convert_ids_to_tokens(tok("<teacher>12+3=").input_ids)
    ['<bos>', '<teacher>', '1', '2', '+', '3', '=']
    >>> tok.decode(tok("12+3=").input_ids, skip_special_tokens=True)
    '12+3='
    """
    specials = [PAD, BOS, EOS, UNK, *tags]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(alphabet)))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(".|\n"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
                                   additional_special_tokens=list(tags))
