"""explain/timeline.py on a small generated ICU cohort and a tiny NeuroFusion with random weights (the
configs/icu_demo.yaml sizes): the risk trajectory is Predictor.predict one hour at a time; an hour's
explanation does not change, to the bit, when everything recorded after that hour is rewritten; the
Shapley values of the risk add up to risk(all present) - risk(none present) at every hour and agree with
the permutation definition; a planted model whose vitals count only once their measured masks cover more
than half of the 48-h window (t > 24 h) shows the shift in the importance over time; the vitals panel on the
clock; figure 2C equals a direct computation; the command line reports every requested hour."""

from __future__ import annotations

import gzip
import itertools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from explain.__main__ import main
from explain.case import ExplainSettings
from explain.timeline import (
    OUTCOME_GROUPS,
    PAPER_FIGURE_2C,
    cohort_over_time,
    explain_hours,
    hour_summary,
    importance_over_time,
    risk_trajectory,
    split_hours,
    trajectory_hours,
    vitals_over_time,
)
from neurofusion.checkpoint import save_checkpoint
from neurofusion.config import load_experiment
from neurofusion.data.__main__ import main as data_main
from neurofusion.data.dataset import Collate, prepare_case
from neurofusion.data.timed import TimedCohortReader
from neurofusion.data.tokenizer import train_wordpiece
from neurofusion.inference import Predictor
from neurofusion.models.model import Encoded, ModelOutput, NeuroFusion, build_model, tabular_normalisers
from neurofusion.train import configure_model

