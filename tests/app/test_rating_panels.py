"""app/rating_panels.py: a case's inputs drawn as a clinician reads them and with nothing from the model (no
saliency trace, no ECG attribution strip or attention row, no highlighted words, no attribution column), the
lab table's ranges and arrows, the checks on a ranking before it is stored, and the reveal's model ranking and
tau (against scipy)."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from scipy.stats import kendalltau
from streamlit.testing.v1 import AppTest

from app import rating_panels
from explain.importance import ModalityImportance, subsets
from neurofusion.data.features import FeatureSpec
from tests.test_sample_data import SAMPLE

TITLES = {"image": "Echo image", "text": "Clinical note", "signal": "ECG", "tabular": "Labs"}
NAMES = list(TITLES)


# ------------------------------------------------------------------------------------------ the lab table
def test_lab_table_shows_units_ranges_and_arrows_and_says_not_measured():
    features = {"bnp_pg_ml": FeatureSpec("bnp_pg_ml", unit="pg/mL", ref_high=100),
                "hdl_mg_dl": FeatureSpec("hdl_mg_dl", unit="mg/dL", ref_low=40),
                "sodium_mmol_l": FeatureSpec("sodium_mmol_l", unit="mmol/L", ref_low=135, ref_high=145),
                "tsh_miu_l": FeatureSpec("tsh_miu_l", unit="mIU/L", ref_low=0.4, ref_high=4.0),
                "sex": FeatureSpec("sex", kind="categorical", categories=("F", "M"))}
    values = {"bnp_pg_ml": 1558.0, "hdl_mg_dl": 31.0, "sodium_mmol_l": 140.0, "tsh_miu_l": float("nan"), "sex": "F"}
    table = rating_panels.lab_table(values, features)
    assert list(table.columns) == ["Test", "Value", "Reference range", "Flag"]
    rows = table.set_index("Test")
    assert rows.loc["BNP"].tolist() == ["1558 pg/mL", "< 100 pg/mL", rating_panels.HIGH]
    assert rows.loc["HDL"].tolist() == ["31 mg/dL", "> 40 mg/dL", rating_panels.LOW]
    assert rows.loc["Sodium"].tolist() == ["140 mmol/L", "135-145 mmol/L", ""]
    assert rows.loc["TSH", "Value"] == "not measured" and rows.loc["TSH", "Flag"] == ""
    assert rows.loc["Sex", "Value"] == "F"


def test_a_table_without_reference_ranges_is_a_plain_table():
    features = {g: FeatureSpec(g, kind="categorical", categories=("0", "1")) for g in ("TP53", "KRAS")}
    table = rating_panels.lab_table({"TP53": "1", "KRAS": "0"}, features)
    assert list(table.columns) == ["Test", "Value"]
    assert table["Value"].tolist() == ["1", "0"]


# ------------------------------------------------------------------------------------------ the ranking checks
@pytest.mark.parametrize("ranks, ties, message", [
    ({"image": 1, "text": 2, "signal": 3, "tabular": 4}, False, None),
    ({"image": 1, "text": 1, "signal": 3, "tabular": 4}, False,
     "Two modalities have rank 1 (Echo image, Clinical note); this study does not allow ties"),
    ({"image": 1, "text": 1, "signal": 3, "tabular": 4}, True, None),
    ({"image": 1, "text": 1, "signal": 2, "tabular": 4}, True, "Rank 2 (ECG) should be 3"),
    ({"image": 1, "text": None, "signal": 2, "tabular": 3}, False,
     "Give every modality a rank: Clinical note has none"),
    ({"image": 1, "text": 2}, False, None),
    ({"image": 1, "text": 3}, False, "Ranks run from 1 to 2: Clinical note is outside"),
])
def test_rank_problem_names_what_is_wrong(ranks, ties, message):
    problem = rating_panels.rank_problem(ranks, TITLES, ties)
    if message is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(message), problem


def test_layout_pairs_modalities_and_gives_an_ecg_its_own_row():
    kinds = {"image": "image", "text": "text", "signal": "signal", "tabular": "tabular"}
    assert rating_panels.layout_rows(NAMES, kinds) == [["image", "text"], ["signal"], ["tabular"]]
    assert rating_panels.layout_rows(["image", "signal", "tabular"], kinds) == [["image"], ["signal"], ["tabular"]]
    cancer = {"histopathology": "image", "genomics": "tabular", "treatment_notes": "text", "clinical": "tabular"}
    assert rating_panels.layout_rows(list(cancer), cancer) == [["histopathology", "genomics"],
                                                                ["treatment_notes", "clinical"]]


def test_ranking_words_and_the_missing_line():
    words = rating_panels.ranking_words({"image": 2, "signal": 1, "text": 2}, TITLES)
    assert words == "1 ECG, 2 Echo image, 2 Clinical note"
    assert rating_panels.ranking_words({"image": 1.5, "text": 1.5}, TITLES) == "1.5 Echo image, 1.5 Clinical note"
    assert rating_panels.missing_line(NAMES, ["image", "text"], TITLES) == "Not available for this case: ECG, Labs."
    assert rating_panels.missing_line(NAMES, NAMES, TITLES) == ""


# ------------------------------------------------------------------------------------------ the reveal
def _explanation(weights: list[float], present: list[bool] | None = None) -> types.SimpleNamespace:
    """An explanation of an additive game v(S) = sum of the weights in S: its Shapley values are the weights."""
    w = np.array(weights, dtype=float)
    mask = np.array(present if present is not None else [True] * 4)
    v = subsets(4).numpy().astype(float) @ np.where(mask, w, 0.0)
    importance = ModalityImportance(
        case_ids=["c1"], target=np.array([0]), present=mask[None], probability_full=v[-1:],
        probability_none=v[:1], subset_probability=v[None], shapley=np.where(mask, w, 0.0)[None],
        leave_one_out=np.where(mask, w, 0.0)[None], attention=None, names=tuple(NAMES))
    return types.SimpleNamespace(importance=importance)


def test_model_ranks_by_method_for_a_known_game():
    explanation = _explanation([0.30, -0.40, 0.10, 0.05])
    # signed Shapley: evidence for the predicted class first, against it last
    assert rating_panels.model_ranks(explanation, "shapley") == {"image": 1, "text": 4, "signal": 2, "tabular": 3}
    # interaction-aware on an additive game is |phi|: the note's -0.40 now matters most
    assert rating_panels.model_ranks(explanation, "interaction_aware") == {"image": 2, "text": 1, "signal": 3,
                                                                          "tabular": 4}
    # a survival model ranks by magnitude
    assert rating_panels.model_ranks(explanation, "shapley", survival=True)["text"] == 1
    with pytest.raises(ValueError, match="no cross-modal attention"):
        rating_panels.model_ranks(explanation, "attention")
    with pytest.raises(ValueError, match="reveal method must be one of"):
        rating_panels.model_ranks(explanation, "gradients")


def test_model_ranks_leave_out_a_missing_modality_and_tau_matches_scipy():
    explanation = _explanation([0.30, 0.20, 0.10, 0.05], present=[True, True, False, True])
    model = rating_panels.model_ranks(explanation, "shapley")
    assert model == {"image": 1, "text": 2, "tabular": 3}
    rater = {"image": 2, "text": 1, "tabular": 3}
    tau, n = rating_panels.case_tau(model, rater)
    assert n == 3
    assert tau == pytest.approx(kendalltau([1, 2, 3], [2, 1, 3], variant="b").statistic)
    table = rating_panels.reveal_table(model, rater, TITLES)
    assert table.to_dict("records") == [{"Modality": "Clinical note", "Your rank": 1, "Model's rank": "2"},
                                        {"Modality": "Echo image", "Your rank": 2, "Model's rank": "1"},
                                        {"Modality": "Labs", "Your rank": 3, "Model's rank": "3"}]


# ------------------------------------------------------------------------------------------ drawing a case
def _draw(folder: str, case_id: str, available: list[str]) -> None:
    from app import rating_panels
    from app.state import modality_titles
    from neurofusion.data.cohort import CohortReader

    reader = CohortReader(folder)
    titles = modality_titles(reader.modalities)
    kinds = {m.name: m.kind for m in reader.modalities}
    rating_panels.draw_case(reader[case_id], reader.modality_names, available, titles, kinds, reader.features,
                            key="test.case")


def _case_with_everything() -> str:
    from neurofusion.data.cohort import CohortReader

    table = CohortReader(SAMPLE).table
    full = table[table[[f"has_{m}" for m in NAMES]].all(axis=1)]
    return str(full["case_id"].iloc[0])


def test_draw_case_shows_every_available_input_and_nothing_from_a_model():
    case_id = _case_with_everything()
    at = AppTest.from_function(_draw, args=(str(SAMPLE), case_id, NAMES), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [h.value for h in at.subheader] == ["Echo image", "Clinical note", "ECG", "Labs"]
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert set(charts) == {"test.case.image", "test.case.signal"}
    image = charts["test.case.image"]["data"]
    assert [t.get("name") for t in image] == ["image"]  # the echo alone: no saliency layer
    ecg = charts["test.case.signal"]
    names = [t.get("name") for t in ecg["data"]]
    assert "II" in names and "V6" in names  # the clinical 12-lead printout
    assert "coloraxis" not in ecg["layout"]  # no attribution strip (it is drawn on a colour axis)
    assert not any("attention" in (n or "").lower() or "attribution" in (n or "").lower() for n in names)
    html = [e.proto.body for e in at.get("html")]
    from neurofusion.data.cohort import CohortReader

    note = CohortReader(SAMPLE)[case_id].note
    assert len(html) == 1 and "background" not in html[0] and note.split()[0] in html[0]  # no highlighted words
    labs = at.dataframe[0].value
    assert list(labs.columns) == ["Test", "Value", "Reference range", "Flag"]
    assert not at.info  # nothing missing


def test_draw_case_names_the_modalities_the_case_lacks():
    case_id = _case_with_everything()
    at = AppTest.from_function(_draw, args=(str(SAMPLE), case_id, ["text", "tabular"]), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [h.value for h in at.subheader] == ["Clinical note", "Labs"]
    assert not at.get("plotly_chart")
    assert [i.value for i in at.info] == ["Not available for this case: Echo image, ECG."]
