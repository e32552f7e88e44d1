"""Lab and demographic attributions for one case, in logit units of the explained class. Numeric values:
Integrated Gradients from the training mean (in the feature's units) to the measured value. Categorical
values: the change in the logit when the category is withheld. Unmeasured values are marked missing, never given a zero contribution.

Every declared tabular modality is explained on its own features (``modality=``, default the first): e.g. a
50-gene mutation panel gets one row per gene (categorical: mutated / wild type, each scored by withholding
it), a clinical row one per field."""

from __future__ import annotations

import math

import pandas as pd
import torch

from explain._forward import ModalityForward, model_lock
from explain.integrated import Cancel, Completeness, Integration, IntegrationPath, Prepared, integrate
from neurofusion.data.schema import Case
from neurofusion.models.model import tabular_normalisers


def explain_tabular(forward: ModalityForward, case: Case, target: int, *, n_steps: int = 50,
                    internal_batch_size: int | None = None, modality: str | None = None,
                    integration: Integration | None = None, cancel: Cancel = None) -> pd.DataFrame:
    """One row per feature of tabular modality ``modality`` (default the first declared): name, kind,
    value, unit, reference_range, outside_range, measured, score, method. ``score`` is NaN for unmeasured
    features. ``case`` is the explained case (its values are read from the batch). ``integration``: how the
    numeric path is integrated (default exactly ``n_steps`` Gauss-Legendre steps)."""
    prepared = tabular_path(forward, case, target, modality)
    if prepared.path is None:  # no numeric feature: nothing to integrate
        return prepared.finish(None, None)
    integration = integration or Integration(n_steps=n_steps, internal_batch_size=internal_batch_size)
    ((_, attributions, completeness),) = integrate(forward, [prepared.path], target, integration, cancel)
    return prepared.finish(attributions, completeness)


def tabular_path(forward: ModalityForward, case: Case, target: int, modality: str | None = None) -> Prepared:
    """The Integrated Gradients path of a tabular modality's numeric values (training mean to the measured
    values, in raw units) and how its attributions, with the withheld categories, become the table. A
    modality without numeric features has no path (``path`` None; ``finish(None, None)`` gives its table)."""
    name = forward.first("tabular") if modality is None else modality
    if name is None or not forward.has(name):
        raise ValueError("this case has no labs or demographics to explain" if name in (None, "tabular")
                         else f"this case has no {name} values to explain")
    model = forward.model
    tensors = forward.inputs(name)
    specs = model.config.input_spec().features_of(name)
    numeric_specs = [f for f in specs if f.kind == "numeric"]
    numeric, numeric_mask = tensors["numeric"], tensors["numeric_mask"]  # (1, Fn) raw values, (1, Fn) measured
    path = None
    if numeric_specs:
        normaliser = tabular_normalisers(model)[name]
        # baseline: each feature at its training mean, in raw units (undoing a log-scale normalisation)
        mean = torch.where(normaliser.log_scale, torch.expm1(normaliser.mean), normaliser.mean)[None]
        baseline = torch.where(numeric_mask, mean.to(numeric.dtype), numeric)
        path = IntegrationPath(name, "tabular", numeric, baseline, lambda x: forward.tabular_embedding(name, x))

    def finish(attributions: torch.Tensor | None, completeness: Completeness | None) -> pd.DataFrame:
        scores = None if attributions is None else attributions[0].cpu().numpy()
        table = _table(forward, name, specs, scores, target)
        table.attrs["completeness"] = completeness if bool(numeric_mask.any()) else None
        return table

    return Prepared(path, finish)


def _table(forward: ModalityForward, name: str, specs, attributions, target: int) -> pd.DataFrame:
    """The rows: numeric features with their attributions, categorical ones scored by withholding them."""
    tensors = forward.inputs(name)
    numeric, numeric_mask, categorical = tensors["numeric"], tensors["numeric_mask"], tensors["categorical"]
    numeric_specs = [f for f in specs if f.kind == "numeric"]
    categorical_specs = [f for f in specs if f.kind == "categorical"]
    rows = []
    measured_mask = numeric_mask[0].cpu().numpy()
    for j, spec in enumerate(numeric_specs):
        measured = bool(measured_mask[j])
        value = float(numeric[0, j]) if measured else float("nan")
        rows.append(_row(spec, value, measured, float(attributions[j]) if measured else float("nan"),
                         "integrated_gradients"))
    if categorical_specs:
        with model_lock(forward.model), torch.no_grad():
            full = forward.numeric(numeric, name=name)[0, target]
            for j, spec in enumerate(categorical_specs):
                code = int(categorical[0, j])
                if code == 0:
                    rows.append(_row(spec, None, False, float("nan"), "withheld"))
                    continue
                withheld = categorical.clone()
                withheld[0, j] = 0
                out = forward.tabular_embedding(name, numeric, withheld)
                rows.append(_row(spec, spec.categories[code - 1], True,
                                 float(full - forward.with_embedding(name, out)[0, target]), "withheld"))
    order = {f.name: i for i, f in enumerate(specs)}
    return pd.DataFrame(rows).sort_values("name", key=lambda s: s.map(order)).reset_index(drop=True)


def _row(spec, value, measured: bool, score: float, method: str) -> dict:
    outside = False
    if measured and isinstance(value, float) and not math.isnan(value):
        outside = (spec.ref_high is not None and value > spec.ref_high) or (spec.ref_low is not None and value < spec.ref_low)
    return {"name": spec.name, "kind": spec.kind, "value": value, "unit": spec.unit,
            "reference_range": spec.reference_range, "outside_range": outside, "measured": measured,
            "score": score, "method": method}
