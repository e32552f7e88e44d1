"""Predictor: batched predictions come back in the order the cases were given, equal to one at a time."""

from __future__ import annotations

import numpy as np
import pytest

from neurofusion.inference import Predictor, drop_mask, parse_modalities


def test_batched_predictions_are_in_input_order_and_equal_one_at_a_time(tiny_batch, tiny_tokenizer, tiny_cohort):
    predictor = Predictor(tiny_batch[0], tiny_tokenizer)
    cases = [tiny_cohort[i] for i in range(12)]
    lengths = [len(c.note or "") for c in cases]
    assert lengths != sorted(lengths)  # the batches are reordered by note length internally
    labels, probabilities = predictor.predict(cases, batch_size=5)
    singles = np.concatenate([predictor.predict([c])[1] for c in cases])
    np.testing.assert_allclose(probabilities, singles, atol=1e-5)
    assert labels.tolist() == [predictor.model.classes.index(c.label) for c in cases]


def test_drop_hides_the_named_modalities(tiny_batch, tiny_tokenizer, tiny_cohort):
    predictor = Predictor(tiny_batch[0], tiny_tokenizer)
    present = tiny_batch[1].present
    hidden = drop_mask(present, parse_modalities("image,text"))
    assert not hidden[:, :2].any() and (hidden[:, 2:] == present[:, 2:]).all()
    with pytest.raises(ValueError, match="unknown modality 'ekg'"):
        parse_modalities("image,ekg")
    cases = [tiny_cohort[i] for i in range(4)]
    no_image = predictor.predict(cases, drop=("image",))[1]
    assert not np.allclose(no_image, predictor.predict(cases)[1])



def test_predictions_and_note_explanations_from_several_threads_share_one_tokenizer_safely(
        tiny_batch, tiny_tokenizer, tiny_cohort):
    """A fast tokenizer's truncation and padding are state of the one Rust object behind it, set by each
    call. Unguarded, a padded prediction batch and an unpadded, untruncated note-length count running at
    once tokenise with each other's settings (a truncated note reported as whole, a batch of ragged rows:
    "Unable to create tensor"). Four threads mix both for a fixed 3 seconds; every result must equal the
    one computed alone. (A tiny model: the demo model's note attribution is slow enough that the threads
    rarely meet inside the tokenizer in a few seconds on two cores.)"""
    import dataclasses
    import sys
    import threading
    import time

    from explain._forward import ModalityForward
    from explain.text import explain_note

    predictor = Predictor(tiny_batch[0], tiny_tokenizer)
    notes = [c for c in tiny_cohort if c.note]
    long_note = " ".join(c.note for c in notes[:4])  # longer than the 128 tokens the tiny model reads
    note_case = dataclasses.replace(notes[0], note=long_note, image=None, signal=None, tabular=None)
    batch_cases = [dataclasses.replace(c, image=None, signal=None) for c in notes[:6]] + [note_case]
    forward = ModalityForward(predictor.model, predictor.batch([note_case]))
    expected_probabilities = predictor.predict(batch_cases)[1]
    alone = explain_note(forward, long_note, tiny_tokenizer, 0, n_steps=2)
    assert alone.truncated and alone.covered_chars < len(long_note)
    errors: list[BaseException] = []
    counts = {"predict": 0, "batch": 0, "explain": 0}
    stop = time.monotonic() + 3.0

    def loop(kind: str) -> None:
        try:
            while time.monotonic() < stop and not errors:
                if kind == "predict":
                    np.testing.assert_allclose(predictor.predict(batch_cases)[1], expected_probabilities, atol=1e-5)
                elif kind == "batch":  # the tokenising half of a prediction, which runs outside the model's lock
                    assert predictor.batch(batch_cases).tokens["input_ids"].shape[1] == 128
                else:
                    note = explain_note(forward, long_note, tiny_tokenizer, 0, n_steps=2)
                    assert (note.tokens, note.truncated, note.covered_chars) == (
                        alone.tokens, alone.truncated, alone.covered_chars), "tokenised with another call's settings"
                counts[kind] += 1
        except BaseException as err:  # noqa: BLE001 - handed to the main thread, which fails the test with it
            errors.append(err)

    threads = [threading.Thread(target=loop, args=(kind,)) for kind in ("predict", "explain", "batch", "explain")]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # hand the interpreter between threads often: more chances to interleave
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, repr(errors[0])
    assert min(counts.values()) > 10, counts
