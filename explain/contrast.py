"""Contrastive explanations: why class A rather than class B. Integrated Gradients, occlusion, the labs'
withheld-category differences and the modality Shapley / leave-one-out values are all linear in the
explained output, so the difference of the explanations of A and of B (same case, same settings) is the
explanation of logit_A - logit_B (probabilities p_A - p_B for modality importance). Grad-CAM (a ReLU on
the map) and the encoder's spatial attention (the same for every class) have no such difference.

Every declared modality's panel is contrasted by its kind (``CaseExplanation.panels``); the cardio fields
follow their panels. An image map that cannot be subtracted is left out, its reason in ``unexplained``
under the modality's name.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from explain.case import LEGACY_FIELDS, CaseExplanation
from explain.image import ImageSaliency
from explain.importance import ModalityImportance
from explain.signal import SignalExplanation, top_segments
from explain.text import NoteExplanation, Span, _salient_runs, _sentence_spans

# Image methods whose maps are linear in the explained output (and so can be subtracted).
LINEAR_IMAGE_METHODS = ("integrated_gradients", "occlusion")


def contrast_explanations(a: CaseExplanation, b: CaseExplanation) -> CaseExplanation:
    """The explanation of class ``a.target`` minus class ``b.target`` for one case: every attribution is
    a's minus b's; attention-only parts (cross-modal attention, the ECG's temporal attention) are kept as
    they are, since they do not depend on the class. ``a`` and ``b`` must explain the same case with the
    same settings. An image map that cannot be subtracted is left out and the reason put in
    ``unexplained[<image modality>]`` (``unexplained["image"]`` for cardio)."""
    _check_pair(a, b)
    unexplained = dict(a.unexplained)
    panels = {}
    for name, panel in a.panels.items():
        other = b.panels[name]
        if isinstance(panel, ImageSaliency):
            if panel.method in LINEAR_IMAGE_METHODS:
                panels[name] = _contrast_image(panel, other)
            else:
                unexplained[name] = (f"{panel.method.replace('_', ' ')} is not linear in the class, so it has no "
                                     "difference of two classes; choose Integrated Gradients or occlusion")
        elif isinstance(panel, NoteExplanation):
            panels[name] = _contrast_note(panel, other)
        elif isinstance(panel, SignalExplanation):
            panels[name] = _contrast_signal(panel, other)
        else:
            panels[name] = _contrast_tabular(panel, other)
    legacy = {slot: panels.get(kind) if a.kinds.get(kind) == kind else None for kind, slot in LEGACY_FIELDS.items()}
    return dataclasses.replace(a, contrast=b.target, importance=_contrast_importance(a.importance, b.importance),
                               unexplained=unexplained, panels=panels, **legacy)


def _check_pair(a: CaseExplanation, b: CaseExplanation) -> None:
    if a.contrast is not None or b.contrast is not None:
        raise ValueError("contrast two single-class explanations, not an explanation that is already a contrast")
    if a.case_id != b.case_id or a.classes != b.classes or a.present != b.present:
        raise ValueError(f"a contrast needs two explanations of the same case by the same model, got "
                         f"{a.case_id!r} and {b.case_id!r}")
    if a.target == b.target:
        raise ValueError(f"a contrast needs two different classes, got {a.classes[a.target]!r} twice")
    if set(a.panels) != set(b.panels):
        differ = sorted(set(a.panels) ^ set(b.panels))[0]
        raise ValueError(f"the two explanations differ in whether they have a {differ} part")
    for name, panel in a.panels.items():
        other = b.panels[name]
        if type(panel) is not type(other):
            raise ValueError(f"the two explanations of {name} are of different kinds")
        if isinstance(panel, ImageSaliency) and panel.method != other.method:
            raise ValueError(f"the two explanations use different image methods ({panel.method}, {other.method})")
        if isinstance(panel, SignalExplanation) and panel.attributions.shape != other.attributions.shape:
            raise ValueError("the two ECG explanations have different shapes: explain both with the same settings")
        if isinstance(panel, NoteExplanation) and panel.tokens != other.tokens:
            raise ValueError("the two note explanations read different tokens")


def _contrast_importance(a: ModalityImportance, b: ModalityImportance) -> ModalityImportance:
    return dataclasses.replace(
        a,
        probability_full=a.probability_full - b.probability_full,
        probability_none=a.probability_none - b.probability_none,
        subset_probability=a.subset_probability - b.subset_probability,
        shapley=a.shapley - b.shapley,
        leave_one_out=a.leave_one_out - b.leave_one_out,
    )


def _contrast_image(a: ImageSaliency, b: ImageSaliency) -> ImageSaliency:
    delta = None if a.convergence_delta is None or b.convergence_delta is None else a.convergence_delta - b.convergence_delta
    return dataclasses.replace(a, map=a.map - b.map, model_map=a.model_map - b.model_map, convergence_delta=delta,
                               completeness=None)


def _contrast_note(a: NoteExplanation, b: NoteExplanation) -> NoteExplanation:
    if [(w.start, w.end) for w in a.words] != [(w.start, w.end) for w in b.words]:
        raise ValueError("the two note explanations have different words")
    words = [Span(x.start, x.end, x.text, x.score - y.score) for x, y in zip(a.words, b.words)]
    bounds = [(s.start, s.end) for s in a.sentences]
    text = _note_text(a)
    return dataclasses.replace(
        a, token_scores=a.token_scores - b.token_scores, words=words,
        sentences=_sentence_spans(text, words, bounds), phrases=_salient_runs(text, words, bounds=bounds),
        convergence_delta=a.convergence_delta - b.convergence_delta, completeness=None)


def _note_text(explanation: NoteExplanation) -> str:
    """The note's text wherever a sentence covers it (exact there; blanks between sentences), enough to
    cut phrases, which never cross a sentence."""
    length = max([s.end for s in explanation.sentences] + [0])
    chars = [" "] * length
    for span in explanation.sentences:
        chars[span.start:span.end] = span.text
    return "".join(chars)


def _contrast_signal(a: SignalExplanation, b: SignalExplanation) -> SignalExplanation:
    attributions = a.attributions - b.attributions  # (L, T)
    magnitude = np.abs(attributions).sum(1) * a.recorded
    window_s = (a.segments[0].end_s - a.segments[0].start_s) if a.segments else 0.5
    return dataclasses.replace(
        a, attributions=attributions,
        lead_importance=magnitude / magnitude.sum() if magnitude.sum() > 0 else magnitude,
        segments=top_segments(np.abs(attributions).sum(0), a.fs, len(a.segments) or 3, window_s),
        convergence_delta=a.convergence_delta - b.convergence_delta, completeness=None)


def _contrast_tabular(a, b):
    if list(a["name"]) != list(b["name"]):
        raise ValueError("the two lab explanations have different features")
    table = a.copy()
    table.attrs.pop("completeness", None)
    table["score"] = a["score"].to_numpy(dtype=float) - b["score"].to_numpy(dtype=float)
    return table
