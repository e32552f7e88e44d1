"""Tabular attributions: missing values are marked missing, IG measured from the training mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explain._forward import ModalityForward
from explain.tabular import explain_tabular
from neurofusion.inference import Predictor
from neurofusion.models import tabular_normaliser


def test_missing_labs_are_marked_missing_not_zero(tiny_batch, tiny_tokenizer, tiny_cohort):
    model, _ = tiny_batch
    predictor = Predictor(model, tiny_tokenizer)
    batch_all = predictor.batch([tiny_cohort[i] for i in range(40)])
    tabular_normaliser(model).fit(batch_all.numeric, batch_all.numeric_mask)
    case = next(c for c in tiny_cohort if c.tabular is not None
                and any(isinstance(v, float) and math.isnan(v) for v in c.tabular.values()))
    batch = predictor.batch([case])
    table = explain_tabular(ModalityForward(model, batch), case, target=0, n_steps=32)
    assert table["name"].tolist() == list(case.tabular)
    missing = table[~table["measured"]]
    assert len(missing) > 0 and missing["score"].isna().all()
    assert table[table["measured"]]["score"].notna().all()
    troponin = table.set_index("name").loc["troponin_ng_l"]
    if troponin["measured"]:
        assert troponin["outside_range"] == (troponin["value"] > 26)
    # IG completeness over the numeric features: sum = f(x) - f(x with measured values at the training mean)
    numeric = table[(table["kind"] == "numeric") & table["measured"]]["score"].sum()
    forward = ModalityForward(model, batch)
    normaliser = tabular_normaliser(model)
    mean = torch.where(normaliser.log_scale, torch.expm1(normaliser.mean), normaliser.mean)[None]
    with torch.no_grad():
        gap = forward.numeric(batch.numeric)[0, 0] - forward.numeric(torch.where(batch.numeric_mask, mean, batch.numeric))[0, 0]
    assert numeric == pytest.approx(float(gap), abs=2e-3)
    sex = table.set_index("name").loc["sex"]
    assert sex["method"] == "withheld" and sex["value"] in ("F", "M") and np.isfinite(sex["score"])
