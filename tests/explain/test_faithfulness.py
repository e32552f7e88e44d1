"""Faithfulness checks: deletion curves order correctly, the cascade covers the model, ERASER scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.faithfulness import cascade_groups, deletion_curve, eraser_scores, modality_deletion_curves, randomisation_check
from explain._forward import ModalityForward
from explain.text import explain_note
from neurofusion.inference import Predictor


def test_deletion_curve_of_a_faithful_attribution_falls_faster_than_random():
    weights = np.random.default_rng(0).random(50)  # the "model" is a weighted sum: attribution = weights
    curve = deletion_curve(lambda keep: float((weights * keep).sum()), weights)
    assert curve.attributed[0] == curve.random[0] == pytest.approx(weights.sum())
    assert curve.attributed[-1] == curve.random[-1] == 0
    assert (np.diff(curve.attributed) <= 1e-12).all()
    assert curve.area_attributed < curve.area_random
    reversed_curve = deletion_curve(lambda keep: float((weights * keep).sum()), -weights)
    assert reversed_curve.area_attributed > curve.area_random  # an anti-faithful attribution is caught


def test_cascade_runs_from_heads_to_input(tiny_batch):
    names = [name for name, _ in cascade_groups(tiny_batch[0])]
    assert names[0] == "heads" and names[1] == "fusion"
    assert names.index("image stage 2") < names.index("image stage 1") < names.index("image stem")
    assert names.index("signal LSTM + attention") < names.index("signal convolutions")


def test_randomisation_check_starts_at_one_and_moves(tiny_batch, tiny_tokenizer, tiny_cohort):
    predictor = Predictor(tiny_batch[0], tiny_tokenizer)
    cases = [c for c in tiny_cohort if c.image is not None and c.signal is not None][:1]
    table = randomisation_check(predictor, cases, n_steps=4)
    assert table.loc[0, "image_similarity"] == pytest.approx(1.0) and table.loc[0, "signal_similarity"] == pytest.approx(1.0)
    assert len(table) == len(cascade_groups(predictor.model)) + 1
    assert table["image_similarity"].iloc[-1] < 0.95 and table["signal_similarity"].iloc[-1] < 0.95


def test_modality_deletion_curves_and_eraser_on_a_case(tiny_batch, tiny_tokenizer, tiny_cohort):
    """The curves' end points and the ERASER scores equal predictions of the whole model on the case with
    the parts removed by hand."""
    model = tiny_batch[0]
    predictor = Predictor(model, tiny_tokenizer)
    case = next(c for c in tiny_cohort if all(c.available.values()))
    full = predictor.predict([case])[1][0, 0]

    def p_target(edit) -> float:
        batch = predictor.batch([case])
        edit(batch)
        with torch.no_grad():
            return float(model(batch).probabilities[0, 0])

    curves = modality_deletion_curves(predictor, case, target=0, n_steps=4)
    assert set(curves) == {"image", "signal", "text"}
    for curve in curves.values():
        assert curve.attributed[0] == pytest.approx(full, abs=1e-5) and curve.random[0] == pytest.approx(full, abs=1e-5)
    assert curves["image"].attributed[-1] == pytest.approx(p_target(lambda b: b.image.zero_()), abs=1e-5)
    assert curves["signal"].random[-1] == pytest.approx(p_target(lambda b: b.signal.zero_()), abs=1e-5)

    def pad_all_but(keep):
        def edit(batch):
            inner = batch.tokens["input_ids"][0, 1:-1]
            inner[~keep] = tiny_tokenizer.pad_token_id
        return edit

    n = predictor.batch([case]).tokens["input_ids"].shape[1] - 2  # word pieces between [CLS] and [SEP]
    assert curves["text"].attributed[-1] == pytest.approx(p_target(pad_all_but(torch.zeros(n, dtype=torch.bool))),
                                                          abs=1e-5)

    scores = eraser_scores(predictor, case, target=0, top_share=0.25, n_steps=4)
    note = explain_note(ModalityForward(model, predictor.batch([case])), case.note, tiny_tokenizer, 0, n_steps=4)
    k = round(0.25 * n)
    rationale = torch.zeros(n, dtype=torch.bool)
    rationale[torch.from_numpy(np.argsort(-note.token_scores[1:-1])[:k].copy())] = True
    assert scores["rationale_tokens"] == k
    assert scores["full"] == pytest.approx(full, abs=1e-5)
    assert scores["comprehensiveness"] == pytest.approx(full - p_target(pad_all_but(~rationale)), abs=1e-5)
    assert scores["sufficiency"] == pytest.approx(full - p_target(pad_all_but(rationale)), abs=1e-5)
