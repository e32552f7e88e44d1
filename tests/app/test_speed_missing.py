"""The missing-modality page's rate sliders read from predictions cached once per cohort (issue 10, speed):
what the page shows at a rate and seed is exactly what a direct pass with that seeded mask gives."""

from __future__ import annotations

import base64
import json

import numpy as np

import pytest

from explain.ablation import missing_rate_study
from tests.app.test_app import _app, _no_errors


def _bars(at) -> dict[str, list[float]]:
    spec = json.loads(next(c for c in at.get("plotly_chart") if "missing.metrics" in c.proto.id).proto.spec)
    return {trace["name"]: _values(trace["y"]) for trace in spec["data"]}


def _values(y) -> list[float]:
    if isinstance(y, dict):  # plotly's binary encoding
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).tolist()
    return list(y)


def test_rate_slider_shows_the_direct_studys_numbers():
    at = _app().run()
    at.switch_page("views/missing.py").run()
    _no_errors(at)
    at.slider(key="missing.rate_signal").set_value(40)
    at.slider(key="missing.rate_text").set_value(70)
    at.number_input(key="missing.seed").set_value(5).run()
    _no_errors(at)
    ctx = at.session_state["app.context"]
    ids = ctx.readable_ids(ctx.split_ids(at.session_state["missing.split"]))
    direct = missing_rate_study(ctx.predictor, [ctx.cohort[i] for i in ids], {"signal": 0.4, "text": 0.7},
                                n_bootstrap=500, seed=5)
    shown = _bars(at)["with the rates above"]
    assert shown == pytest.approx([direct["accuracy"]["value"], direct["macro_f1"]["value"]], abs=1e-9)
    observed = next(c.value for c in at.caption if c.value.startswith("Share of cases"))
    assert f"ECG {direct['observed_share']['signal']:.0%}" in observed
    # another step, then back: the page follows the sliders, not a stale entry
    at.slider(key="missing.rate_text").set_value(0).run()
    assert _bars(at)["with the rates above"] != shown
    at.slider(key="missing.rate_text").set_value(70).run()
    assert _bars(at)["with the rates above"] == pytest.approx(shown, abs=1e-12)
