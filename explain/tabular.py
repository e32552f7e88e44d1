"""Lab and demographic attributions for one case, in logit units of the explained class. Numeric values:
Integrated Gradients from the training mean (in the feature's units) to the measured value. Categorical
values: the change in the logit when the category is withheld. Unmeasured values are marked missing, never given a zero contribution."""

from __future__ import annotations

import math

import pandas as pd
import torch
from captum.attr import IntegratedGradients

from explain._forward import ModalityForward, attribution_mode, model_lock
from neurofusion.data.schema import Case
from neurofusion.models.model import tabular_normaliser


def explain_tabular(forward: ModalityForward, case: Case, target: int, *, n_steps: int = 50,
                    internal_batch_size: int | None = None) -> pd.DataFrame:
    """One row per feature: name, kind, value, unit, reference_range, outside_range, measured, score,
    method. ``score`` is NaN for unmeasured features."""
    if not forward.has("tabular"):
        raise ValueError("this case has no labs or demographics to explain")
    model, batch = forward.model, forward.batch
    specs = model.config.feature_specs
    numeric_specs = [f for f in specs if f.kind == "numeric"]
    categorical_specs = [f for f in specs if f.kind == "categorical"]
    numeric = batch.numeric  # (1, Fn) raw units
    normaliser = tabular_normaliser(model)
    # baseline: each feature at its training mean, in raw units (undoing a log-scale normalisation)
    mean = torch.where(normaliser.log_scale, torch.expm1(normaliser.mean), normaliser.mean)[None]
    baseline = torch.where(batch.numeric_mask, mean.to(numeric.dtype), numeric)
    with attribution_mode(model):
        attributions = IntegratedGradients(forward.numeric).attribute(
            numeric, baselines=baseline, target=target, n_steps=n_steps,
            internal_batch_size=internal_batch_size or n_steps)[0].detach().cpu().numpy()
    rows = []
    measured_mask = batch.numeric_mask[0].cpu().numpy()
    for j, spec in enumerate(numeric_specs):
        measured = bool(measured_mask[j])
        value = float(numeric[0, j]) if measured else float("nan")
        rows.append(_row(spec, value, measured, float(attributions[j]) if measured else float("nan"),
                         "integrated_gradients"))
    if categorical_specs:
        with model_lock(model), torch.no_grad():
            full = forward.numeric(numeric)[0, target]
            for j, spec in enumerate(categorical_specs):
                code = int(batch.categorical[0, j])
                if code == 0:
                    rows.append(_row(spec, None, False, float("nan"), "withheld"))
                    continue
                withheld = batch.categorical.clone()
                withheld[0, j] = 0
                out = model.encoders["tabular"](numeric, batch.numeric_mask, withheld).embedding
                rows.append(_row(spec, spec.categories[code - 1], True,
                                 float(full - forward.with_embedding("tabular", out)[0, target]), "withheld"))
    order = {f.name: i for i, f in enumerate(specs)}
    return pd.DataFrame(rows).sort_values("name", key=lambda s: s.map(order)).reset_index(drop=True)


def _row(spec, value, measured: bool, score: float, method: str) -> dict:
    outside = False
    if measured and isinstance(value, float) and not math.isnan(value):
        outside = (spec.ref_high is not None and value > spec.ref_high) or (spec.ref_low is not None and value < spec.ref_low)
    return {"name": spec.name, "kind": spec.kind, "value": value, "unit": spec.unit,
            "reference_range": spec.reference_range, "outside_range": outside, "measured": measured,
            "score": score, "method": method}
