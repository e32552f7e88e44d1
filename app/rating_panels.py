"""The "Rate cases" page's pieces: a case's inputs drawn as a clinician reads them, with no model output (the echo
or slide without a saliency overlay, the ECG in the clinical layout, the note as text, the labs with units,
reference ranges and out-of-range arrows), the checks on a rater's ranking before it is stored, and the
reveal after it is (the model's ranking of the case and its Kendall tau-b with the rater's).

The drawing functions take the case's values, never an explanation, so a blinded page cannot show one by
accident; the pure functions (tables, rank checks, the reveal's numbers) are testable without Streamlit."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from app import case_figures, figures
from app.figures import feature_name, pretty
from explain.agreement import importance_to_ranks, ranking_scores, tau_b
from explain.case import CaseExplanation
from explain.interactions import interaction_aware_scores
from neurofusion.data.features import FeatureSpec
from neurofusion.data.schema import Case, Signal

HIGH, LOW = "▲ high", "▼ low"
LAB_COLUMNS = ("Test", "Value", "Reference range", "Flag")
ECG_DRAW_HZ = 250  # the ECG is drawn at <= 250 Hz: the page stays light, the waves unchanged
REVEAL_METHODS = {"shapley": "Shapley value", "attention": "cross-modal attention",
                  "leave_one_out": "leave-one-out", "interaction_aware": "interaction-aware Shapley"}


# --------------------------------------------------------------------------------------- the inputs
def lab_table(values: Mapping[str, object], features: Mapping[str, FeatureSpec]) -> pd.DataFrame:
    """One row per feature of a tabular modality, in its order: Test (its clinical name), Value (with its
    unit, 'not measured' when missing), Reference range and Flag (▲ high / ▼ low outside the range). The
    Reference range and Flag columns are left out when no feature has a range (a mutation panel, a clinical
    row), so such a modality reads as a plain table."""
    rows = []
    for name, value in values.items():
        spec = features.get(name, FeatureSpec(name))
        rows.append({"Test": feature_name(name, spec.unit), "Value": _shown_value(value, spec),
                     "Reference range": spec.reference_range, "Flag": _flag(value, spec)})
    table = pd.DataFrame(rows, columns=list(LAB_COLUMNS))
    if not any(spec.reference_range for spec in (features.get(n, FeatureSpec(n)) for n in values)):
        table = table.drop(columns=["Reference range", "Flag"])
    return table


def _measured(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _shown_value(value: object, spec: FeatureSpec) -> str:
    if not _measured(value):
        return "not measured"
    if isinstance(value, str):
        return value
    number = float(value)
    text = f"{number:.0f}" if abs(number) >= 100 else f"{number:.3g}"
    return f"{text} {spec.unit}".strip()


def _flag(value: object, spec: FeatureSpec) -> str:
    if not _measured(value) or isinstance(value, str):
        return ""
    number = float(value)
    if spec.ref_high is not None and number > spec.ref_high:
        return HIGH
    if spec.ref_low is not None and number < spec.ref_low:
        return LOW
    return ""


def note_html(text: str) -> str:
    """The note as written (line breaks kept, nothing highlighted), escaped."""
    return (f"<div id='rate-note' style='white-space: pre-wrap; line-height: 1.5; max-height: 28rem; "
            f"overflow-y: auto'>{html.escape(text)}</div>")


def missing_line(names: Sequence[str], available: Sequence[str], titles: Mapping[str, str]) -> str:
    """'Not available for this case: ECG, Labs.' or '' when the case has every declared modality."""
    lacking = [titles.get(m, m) for m in names if m not in available]
    return f"Not available for this case: {', '.join(lacking)}." if lacking else ""


def draw_case(case: Case, names: Sequence[str], available: Sequence[str], titles: Mapping[str, str],
              kinds: Mapping[str, str], features: Mapping[str, FeatureSpec], key: str) -> None:
    """Every available modality of ``case`` under its declared title, in declaration order, two side by side
    (an ECG across the page, as it is printed), then a line naming those it lacks. ``key`` prefixes the
    charts' keys. No explanation is taken, so none is drawn."""
    for row in layout_rows([m for m in names if m in available], kinds):
        for modality, column in zip(row, st.columns(len(row) if len(row) > 1 else 1, gap="large")):
            with column:
                _draw_modality(case, modality, titles, kinds, features, key)
    lacking = missing_line(names, available, titles)
    if lacking:
        st.info(lacking, icon=":material/hide_source:")


