"""The cohort view of the stored per-case attributions (app/cohort_attributions.py): the summary's numbers on
a hand-made table against the same numbers computed another way, note words case-folded, stripped of
punctuation and filtered by the cases that have them, the heatmap drawing exactly the summary, a survival
store as one group, and bad tables refused with a message."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app.cohort_attributions import (SUMMARY_COLUMNS, AttributionTableError, attribution_heatmap, is_share_part,
                                     part_label, share_units, summarise, summary_csv, top_items)
from explain.__main__ import main as explain_main
from explain.case import ExplainSettings
from explain.store import open_store, write_store
from explain.targets import SurvivalTarget
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
from tests.app.test_app import _app, _figure, _no_errors
from tests.app.test_browser_progressive import small_cohort
from tests.app.test_cohort_cancer import _values
from tests.test_sample_data import CANCER, CANCER_DEMO, DEMO as CARDIO_DEMO, SAMPLE


def _row(case_id: str, explained: str, part: str, item: str, value, method: str = "integrated_gradients") -> dict:
    return {"case_id": case_id, "explained_class": explained, "contrast_class": "", "part": part, "method": method,
            "item": item, "value": value, "start": "", "end": "", "observed": ""}


def _table() -> pd.DataFrame:
    """Five cases: c1-c3 predicted heart_failure, c4-c5 normal. Labs (one unmeasured), note words (mixed case,
    repeated, punctuation), ECG leads (one unrecorded), and the rows the view skips (modality importance,
    segments)."""
    rows = []
    labs = {"c1": (0.4, -0.1), "c2": (0.2, 0.3), "c3": (-0.3, ""), "c4": (0.1, -0.2), "c5": (-0.5, -0.4)}
    words = {"c1": [("Dyspnoea", 0.02), ("dyspnoea", 0.01), (".", 0.5), ("rare", 0.9)],
             "c2": [("DYSPNOEA", -0.01), ("edema", 0.03), (",", -0.2)],
             "c3": [("dyspnoea", 0.04), ("Edema", 0.05), ("--", 0.7)],
             "c4": [("dyspnoea", -0.02), ("normal", -0.01)],
             "c5": [("Normal", 0.02), ("dyspnoea", -0.03)]}
    leads = {"c1": (0.1, 0.2), "c2": (0.3, None), "c3": (-0.1, 0.1), "c4": (0.05, -0.05), "c5": (0.2, 0.0)}
    for case_id in labs:
        explained = "heart_failure" if case_id in ("c1", "c2", "c3") else "normal"
        rows.append(_row(case_id, explained, "modality_importance", "text", 0.3, "shapley"))
        for name, value in zip(("troponin_ng_l", "ldl_mg_dl"), labs[case_id]):
            rows.append(_row(case_id, explained, "lab", name, value))
        rows.append(_row(case_id, explained, "lab", "sex", 0.01, "withheld"))
        for word, value in words[case_id]:
            rows.append(_row(case_id, explained, "note_word", word, value, "layer_integrated_gradients"))
        for lead, value in zip(("I", "II"), leads[case_id]):
            rows.append(_row(case_id, explained, "ecg_lead", lead, value))
        rows.append(_row(case_id, explained, "ecg_segment", "top 1", 9.0))
    return pd.DataFrame(rows)


def _expected(table: pd.DataFrame, min_cases: int, group_of=None) -> dict:
    """{(part, group, item): (n, mean, share positive, mean |a|)} by plain Python loops."""
    per_case = defaultdict(float)
    for row in table.itertuples():
        if row.part in ("modality_importance", "ecg_segment") or row.value in ("", None):
            continue
        if isinstance(row.value, float) and np.isnan(row.value):
            continue
        item = row.item.lower() if row.part == "note_word" else row.item
        if row.part == "note_word" and not any(ch.isalnum() for ch in item):
            continue
        group = row.explained_class if group_of is None else group_of.get(row.case_id)
        if group is None:
            continue
        per_case[(row.part, group, item, row.case_id)] += float(row.value)
    cells = defaultdict(list)
    for (part, group, item, _), value in per_case.items():
        cells[(part, group, item)].append(value)
    return {key: (len(v), np.mean(v), np.mean([x > 0 for x in v]), np.mean(np.abs(v))) for key, v in cells.items()
            if key[0] != "note_word" or len(v) >= min_cases}


@pytest.mark.parametrize("min_cases", [1, 2, 3])
def test_the_summary_equals_the_numbers_computed_case_by_case(min_cases):
    table = _table()
    summary = summarise(table, min_cases=min_cases)
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    expected = _expected(table, min_cases)
    got = {(r.part, r.group, r.item): (r.n_cases, r.mean, r.share_positive, r.mean_abs) for r in summary.itertuples()}
    assert set(got) == set(expected)
    for key, values in expected.items():
        assert got[key][0] == values[0], key
        np.testing.assert_allclose(got[key][1:], values[1:], atol=1e-12, err_msg=str(key))
    assert not summary["part"].isin(["modality_importance", "ecg_segment"]).any()
    sizes = summary.groupby("group")["cases_in_group"].unique()
    assert sizes["heart_failure"].tolist() == [3] and sizes["normal"].tolist() == [2]


def test_note_words_are_case_folded_summed_per_case_and_need_min_cases():
    summary = summarise(_table(), min_cases=2).set_index(["part", "group", "item"])
    dyspnoea = summary.loc[("note_word", "heart_failure", "dyspnoea")]
    # c1: Dyspnoea 0.02 + dyspnoea 0.01, c2: DYSPNOEA -0.01, c3: 0.04
    assert dyspnoea["n_cases"] == 3
    assert dyspnoea["mean"] == pytest.approx((0.03 - 0.01 + 0.04) / 3)
    assert dyspnoea["share_positive"] == pytest.approx(2 / 3)
    assert dyspnoea["mean_abs"] == pytest.approx((0.03 + 0.01 + 0.04) / 3)
    words = set(summary.loc["note_word"].index.get_level_values("item"))
    assert "rare" not in words  # one case only
    assert not {".", ",", "--"} & words and "edema" in words and "normal" in words
    assert "rare" in set(summarise(_table(), min_cases=1)["item"])
    assert "edema" not in set(summarise(_table(), min_cases=3)["item"])
    # labs and leads are not filtered by min_cases; an unmeasured lab or unrecorded lead is not counted
    ldl = summary.loc[("lab", "heart_failure", "ldl_mg_dl")]
    assert ldl["n_cases"] == 2 and ldl["mean"] == pytest.approx(0.1)
    assert summary.loc[("ecg_lead", "heart_failure", "II"), "n_cases"] == 2


def test_items_are_ranked_by_signed_mean_within_part_and_group():
    summary = summarise(_table(), min_cases=1)
    for (part, group), rows in summary.groupby(["part", "group"]):
        assert rows["rank"].tolist() == list(range(1, len(rows) + 1)), (part, group)
        assert rows["mean"].is_monotonic_decreasing, (part, group)
    labs = summary[(summary["part"] == "lab") & (summary["group"] == "normal")]
    assert labs["item"].tolist() == ["sex", "troponin_ng_l", "ldl_mg_dl"]  # means 0.01, -0.2, -0.3
    assert labs.set_index("item").loc["sex", "method"] == "withheld"


def test_grouping_by_true_class_uses_the_labels_and_leaves_unlabelled_cases_out():
    table = _table()
    labels = pd.Series({"c1": "heart_failure", "c2": "normal", "c3": "normal", "c4": "normal"})  # c5 unlabelled
    summary = summarise(table, min_cases=1, groups=labels)
    expected = _expected(table, 1, labels.to_dict())
    got = {(r.part, r.group, r.item): (r.n_cases, r.mean, r.share_positive, r.mean_abs) for r in summary.itertuples()}
    assert set(got) == set(expected)
    for key, values in expected.items():
        np.testing.assert_allclose(got[key], values, atol=1e-12, err_msg=str(key))
    assert summary.groupby("group")["cases_in_group"].first().to_dict() == {"heart_failure": 1, "normal": 3}


def test_a_survival_store_is_one_group_and_other_modalities_keep_their_parts():
    quantity = "survival at 60 months"
    rows = []
    for case_id, gene, word in (("p1", 0.2, 0.01), ("p2", -0.1, 0.03), ("p3", 0.05, -0.02)):
        rows += [_row(case_id, quantity, "modality_importance", "genomics", 0.1, "shapley"),
                 _row(case_id, quantity, "genomics_value", "TP53", gene, "withheld"),
                 _row(case_id, quantity, "treatment_notes_word", "Chemo", word, "layer_integrated_gradients"),
                 _row(case_id, quantity, "treatment_notes_word", ";", 1.0, "layer_integrated_gradients"),
                 _row(case_id, quantity, "signal_segment", "top 1", 1.0)]
    summary = summarise(pd.DataFrame(rows), min_cases=3)
    assert set(summary["group"]) == {quantity}
    assert summary[["part", "item"]].values.tolist() == [["genomics_value", "TP53"], ["treatment_notes_word", "chemo"]]
    assert summary["mean"].tolist() == pytest.approx([0.05, 0.02 / 3])
    assert (summary["cases_in_group"] == 3).all()
    assert part_label("treatment_notes_word", {"treatment_notes": "Treatment notes"}) == "Treatment notes words"
    assert part_label("genomics_value") == "Genomics values" and part_label("lab") == "Labs and demographics"
    fig = attribution_heatmap(summary, "genomics_value", "(probability units)")
    assert list(fig.data[0].x) == [quantity] and list(fig.data[0].y) == ["TP53"]


def test_a_contrast_is_its_own_group():
    table = _table()
    table.loc[table["case_id"] == "c1", "contrast_class"] = "normal"
    groups = set(summarise(table, min_cases=1)["group"])
    assert groups == {"heart_failure", "heart_failure − normal", "normal"}


def test_the_heatmap_draws_the_summary_top_items_and_gaps():
    summary = summarise(_table(), min_cases=2)
    fig = attribution_heatmap(summary, "note_word", "(logit units)", top=1, order=["normal", "heart_failure"])
    trace = fig.data[0]
    assert list(trace.x) == ["normal", "heart_failure"]
    words = summary[summary["part"] == "note_word"]
    strongest = {g: rows.sort_values("mean_abs").iloc[-1]["item"] for g, rows in words.groupby("group")}
    assert set(trace.y) == set(strongest.values()) == set(top_items(summary, "note_word", 1))
    cells = words.set_index(["item", "group"])
    for i, item in enumerate(trace.y):
        for j, group in enumerate(trace.x):
            if (item, group) in cells.index:
                assert trace.z[i][j] == pytest.approx(cells.loc[(item, group), "mean"])
                assert trace.customdata[i][j][0] == cells.loc[(item, group), "n_cases"]
            else:
                assert trace.z[i][j] is None
    drawn = [abs(v) for row in trace.z for v in row if v is not None]
    assert trace.zmid == 0 and trace.zmax == -trace.zmin == pytest.approx(max(drawn))
    every = attribution_heatmap(summary, "lab", "(logit units)", top=50)
    labs = summary[summary["part"] == "lab"]
    assert len(every.data[0].y) == labs["item"].nunique()
    z = np.array([[np.nan if v is None else v for v in row] for row in every.data[0].z], dtype=float)
    assert np.nanmax(np.abs(z)) == pytest.approx(every.data[0].zmax)
    with pytest.raises(ValueError, match="no rows of part 'image'"):
        attribution_heatmap(summary, "image", "(logit units)")


def test_lead_shares_are_drawn_as_unsigned_shares_not_signed_attributions():
    """A lead's stored value is its share of the signal's |attribution| (explain.signal: >= 0, a case's leads
    sum to 1): a sequential scale from 0 and share units, not a diverging one around 0 in logit units."""
    table = _table()
    leads = table["part"] == "ecg_lead"
    table.loc[leads, "value"] = table.loc[leads, "value"].map(lambda v: v if v is None else abs(v))
    summary = summarise(table, min_cases=1)
    trace = attribution_heatmap(summary, "ecg_lead", share_units("ecg_lead"), top=5).data[0]
    drawn = [v for row in trace.z for v in row if v is not None]
    assert trace.zmin == 0 and trace.zmid is None and trace.zmax == pytest.approx(max(drawn))
    assert "positive in" not in trace.hovertemplate and "share of the ECG's |attribution|" in trace.hovertemplate
    assert is_share_part("ecg_lead") and is_share_part("rhythm_lead") and not is_share_part("lab")
    assert not is_share_part("note_word")
    assert share_units("rhythm_lead", {"rhythm": "Holter"}) == "(share of the Holter's |attribution|)"
    words = attribution_heatmap(summary, "note_word", "(logit units)").data[0]
    assert words.zmid == 0 and words.zmin == -words.zmax


def test_the_csv_round_trips_the_summary():
    summary = summarise(_table(), min_cases=1)
    back = pd.read_csv(io.BytesIO(summary_csv(summary)), keep_default_na=False)
    assert list(back.columns) == list(SUMMARY_COLUMNS) and len(back) == len(summary)
    np.testing.assert_allclose(back["mean"].to_numpy(float), summary["mean"].to_numpy(float), rtol=1e-12)


def test_bad_tables_are_refused_with_what_is_wrong():
    table = _table()
    with pytest.raises(AttributionTableError, match=r"lacks the column\(s\) \['value'\]"):
        summarise(table.drop(columns="value"))
    bad = table.copy()
    bad.loc[3, "value"] = "high"
    with pytest.raises(AttributionTableError, match="value column must hold numbers.*'high'"):
        summarise(bad)
    with pytest.raises(AttributionTableError, match="min_cases must be a whole number >= 1, got 0"):
        summarise(table, min_cases=0)
    empty = summarise(table.iloc[0:0])
    assert empty.empty and tuple(empty.columns) == SUMMARY_COLUMNS


# ------------------------------------------------------------------------------- the cohort page with a store
def _cardio_store(root: Path, attributions: bool) -> Path:
    args = ["cohort", "--checkpoint", str(CARDIO_DEMO), "--data", str(root / "cohort"), "--split", "all",
            "--out", str(root / ("with" if attributions else "without")), "--shard-size", "4"]
    if attributions:
        args += ["--attributions", "--n-steps", "4"]
    assert explain_main(args) == 0
    return root / ("with" if attributions else "without")


@pytest.fixture(scope="module")
def small_stores(tmp_path_factory):
    """8 test cases of the cardio sample in a cohort of their own, with a store written by ``python -m explain
    cohort --out STORE --attributions`` (4 steps) and one without attributions."""
    root = tmp_path_factory.mktemp("attr_page")
    small_cohort(root / "cohort", CohortReader(SAMPLE).ids("test")[:8])
    return root, _cardio_store(root, True), _cardio_store(root, False)


def _page(root: Path, store: Path, **state):
    at = _app(**{"settings.cohort": str(root / "cohort"), "settings.explanation_store": str(store), **state})
    at.run()
    at.switch_page("views/cohort_attention.py").run()
    _no_errors(at)
    return at


def _cells(at) -> dict:
    """{(item, group): (mean, n cases)} of the heatmap the page drew (its drawn cells only)."""
    trace = _figure(at, "cohort.attr_heatmap")["data"][0]
    custom = trace["customdata"]
    if isinstance(custom, dict):  # plotly's binary encoding
        custom = _values(custom).reshape([int(k) for k in str(custom["shape"]).split(",")])
    return {(item, group): (value, int(extra[0])) for item, row, customs in zip(trace["y"], trace["z"], custom)
            for group, value, extra in zip(trace["x"], row, customs) if value is not None}


def _table_shown(at) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "n_cases" in d.value.columns)


def test_the_cohort_page_shows_the_stored_attributions_by_predicted_and_true_class(small_stores):
    root, store, _ = small_stores
    table = open_store(store).attributions()
    ids = list(dict.fromkeys(table["case_id"]))
    assert len(ids) == 8
    at = _page(root, store, **{"cohort.attr_part": "lab", "cohort.attr_top": 50})
    assert not any("--attributions" in c.value for c in at.caption)
    expected = _expected(table, 1)  # labs: no min_cases filter
    cells = _cells(at)
    labs = {key for key in expected if key[0] == "lab"}
    assert {(item, group) for _, group, item in labs} == set(cells)
    for part, group, item in labs:
        value, n = cells[(item, group)]
        assert n == expected[(part, group, item)][0]
        assert value == pytest.approx(expected[(part, group, item)][1], abs=1e-9)
    labels = pd.read_csv(root / "cohort" / "cohort.csv").set_index("case_id")["label"]
    at.toggle(key="cohort.attr_by_true").set_value(True).run()
    _no_errors(at)
    truth = {case_id: labels[case_id] for case_id in ids}
    cells = _cells(at)
    assert {group for _, group in cells} == set(truth.values())
    for (part, group, item), (n, mean, _, _) in _expected(table, 1, truth).items():
        if part == "lab":
            assert cells[(item, group)][0] == pytest.approx(mean, abs=1e-9) and cells[(item, group)][1] == n


def test_the_page_ranks_case_folded_note_words_found_in_min_cases(small_stores):
    root, store, _ = small_stores
    table = open_store(store).attributions()
    at = _page(root, store, **{"cohort.attr_part": "note_word", "cohort.attr_min_cases": 2, "cohort.attr_top": 5})
    expected = {(item, group): (n, mean) for (part, group, item), (n, mean, _, _) in _expected(table, 2).items()
                if part == "note_word"}
    cells = _cells(at)
    assert cells and set(cells) <= set(expected)
    for key, (value, n) in cells.items():
        assert n == expected[key][0] >= 2 and value == pytest.approx(expected[key][1], abs=1e-9)
        assert key[0] == key[0].casefold() and any(ch.isalnum() for ch in key[0])
    shown = _table_shown(at)
    assert (shown["n_cases"] >= 2).all() and len(shown) == len(expected)
    at.number_input(key="cohort.attr_min_cases").set_value(100).run()  # no word is in 100 cases: labs and leads
    _no_errors(at)
    assert "note_word" not in at.radio(key="cohort.attr_part").options


def test_without_stored_attributions_the_page_says_how_to_write_them(small_stores):
    root, _, without = small_stores
    at = _page(root, without)
    assert any(f"python -m explain cohort --out {without} --attributions" in c.value for c in at.caption), \
        [c.value for c in at.caption]
    assert not [c for c in at.get("plotly_chart") if c.key == "cohort.attr_heatmap"]


def _survival_section(path: str, ids: list[str]) -> None:
    """The section alone, as the survival page draws it (an AppTest script: imports inside)."""
    from pathlib import Path

    from app.cohort_attributions import attribution_section
    from app.store_state import StoreLookup
    from explain.store import open_store

    attribution_section(StoreLookup(Path(path), open_store(path)), ids, survival=True,
                        titles={"genomics": "Genomics", "treatment_notes": "Treatment notes"})


def test_a_survival_store_is_one_group_of_its_quantity_in_probability_units(tmp_path):
    checkpoint = load_checkpoint(CANCER_DEMO, device="cpu")
    predictor, cohort = Predictor(checkpoint.model, checkpoint.tokenizer), CohortReader(CANCER)
    ids = cohort.ids("test")[:6]
    write_store(tmp_path / "store", predictor, cohort, ids, checkpoint_sha="c" * 64, cohort_sha="d" * 64,
                settings={"split": "test"}, shard_size=3, attributions=ExplainSettings("grad_cam", n_steps=4))
    table = open_store(tmp_path / "store").attributions()
    quantity = SurvivalTarget().label(checkpoint.model)
    at = AppTest.from_function(_survival_section, args=(str(tmp_path / "store"), ids), default_timeout=120)
    at.session_state["cohort.attr_part"] = "genomics_value"
    at.session_state["cohort.attr_top"] = 50
    at.run()
    _no_errors(at)
    parts = [p for p in dict.fromkeys(table["part"]) if p != "modality_importance"]
    assert at.radio(key="cohort.attr_part").options == [part_label(p, {"genomics": "Genomics",
                                                                        "treatment_notes": "Treatment notes"})
                                                         for p in parts]
    assert {"Genomics values", "Treatment notes words"} <= set(at.radio(key="cohort.attr_part").options)
    trace = _figure(at, "cohort.attr_heatmap")["data"][0]
    assert trace["x"] == [quantity] and "probability units" in trace["colorbar"]["title"]["text"]
    cells = _cells(at)
    expected = {(item, group): (n, mean) for (part, group, item), (n, mean, _, _) in _expected(table, 1).items()
                if part == "genomics_value"}
    assert set(cells) == set(expected)
    for key, (value, n) in cells.items():
        assert n == expected[key][0] and value == pytest.approx(expected[key][1], abs=1e-9)
    assert any("change in the predicted probability" in c.value for c in at.caption)


def _section_with_rows(path: str, ids: list[str], rows: dict) -> None:
    """The section over a store whose attribution rows are ``rows`` (an AppTest script: imports inside)."""
    from pathlib import Path

    import pandas as pd

    from app import cohort_attributions
    from app.store_state import StoreLookup
    from explain.store import open_store

    class Stored(StoreLookup):
        def attributions(self, case_ids):
            return pd.DataFrame(rows)

    cohort_attributions._stored_summary.clear()  # the same store path and stamp as the other runs
    cohort_attributions.attribution_section(Stored(Path(path), open_store(path)), ids, survival=False)


def test_bad_or_empty_stored_rows_are_a_message(small_stores):
    _, store, _ = small_stores
    ids = open_store(store).case_ids
    bad = {"case_id": [ids[0]], "explained_class": ["normal"], "part": ["lab"], "item": ["age"], "value": ["high"]}
    at = AppTest.from_function(_section_with_rows, args=(str(store), ids, bad), default_timeout=60).run()
    assert not at.exception
    assert [e.value for e in at.error] and "value column must hold numbers" in at.error[0].value
    empty = {"case_id": [ids[0]], "explained_class": ["normal"], "part": ["modality_importance"], "item": ["text"],
             "value": [0.2]}
    at = AppTest.from_function(_section_with_rows, args=(str(store), ids, empty), default_timeout=60).run()
    assert not at.exception and not at.error
    assert any("No stored attribution of these cases can be ranked" in i.value for i in at.info)
