"""A character-level tokenizer built with `tokenizers`, saved and loaded like any other."""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


def char_tokenizer(alphabet: str, tags: tuple[str, ...]) -> PreTrainedTokenizerFast:
    """One token per character of `alphabet`, plus pad/eos/unk and the persona `tags` as special tokens.

    >>> tok = char_tokenizer("0123456789+=", ("<teacher>",))
    >>> tok.convert_ids_to_tokens(tok("<teacher>12+3=").input_ids)
    ['<teacher>', '1', '2', '+', '3', '=']
    """
    specials = [PAD, EOS, UNK, *tags]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(alphabet)))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(".|\n"), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   additional_special_tokens=list(tags))
