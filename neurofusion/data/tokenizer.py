"""The note tokenizer: a WordPiece vocabulary trained on the training notes (``tokenizers``), saved and
loaded as a ``BertTokenizerFast`` directory, or a local pretrained model's own tokenizer."""

from __future__ import annotations

import threading
import weakref
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
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


def train_wordpiece(notes: Iterable[str], vocab_size: int, *, min_frequency: int = 2) -> BertTokenizerFast:
    """A lower-cased BERT-style WordPiece tokenizer fitted to ``notes`` (well under a second for a few thousand).

    The vocabulary is learned as ``tokenizers``' WordPiece trainer learns it (byte-pair merges of the words'
    characters, a continuing piece prefixed ``##``, while a pair occurs ``min_frequency`` times and the vocabulary
    has room) but deterministically: the most frequent pair is merged, ties broken by the pieces' text, and ids
    are given in a fixed order (special tokens, the sorted alphabet, then the merges in order). The same notes give
    the same ids in any process, which ``tokenizers``' own trainer does not (it breaks ties in hash-map order, so
    two fits differ in a few dozen pieces), so a resumed or data-parallel run, or a site of a federated one, can
    fit its own vocabulary and agree with the others."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for note in notes:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(note)))
    vocab = {token: n for n, token in enumerate(SPECIAL_TOKENS)}
    for piece in _wordpiece_pieces(counts, vocab_size - len(vocab), min_frequency):
        vocab.setdefault(piece, len(vocab))
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return BertTokenizerFast(tokenizer_object=tokenizer, do_lower_case=True)


def _wordpiece_pieces(counts: Counter[str], room: int, min_frequency: int) -> list[str]:
    """The word pieces of a WordPiece vocabulary of at most ``room`` entries learned from word counts: the
    alphabet (each word's first character, and its other characters as ``##c``), sorted, then the merged pieces in
    the order they were merged (most frequent adjacent pair first; ties: the pair whose pieces sort first)."""
    words = {word: [word[0]] + [f"##{c}" for c in word[1:]] for word in counts}
    pieces = sorted({piece for split in words.values() for piece in split})[:room]
    pairs: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[str]] = defaultdict(set)
    for word, split in words.items():
        for pair in zip(split, split[1:]):
            pairs[pair] += counts[word]
            where[pair].add(word)
    known = set(pieces)
    while len(pieces) < room and pairs:
        best = min(pairs.items(), key=lambda item: (-item[1], item[0]))
        (left, right), count = best
        if count < min_frequency:
            break
        merged = left + right.removeprefix("##")
        for word in sorted(where.pop((left, right), ())):
            split = words[word]
            for pair in zip(split, split[1:]):  # the word's pairs before the merge leave the counts
                pairs[pair] -= counts[word]
                if pairs[pair] <= 0:
                    del pairs[pair]
            joined, n = [], 0
            while n < len(split):
                if n + 1 < len(split) and split[n] == left and split[n + 1] == right:
                    joined.append(merged)
                    n += 2
                else:
                    joined.append(split[n])
                    n += 1
            words[word] = joined
            for pair in zip(joined, joined[1:]):
                pairs[pair] += counts[word]
                where[pair].add(word)
        pairs.pop((left, right), None)
        if merged not in known:
            known.add(merged)
            pieces.append(merged)
    return pieces


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