def layout_rows(modalities: Sequence[str], kinds: Mapping[str, str]) -> list[list[str]]:
    """The modalities in declaration order, paired two to a row; a signal (an ECG printout) takes a row of
    its own: cardio -> [[image, text], [signal], [tabular]]."""
    rows: list[list[str]] = []
    for modality in modalities:
        if kinds[modality] == "signal":
            rows.append([modality])
        elif rows and len(rows[-1]) == 1 and kinds[rows[-1][0]] != "signal":
            rows[-1].append(modality)
        else:
            rows.append([modality])
    return rows


def _draw_modality(case: Case, modality: str, titles: Mapping[str, str], kinds: Mapping[str, str],
                   features: Mapping[str, FeatureSpec], key: str) -> None:
    title = titles.get(modality, modality)
    st.subheader(title, anchor=False)
    value = case.value(modality)
    if value is None:  # the study recorded it as available; the cohort's file has gone since
        st.warning(f"This case's {title} cannot be read now (the study recorded it as available): rank it from "
                   "what you know, or skip the case with that reason.")
        return
    _DRAW[kinds[modality]](value, modality, features, f"{key}.{modality}")


def _draw_image(image: np.ndarray, modality: str, features: Mapping[str, FeatureSpec], key: str) -> None:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] == 3:  # a colour image (a slide): drawn in its own colours
        figure = case_figures.colour_overlay(image, None)
    else:
        figure = figures.image_overlay(image if image.ndim == 2 else image[image.shape[0] // 2], None)
    st.plotly_chart(figure, key=key)


def _draw_signal(signal: Signal, modality: str, features: Mapping[str, FeatureSpec], key: str) -> None:
    step = max(1, int(signal.fs // ECG_DRAW_HZ))
    st.plotly_chart(figures.ecg_figure(signal.data[:, ::step], signal.fs / step, signal.channels), key=key)
    st.caption(f"{len(signal.channels)} leads, {signal.duration_s:.0f} s at {signal.fs:g} Hz; 25 mm/s, 10 mm/mV.")


def _draw_text(text: str, modality: str, features: Mapping[str, FeatureSpec], key: str) -> None:
    st.html(note_html(text))


def _draw_table(values: Mapping[str, object], modality: str, features: Mapping[str, FeatureSpec], key: str) -> None:
    table = lab_table(values, features)
    st.dataframe(table, hide_index=True, key=key, height=figures.table_height(len(table)))


_DRAW = {"image": _draw_image, "signal": _draw_signal, "text": _draw_text, "tabular": _draw_table}


# --------------------------------------------------------------------------------------- the ranking
def rank_problem(ranks: Mapping[str, int | None], titles: Mapping[str, str], allow_ties: bool) -> str | None:
    """Why a rater's ranks cannot be stored, in words, or None when they can: every modality ranked 1..k;
    without ties each rank once; with ties in standard competition form (1, 1, 3)."""
    k = len(ranks)
    unranked = [titles.get(m, m) for m, r in ranks.items() if r is None]
    if unranked:
        return f"Give every modality a rank: {', '.join(unranked)} {'has' if len(unranked) == 1 else 'have'} none."
    outside = [titles.get(m, m) for m, r in ranks.items() if not 1 <= int(r) <= k]
    if outside:
        return f"Ranks run from 1 to {k}: {', '.join(outside)} is outside."
    by_rank: dict[int, list[str]] = {}
    for modality, rank in ranks.items():
        by_rank.setdefault(int(rank), []).append(titles.get(modality, modality))
    shared = {rank: who for rank, who in sorted(by_rank.items()) if len(who) > 1}
    if shared and not allow_ties:
        rank, who = next(iter(shared.items()))
        return (f"{_count_words(len(who))} modalities have rank {rank} ({', '.join(who)}); this study does not "
                f"allow ties: give each modality its own rank from 1 to {k}.")
    for rank, who in sorted(by_rank.items()):
        expected = 1 + sum(len(w) for r, w in by_rank.items() if r < rank)
        if rank != expected:
            ranks_given = ", ".join(str(r) for r in sorted(int(v) for v in ranks.values()))
            return (f"Rank {rank} ({', '.join(who)}) should be {expected}: tied modalities share the better place "
                    f"and the next place is skipped (1, 1, 3); got {ranks_given}.")
    return None


def _count_words(n: int) -> str:
    return {2: "Two", 3: "Three", 4: "Four"}.get(n, str(n))


def ranking_words(ranks: Mapping[str, float], titles: Mapping[str, str]) -> str:
    """'1 ECG, 2 Echo image, 2 Labs, 4 Clinical note': modalities by rank, ties in declaration order."""
    ordered = sorted(ranks.items(), key=lambda item: item[1])
    return ", ".join(f"{rank:g} {titles.get(m, m)}" for m, rank in ordered)


# --------------------------------------------------------------------------------------- the reveal
def model_ranks(explanation: CaseExplanation, method: str, survival: bool = False) -> dict[str, float]:
    """The model's ranking of the case's modalities by ``method`` (1 = most important, ties share their
    average rank), for the class it predicted (a survival model: by the size of each modality's effect);
    {modality: rank} over the modalities the case has."""
    importance = explanation.importance
    if method == "interaction_aware":
        scores = pd.DataFrame(interaction_aware_scores(importance), index=importance.case_ids,
                              columns=list(importance.names))
    elif method in REVEAL_METHODS:
        scores = importance.table(method)
    else:
        raise ValueError(f"reveal method must be one of {', '.join(REVEAL_METHODS)}, got {method!r}")
    ranks = importance_to_ranks(ranking_scores(scores, survival)).iloc[0]
    return {m: float(r) for m, r in ranks.items() if not math.isnan(r)}


def case_tau(model: Mapping[str, float], rater: Mapping[str, int]) -> tuple[float, int]:
    """Kendall tau-b between the model's and the rater's ranks over the modalities both ranked -> (tau, n)."""
    names = list(rater)
    a = np.array([model.get(m, np.nan) for m in names], dtype=float)
    b = np.array([rater[m] for m in names], dtype=float)
    return tau_b(a, b)


def reveal_table(model: Mapping[str, float], rater: Mapping[str, int], titles: Mapping[str, str]) -> pd.DataFrame:
    """Modality, Your rank, Model's rank: the rater's order first."""
    rows = [{"Modality": titles.get(m, m), "Your rank": int(r),
             "Model's rank": _rank_text(model.get(m, math.nan))}
            for m, r in sorted(rater.items(), key=lambda item: item[1])]
    return pd.DataFrame(rows, columns=["Modality", "Your rank", "Model's rank"])


def _rank_text(rank: float) -> str:
    if math.isnan(rank):
        return "not ranked"
    return f"{rank:g}"


def prediction_words(explanation: CaseExplanation, survival: bool) -> str:
    """'Heart failure (71.2%)' for a classifier; a survival model's explained quantity and its value
    ('Survival at 60 months: 64%')."""
    if survival:
        return f"{pretty(explanation.classes[0])}: {float(explanation.probabilities[0]):.0%}"
    return f"{pretty(explanation.predicted)} ({explanation.probabilities.max():.1%})"
