"""Note attributions: word-piece merge, character offsets on notes with punctuation and subwords,
phrases, truncation, and LayerIntegratedGradients completeness."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from explain._forward import ModalityForward
from explain.ablation import sentences
from explain.text import _merge_words, _salient_runs, explain_note
from neurofusion.inference import Predictor


def test_word_pieces_merge_to_words_with_offsets_into_the_note(tiny_tokenizer):
    note = "Pt c/o orthopnoea; BNP 1,240 pg/mL — denies palpitations."
    encoded = tiny_tokenizer(note, return_offsets_mapping=True)
    scores = np.arange(len(encoded["input_ids"]), dtype=float)
    words = _merge_words(note, scores, encoded["offset_mapping"], encoded.word_ids())
    for word in words:
        assert note[word.start:word.end] == word.text
    texts = [w.text for w in words]
    assert "orthopnoea" in texts and "palpitations" in texts and ";" in texts and "1" in texts
    # a word split into several pieces carries the sum of its pieces' scores
    word_id = sorted({w for w in encoded.word_ids() if w is not None})[texts.index("orthopnoea")]
    pieces = [i for i, w in enumerate(encoded.word_ids()) if w == word_id]
    assert len(pieces) > 1  # the small vocabulary splits this spelling into word pieces
    assert words[texts.index("orthopnoea")].score == pytest.approx(sum(scores[i] for i in pieces))


def test_salient_runs_keep_sign_and_sentence():
    from explain.text import Span

    note = "Severe orthopnea noted. Denies chest pain."
    words = [Span(0, 6, "Severe", 0.5), Span(7, 16, "orthopnea", 1.0), Span(17, 22, "noted", 0.01),
             Span(22, 23, ".", 0.9), Span(24, 30, "Denies", -0.4), Span(31, 36, "chest", -0.3), Span(37, 41, "pain", 0.2)]
    runs = _salient_runs(note, words)
    assert [r.text for r in runs] == ["Severe orthopnea", "Denies chest", "pain"]  # a salient "." is no phrase
    assert runs[0].score == pytest.approx(1.5) and runs[1].score == pytest.approx(-0.7)


def test_tiny_neurofusion_note_explanation_is_complete_and_located(tiny_batch, tiny_tokenizer, tiny_cohort):
    model, _ = tiny_batch
    first = next(c for c in tiny_cohort if c.note is not None)
    case = dataclasses.replace(first, note=first.note[:sentences(first.note)[2][1]])  # three sentences: read whole
    batch = Predictor(model, tiny_tokenizer).batch([case])
    result = explain_note(ModalityForward(model, batch), case.note, tiny_tokenizer, target=1, n_steps=16)
    assert len(result.tokens) < 128 and not result.truncated
    assert result.covered_chars == len(case.note.rstrip())  # up to its last character
    assert len(result.sentences) == 3
    assert all(case.note[w.start:w.end] == w.text for w in result.words)
    assert sum(w.score for w in result.words) == pytest.approx(result.token_scores[1:-1].sum(), abs=1e-6)
    assert abs(result.convergence_delta) < 0.05 * max(1e-3, abs(result.token_scores.sum()))
    # every word lies in exactly one sentence: the sentences share out the words' scores between them
    for word in result.words:
        assert sum(s.start <= word.start and word.end <= s.end for s in result.sentences) == 1, word
    assert sum(s.score for s in result.sentences) == pytest.approx(sum(w.score for w in result.words), abs=1e-9)


def test_a_note_longer_than_the_model_reads_is_reported_truncated_where_it_was_cut(tiny_batch, tiny_tokenizer,
                                                                                     tiny_cohort):
    model, _ = tiny_batch
    notes = [c.note for c in tiny_cohort if c.note]
    long_note = "\n".join(notes[:4])  # several hundred word pieces; the tiny model reads 128
    case = dataclasses.replace(next(c for c in tiny_cohort if c.note), note=long_note)
    batch = Predictor(model, tiny_tokenizer).batch([case])
    result = explain_note(ModalityForward(model, batch), long_note, tiny_tokenizer, target=0, n_steps=4)
    assert result.truncated and len(result.tokens) == 128 and result.tokens[-1] == "[SEP]"
    assert long_note[result.covered_chars:].strip()  # text after the cut that the model never read
    assert max(w.end for w in result.words) == result.covered_chars
    assert all(w.end <= result.covered_chars for w in result.phrases)
