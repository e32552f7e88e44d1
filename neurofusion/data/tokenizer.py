"""The note tokenizer: a WordPiece vocabulary trained on the training notes (``tokenizers``), saved and
loaded as a ``BertTokenizerFast`` directory, or a local pretrained model's own tokenizer."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Callable, Iterable

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizerFast, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

_LOCKS: "weakref.WeakKeyDictionary[PreTrainedTokenizerFast, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def tokenizer_lock(tokenizer: PreTrainedTokenizerFast) -> threading.RLock:
    """The re-entrant lock of one shared tokenizer object. A fast tokenizer keeps its truncation and
    padding as settings of the one Rust tokenizer it wraps, and every call first sets them to what that
    call asked for; two threads calling with different settings (a padded batch for prediction, an
    unpadded note for its explanation) then encode with each other's settings, which ends in ragged
    batches ("Unable to create tensor ...") or wrongly truncated notes. Every call runs under this lock."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(tokenizer)
        if lock is None:
            lock = _LOCKS[tokenizer] = threading.RLock()
        return lock


def encode(tokenizer: PreTrainedTokenizerFast, text: str | list[str], **kwargs):
    """``tokenizer(text, **kwargs)`` under the tokenizer's lock (see :func:`tokenizer_lock`): the one way
    the project calls a tokenizer that may be shared between threads."""
    with tokenizer_lock(tokenizer):
        return tokenizer(text, **kwargs)


def train_wordpiece(notes: Iterable[str], vocab_size: int) -> BertTokenizerFast:
    """A lower-cased BERT-style WordPiece tokenizer fitted to ``notes`` (milliseconds for a few thousand)."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=2)
    tokenizer.train_from_iterator(notes, trainer=trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return BertTokenizerFast(tokenizer_object=tokenizer, do_lower_case=True)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """A tokenizer saved in a local directory (never fetched from a hub)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"tokenizer directory {path} not found")
    return BertTokenizerFast.from_pretrained(str(path), local_files_only=True)


def make_tokenize(tokenizer: PreTrainedTokenizerFast, max_length: int) -> Callable[[list[str]], dict[str, torch.Tensor]]:
    """The Collate hook: notes -> input_ids / attention_mask (B, N), padded to the longest, truncated."""

    def tokenize(notes: list[str]) -> dict[str, torch.Tensor]:
        encoded = encode(tokenizer, notes, padding="longest", truncation=True, max_length=max_length,
                         return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    return tokenize
