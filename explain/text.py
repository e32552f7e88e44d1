"""Note explanations for one case: Captum LayerIntegratedGradients on the word-embedding layer, per token,
merged to words (word pieces joined) and to phrases (sentences, and runs of same-sign salient words),
each with character offsets into the note as written, so the app can highlight the original text."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients

from explain._forward import ModalityForward, attribution_mode
from explain.ablation import sentences
from neurofusion.data.tokenizer import encode


@dataclass
class Span:
    start: int  # character offsets into the note: note[start:end] is the text
    end: int
    text: str
    score: float  # signed, in logit units: positive = evidence for the explained class


@dataclass
class NoteExplanation:
    target: int
    tokens: list[str]  # word pieces as the model saw them, [CLS] ... [SEP]
    token_scores: np.ndarray  # (N,)
    words: list[Span]
    sentences: list[Span]
    phrases: list[Span]  # runs of adjacent words with the same sign and at least 10 % of the top |score|
    truncated: bool  # the note was longer than the model reads
    covered_chars: int  # the model read note[:covered_chars]
    convergence_delta: float


def explain_note(forward: ModalityForward, note: str, tokenizer, target: int, *, n_steps: int = 50,
                 internal_batch_size: int | None = None, modality: str | None = None) -> NoteExplanation:
    """Token, word, sentence and phrase attributions of text modality ``modality`` (default the first
    declared; ``note`` is its text as written)."""
    name = forward.first("text") if modality is None else modality
    if name is None or not forward.has(name):
        raise ValueError("this case has no note to explain")
    model = forward.model
    max_length = model.config.text.max_length
    encoded = encode(tokenizer, note, truncation=True, max_length=max_length, return_offsets_mapping=True)
    ids = forward.inputs(name)["input_ids"]  # (1, N): what the model read
    if ids.shape[1] != len(encoded["input_ids"]) or ids[0].tolist() != encoded["input_ids"]:
        raise ValueError("the batch was tokenised differently from this tokenizer; explain with the checkpoint's own")
    special = torch.tensor(tokenizer.get_special_tokens_mask(encoded["input_ids"], already_has_special_tokens=True),
                           dtype=torch.bool, device=ids.device)[None]  # (1, N), beside the ids it selects from
    baseline = torch.where(special, ids, torch.full_like(ids, tokenizer.pad_token_id))
    layer = model.encoders[name].bert.embeddings.word_embeddings
    with attribution_mode(model):
        attributions, delta = LayerIntegratedGradients(forward.function(name), layer).attribute(
            ids, baselines=baseline, target=target, n_steps=n_steps,
            internal_batch_size=internal_batch_size or n_steps, return_convergence_delta=True)
    scores = attributions[0].sum(-1).detach().float().cpu().numpy()  # (N, H) -> (N,)
    offsets = encoded["offset_mapping"]
    words = _merge_words(note, scores, offsets, encoded.word_ids())
    covered = max((end for _, end in offsets), default=0)
    full_length = len(encode(tokenizer, note, truncation=False)["input_ids"])
    return NoteExplanation(
        target=target,
        tokens=tokenizer.convert_ids_to_tokens(encoded["input_ids"]),
        token_scores=scores,
        words=words,
        sentences=_sentence_spans(note, words),
        phrases=_salient_runs(note, words),
        truncated=full_length > max_length,
        covered_chars=covered,
        convergence_delta=float(delta[0]),
    )


def _merge_words(note: str, scores: np.ndarray, offsets, word_ids) -> list[Span]:
    """Word pieces of one pre-tokenised word (same word id) -> one span with the summed score."""
    words: dict[int, list] = {}
    for score, (start, end), word in zip(scores, offsets, word_ids):
        if word is None:  # [CLS], [SEP]
            continue
        entry = words.setdefault(word, [start, end, 0.0])
        entry[0], entry[1] = min(entry[0], start), max(entry[1], end)
        entry[2] += float(score)
    return [Span(s, e, note[s:e], score) for s, e, score in (words[k] for k in sorted(words))]


def _sentence_spans(note: str, words: list[Span], bounds: list[tuple[int, int]] | None = None) -> list[Span]:
    """Each sentence (``bounds``, default the note's sentences) with the summed score of its words."""
    spans = []
    for start, end in sentences(note) if bounds is None else bounds:
        score = sum(w.score for w in words if w.start >= start and w.end <= end)
        spans.append(Span(start, end, note[start:end], score))
    return spans


def _salient_runs(note: str, words: list[Span], share: float = 0.1,
                  bounds: list[tuple[int, int]] | None = None) -> list[Span]:
    """Maximal runs of adjacent words (with letters or digits) in one sentence (``bounds``, default the
    note's sentences) whose scores share a sign and reach ``share`` of the largest |score|: the phrases a
    reader sees highlighted."""
    if not words:
        return []
    threshold = share * max(abs(w.score) for w in words)
    ends = [end for _, end in (sentences(note) if bounds is None else bounds)]
    sentence_of = np.searchsorted(ends, [w.start for w in words], side="right")
    runs, current = [], []
    for i, word in enumerate(words):
        # punctuation may sit inside a phrase but is not a phrase a reader looks for by itself
        salient = abs(word.score) >= threshold and word.score != 0 and any(ch.isalnum() for ch in word.text)
        same = current and np.sign(current[-1].score) == np.sign(word.score) and sentence_of[i] == sentence_of[i - 1]
        if salient and (not current or same):
            current.append(word)
            continue
        if current:
            runs.append(current)
        current = [word] if salient else []
    if current:
        runs.append(current)
    return sorted((Span(r[0].start, r[-1].end, note[r[0].start:r[-1].end], sum(w.score for w in r)) for r in runs),
                  key=lambda s: -abs(s.score))
