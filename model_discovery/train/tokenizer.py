"""Byte-level BPE tokenizers: trained on the corpus's train split, or loaded by name.

Byte-level BPE maps every byte to a symbol first, so any text round-trips exactly
(``decode(encode(text)) == text``) and no input is out of vocabulary. The end-of-text token
``<|endoftext|>`` separates documents in the packed token streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

EOT_TOKEN = "<|endoftext|>"
MAX_UINT16_VOCAB = 65536


class TokenizerError(ValueError):
    """A tokenizer cannot be trained or loaded; the message is one line naming the cause."""


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE tokenizer of exactly ``vocab_size`` entries (EOT included) when the
    text supports that many merges; fewer when the text is too small."""
    if not 257 <= vocab_size <= MAX_UINT16_VOCAB:
        raise TokenizerError(f"vocab_size {vocab_size} must be within [257, {MAX_UINT16_VOCAB}] "
                             "(256 byte symbols + end-of-text, stored as uint16)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def load_tokenizer(ref: str | Path) -> Tokenizer:
    """A tokenizer from a ``tokenizer.json`` path or a Hugging Face hub name (needs hub access)."""
    path = Path(ref)
    try:
        if path.suffix == ".json" or path.exists():
            return Tokenizer.from_file(str(path))
        return Tokenizer.from_pretrained(str(ref))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception subclasses
        raise TokenizerError(f"tokenizer {str(ref)!r} cannot be loaded: {' '.join(str(exc).split())}") from exc


def eot_id(tok: Tokenizer) -> int:
    """Id of the end-of-text token (``<|endoftext|>``, else ``</s>``/``<eos>``)."""
    for name in (EOT_TOKEN, "</s>", "<eos>", "<|end_of_text|>"):
        tid = tok.token_to_id(name)
        if tid is not None:
            return int(tid)
    raise TokenizerError("tokenizer has no end-of-text token (<|endoftext|>, </s> or <eos>)")