SETTINGS = ExplainSettings(target=1, n_steps=4)
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "icu_demo.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("icu") / "cohort"
    assert data_main(["generate", "--task", "icu", "--n", "40", "--seed", "11", "--out", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def reader(cohort_dir) -> TimedCohortReader:
    return TimedCohortReader(cohort_dir)


@pytest.fixture(scope="module")
def predictor(reader) -> Predictor:
    """A NeuroFusion of the demo config's sizes with random weights, its tokenizer fitted to the cohort's
    notes and its lab / demographic normalisation to the train split."""
    torch.manual_seed(0)
    config = configure_model(load_experiment(DEMO_CONFIG).model, reader)
    tokenizer = train_wordpiece(reader.notes["text"].tolist(), config.text.vocab_size)
    config.text.vocab_size = len(tokenizer)
    model = build_model(config)
    stacked = Collate()([prepare_case(reader[i], config.input_spec()) for i in reader.ids("train")])
    for name, normaliser in tabular_normalisers(model).items():
        normaliser.fit(stacked.inputs[name]["numeric"], stacked.inputs[name]["numeric_mask"])
    return Predictor(model.eval(), tokenizer, "cpu")


def _long_stay(reader: TimedCohortReader, hours: float = 48.0, split: str | None = None) -> str:
    """A stay lasting more than ``hours`` with vitals, labs and notes all recorded by 12 h."""
    table = reader.table[(reader.table["hour"] == 12.0) & reader.table["has_vitals"] & reader.table["has_labs"]
                         & reader.table["has_notes"]]
    stays = reader.stays.loc[table["stay_id"]]
    stays = stays[stays["stay_hours"] > hours]
    if split is not None:
        stays = stays[stays["split"] == split]
    assert len(stays), f"the generated cohort has no stay longer than {hours} h with every modality by 12 h"
    return stays.index[0]


def test_trajectory_is_predict_one_hour_at_a_time(predictor, reader):
    stay_id = _long_stay(reader)
    trajectory = risk_trajectory(predictor, reader, stay_id, step_h=6.0)
    end = reader.stays.loc[stay_id, "stay_hours"]
    np.testing.assert_array_equal(trajectory.hours, np.arange(0, end, 6.0))
    np.testing.assert_array_equal(trajectory_hours(reader, stay_id, 6.0), trajectory.hours)
    one_by_one = np.array([predictor.predict([reader.at(stay_id, t)])[1][0, 1] for t in trajectory.hours])
    np.testing.assert_allclose(trajectory.risk, one_by_one, rtol=0, atol=1e-6)
    assert trajectory.labels == [reader.label_at(stay_id, t) for t in trajectory.hours]
    assert trajectory.names == ("vitals", "labs", "notes", "demographics")
    expected = np.array([[reader.at(stay_id, t).value(m) is not None for m in trajectory.names]
                         for t in trajectory.hours])
    np.testing.assert_array_equal(trajectory.present, expected)
    assert trajectory.present[-1].all() and trajectory.stay_hours == end
    chosen = risk_trajectory(predictor, reader, stay_id, [12, 0, 6])
    np.testing.assert_array_equal(chosen.hours, [0, 6, 12])
    np.testing.assert_allclose(chosen.risk, one_by_one[[0, 1, 2]], atol=1e-6)


def test_hours_outside_the_stay_are_refused_with_the_reason(predictor, reader):
    stay_id = _long_stay(reader)
    end = reader.stays.loc[stay_id, "stay_hours"]
    inside, outside = split_hours(reader, stay_id, [0, end, end + 5, 12])
    assert inside == [0.0, 12.0] and set(outside) == {end, end + 5}
    assert f"the stay ended at {end:.1f} h" in outside[end]
    with pytest.raises(ValueError, match="not scored"):
        risk_trajectory(predictor, reader, stay_id, [6, end + 1])
    with pytest.raises(ValueError, match="not scored"):
        explain_hours(predictor, reader, stay_id, [6, end + 1])  # refused before any hour is explained
    with pytest.raises(ValueError, match=">= 0"):
        split_hours(reader, stay_id, [-1])
    with pytest.raises(ValueError, match="settings.target must be 1"):
        explain_hours(predictor, reader, stay_id, [6], ExplainSettings(target=0))
    with pytest.raises(KeyError, match="NOPE"):
        trajectory_hours(reader, "NOPE")


@pytest.fixture(scope="module")
def explained(predictor, reader):
    stay_id = _long_stay(reader)
    return stay_id, list(explain_hours(predictor, reader, stay_id, [0, 12, 36], SETTINGS))


def test_shapley_over_time_adds_up_and_is_the_permutation_definition(predictor, reader, explained):
    stay_id, items = explained
    trajectory = risk_trajectory(predictor, reader, stay_id, [0, 12, 36])
    frame = importance_over_time(items)
    assert list(frame["hour"].unique()) == [0.0, 12.0, 36.0] and len(frame) == 12
    for k, item in enumerate(items):
        importance = item.explanation.importance
        risk = item.explanation.probabilities[1]
        assert risk == pytest.approx(trajectory.risk[k], abs=1e-6)
        rows = frame[frame["hour"] == item.hour]
        assert rows["shapley"].sum() == pytest.approx(risk - importance.probability_none[0], abs=1e-6)
        assert rows.loc[rows["present"], "share"].sum() == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_array_equal(rows["present"].to_numpy(), trajectory.present[k])
        np.testing.assert_allclose(rows["shapley"], _permutation_shapley(predictor, item.case), atol=1e-6)
    assert frame.loc[frame["hour"] == 0, "title"].tolist() == ["Vital signs", "Labs", "Nursing notes", "Demographics"]


def _permutation_shapley(predictor: Predictor, case) -> np.ndarray:
    """(4,) Shapley values of the risk by their definition: each modality's marginal contribution averaged
    over the 24 orders of the 4 modalities, the model run once per presence mask."""
    batch = predictor.batch([case])
    value = {}
    with torch.no_grad():
        for subset in itertools.product([False, True], repeat=4):
            mask = torch.tensor([subset]) & batch.present
            value[subset] = float(predictor.model(batch, present=mask).probabilities[0, 1])
    shapley = np.zeros(4)
    for order in itertools.permutations(range(4)):
        for j in range(4):
            before = tuple(m in order[:order.index(j)] for m in range(4))
            shapley[j] += value[tuple(b or m == j for m, b in enumerate(before))] - value[before]
    return shapley / 24


def _rewrite_after(source, target, t: float) -> None:
    """Copy the cohort folder, then change every vitals and labs value recorded after hour t and add a note
    after t to every stay that lasts past it: nothing the model may see at t changes."""
    shutil.copytree(source, target)
    for name in ("vitals.csv.gz", "labs.csv"):
        path = target / name
        frame = pd.read_csv(path, dtype={"case_id": str})
        later = frame["time"] > t
        frame.loc[later, "value"] = (frame.loc[later, "value"] * 1.7 + 13).round(2)
        if name.endswith(".gz"):
            with gzip.open(path, "wt", newline="") as out:
                frame.to_csv(out, index=False)
        else:
            frame.to_csv(path, index=False)
    notes = pd.read_csv(target / "notes.csv", dtype={"case_id": str})
    stays = pd.read_csv(target / "cohort.csv", dtype={"case_id": str}).set_index("case_id")["stay_hours"]
    extra = [{"case_id": s, "time": round(min(t + 0.5, (t + end) / 2), 4),
              "text": "Sudden cardiac arrest, CPR started, increasing pressor requirement."}
             for s, end in stays.items() if end > t]
    notes = pd.concat([notes, pd.DataFrame(extra)]).sort_values(["case_id", "time"], kind="stable")
    notes.to_csv(target / "notes.csv", index=False)


def test_an_hours_explanation_ignores_everything_recorded_after_it(predictor, reader, cohort_dir, tmp_path):
    t = 12.0
    stay_id = _long_stay(reader)
    _rewrite_after(cohort_dir, tmp_path / "rewritten", t)
    changed = TimedCohortReader(tmp_path / "rewritten")
    assert not np.array_equal(changed.vitals_signal(stay_id, 30.0).data, reader.vitals_signal(stay_id, 30.0).data)
    assert changed.notes_text(stay_id, 30.0) != reader.notes_text(stay_id, 30.0)
    (before,) = explain_hours(predictor, reader, stay_id, [t], SETTINGS)
    (after,) = explain_hours(predictor, changed, stay_id, [t], SETTINGS)
    a, b = before.explanation, after.explanation
    assert np.array_equal(a.probabilities, b.probabilities)
    assert np.array_equal(a.cross_attention, b.cross_attention)
    for field in ("shapley", "subset_probability", "attention"):
        assert np.array_equal(getattr(a.importance, field), getattr(b.importance, field))
    assert np.array_equal(a.panels["vitals"].attributions, b.panels["vitals"].attributions)
    assert np.array_equal(a.panels["notes"].token_scores, b.panels["notes"].token_scores)
    for name in ("labs", "demographics"):
        pd.testing.assert_frame_equal(a.panels[name], b.panels[name], check_exact=True)
    pd.testing.assert_frame_equal(vitals_over_time(a, reader, stay_id, t), vitals_over_time(b, changed, stay_id, t),
                                  check_exact=True)
    assert json.dumps(hour_summary(before)) == json.dumps(hour_summary(after))


def test_vitals_panel_on_the_clock(reader, explained):
    stay_id, items = explained
    item = items[1]  # 12 h
    frame = vitals_over_time(item.explanation, reader, stay_id, item.hour)
    panel = item.explanation.panels["vitals"]
    variables = list(reader.vital_variables)
    assert frame["time"].min() == pytest.approx(0.0, abs=1e-9) and frame["time"].max() == pytest.approx(12.0)
    assert len(frame) == 145 * len(variables)  # the steps ending at 0, 5 min, ..., 12 h
    by_variable = frame.groupby("variable")["attribution"].sum()
    # steps before admission hold the baseline (zeros), so their attribution is 0 and nothing is lost
    for j, v in enumerate(variables):
        expected = panel.attributions[j].sum() + panel.attributions[len(variables) + j].sum()
        assert by_variable[v] == pytest.approx(expected, abs=1e-6)
    last = frame[frame["time"] == frame["time"].max()]
    assert last["temporal_attention"].iloc[0] == pytest.approx(panel.attention[-1])
    measured = frame[frame["variable"] == variables[0]]["measured"].to_numpy()
    signal = reader.vitals_signal(stay_id, 12.0).data[len(variables), -145:] > 0.5
    np.testing.assert_array_equal(measured, signal)
    assert vitals_over_time(items[0].explanation, reader, stay_id, 0.0).empty  # nothing recorded at admission
    summary = hour_summary(item)["attributions"]["vitals"]
    magnitude = frame.groupby("variable")["attribution"].apply(lambda a: a.abs().sum())
    assert summary["top_variables"][0]["variable"] == magnitude.idxmax()
    assert 0 <= summary["top_period"]["start_h"] < summary["top_period"]["end_h"] <= 12.0 + 1e-9


class _VitalsAfter24h(NeuroFusion):
    """Planted: the vitals count only when their measured masks cover more than half of the 48-h window
    (true from about 24 h into a monitored stay), and then add 3 to the death logit; otherwise the model
    treats them as missing, so their Shapley value is exactly 0."""

    def encode(self, batch):
        encoded = super().encode(batch)
        signal = batch.inputs["vitals"]["signal"]  # (B, 2V, T): the measured masks are the last V channels
        covered = (signal[:, signal.shape[1] // 2:] > 0.5).any(1).float().mean(1) > 0.5  # (B,)
        present = encoded.present.clone()
        present[:, self.names.index("vitals")] &= covered
        return Encoded(encoded.vectors, present, encoded.spatial_attention, encoded.temporal_attention, encoded.maps)

    def fuse(self, encoded, present=None):
        out = super().fuse(encoded, present)
        vitals = out.present[:, self.names.index("vitals")].float()
        logits = out.logits + 3.0 * torch.stack([torch.zeros_like(vitals), vitals], 1)
        return ModelOutput(logits=logits, probabilities=torch.softmax(logits, -1), present=out.present,
                           heads=out.heads, cross_attention=out.cross_attention, modality_tokens=out.modality_tokens,
                           fused=out.fused, spatial_attention=out.spatial_attention,
                           temporal_attention=out.temporal_attention, attention_maps=out.attention_maps)


def test_planted_vitals_after_24h_shift_the_importance(predictor, reader):
    planted = _VitalsAfter24h(predictor.model.config)
    planted.load_state_dict(predictor.model.state_dict())
    predictor = Predictor(planted.eval(), predictor.tokenizer, "cpu")
    stay_id = _long_stay(reader, 42.0)
    hours = [6, 12, 18, 30, 36, 42]
    frame = importance_over_time(list(explain_hours(predictor, reader, stay_id, hours, SETTINGS)))
    vitals = frame[frame["modality"] == "vitals"].set_index("hour")
    assert vitals["present"].all()
    for hour in (6, 12, 18):
        assert vitals.loc[hour, "shapley"] == 0.0 and vitals.loc[hour, "share"] == 0.0
    for hour in (30, 36, 42):
        assert vitals.loc[hour, "shapley"] > 0.2 and vitals.loc[hour, "share"] > 0.5
    top = frame[frame["hour"] >= 30].loc[lambda f: f.groupby("hour")["share"].idxmax()]
    assert (top["modality"] == "vitals").all()


def test_figure_2c_is_the_direct_computation(predictor, reader):
    hours = [0.0, 12.0]
    figure = cohort_over_time(predictor, reader, "test", hours, batch_size=5)
    names = ["vitals", "labs", "notes", "demographics"]
    assert len(figure) == len(hours) * len(OUTCOME_GROUPS) * len(names)
    assert (figure["n"] > 0).all(), "both outcome groups should have samples at 0 and 12 h in the generated cohort"
    samples = reader.table[(reader.table["split"] == "test") & reader.table["hour"].isin(hours)]
    for hour in hours:
        for group, died in zip(OUTCOME_GROUPS, (1, 0)):
            ended = reader.stays.loc[samples["stay_id"], "died"].to_numpy()
            chosen = samples[(samples["hour"] == hour) & (ended == died)]
            rows = figure[(figure["hour"] == hour) & (figure["outcome"] == group)].set_index("modality")
            assert (rows["n"] == len(chosen)).all()
            if not len(chosen):
                assert rows["attention"].isna().all()
                continue
            attention, share = [], []
            for stay, t in zip(chosen["stay_id"], chosen["hour"]):
                case = reader.at(stay, t)
                batch = predictor.batch([case])
                present = batch.present[0].numpy()
                if not present.any():  # nothing recorded: no attention to share out, left out of the means
                    continue
                with torch.no_grad():
                    output = predictor.model(batch)
                mean = output.cross_attention[0].mean(0).numpy()  # (M, M) rows = query
                received = mean[present].mean(0) * present
                attention.append(received / received.sum())
                shapley = _permutation_shapley(predictor, case)
                share.append(np.abs(shapley) / np.abs(shapley).sum())
            assert (rows["n_explained"] == len(attention)).all()
            np.testing.assert_allclose(rows.loc[names, "attention"], np.mean(attention, 0), atol=1e-6)
            np.testing.assert_allclose(rows.loc[names, "share"], np.mean(share, 0), atol=1e-6)
            assert rows.loc["vitals", "n_present"] == int(chosen["has_vitals"].sum())
    totals = figure.dropna().groupby(["hour", "outcome"])["attention"].sum()
    np.testing.assert_allclose(totals, 1.0, atol=1e-6)
    assert PAPER_FIGURE_2C[0.0]["demographics"] == 0.43 and PAPER_FIGURE_2C[36.0]["vitals"] == 0.58


@pytest.fixture(scope="module")
def checkpoint(predictor, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "icu", predictor.model, predictor.tokenizer)


def test_cli_reports_every_requested_hour(checkpoint, reader, capsys):
    stay_id = _long_stay(reader)
    end = reader.stays.loc[stay_id, "stay_hours"]
    late = math.ceil(end) + 10
    base = ["case", "--checkpoint", str(checkpoint), "--data", str(reader.root), "--n-steps", "4", "--device", "cpu"]
    assert main(base + ["--case-id", stay_id, "--hours", f"0,12,{late}", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [e["hour"] for e in result["hours"]] == [0, 12, late]
    assert [e["scored"] for e in result["hours"]] == [True, True, False]
    assert result["hours"][2]["message"] == f"not scored (the stay ended at {end:.1f} h)"
    at12 = result["hours"][1]
    assert at12["sample_id"] == f"{stay_id}@12h" and set(at12["attributions"]) == {"vitals", "labs", "notes",
                                                                                   "demographics"}
    assert sum(at12["shapley"].values()) == pytest.approx(at12["risk"] - at12["risk_nothing_recorded"], abs=1e-5)
    assert sum(at12["cross_attention"]["notes"].values()) == pytest.approx(1.0, abs=1e-5)
    assert main(base + ["--case-id", f"{stay_id}@12h", "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert len(single["hours"]) == 1 and single["hours"][0]["risk"] == pytest.approx(at12["risk"], abs=1e-6)
    assert main(base + ["--case-id", stay_id, "--hours", f"12,{late}"]) == 0
    text = capsys.readouterr().out
    assert f"hour 12: risk {at12['risk']:.3f}" in text and f"hour {late}: not scored" in text
    assert main(base + ["--case-id", stay_id]) == 2
    assert "give --hours" in capsys.readouterr().err
    assert main(base + ["--case-id", f"{stay_id}@12h", "--hours", "6"]) == 2
    assert "sample id" in capsys.readouterr().err


def test_cli_cohort_adds_figure_2c(checkpoint, reader, capsys):
    args = ["cohort", "--checkpoint", str(checkpoint), "--data", str(reader.root), "--device", "cpu"]
    assert main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    hours = sorted(reader.table.loc[reader.table["split"] == "test", "hour"].unique())
    assert sorted({row["hour"] for row in result["figure_2c"]}) == hours
    assert result["paper_figure_2c"]["36"]["vitals"] == 0.58
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "figure 2C" in text and "0.43" in text and "died in ICU" in text
