"""The rater-agreement page's research export: one zip, built in memory, that holds what a paper's methods
and results need to be reproduced and checked: the agreement summary, every (case, rater) tau with both
rankings, the settings, and SHA-256 hashes of the checkpoint's and the cohort's files.

Files in the zip (CSV for spreadsheets, JSON for programs; the same numbers in both):
``agreement_summary.csv``, ``per_case.csv``, ``settings.csv``, ``agreement.json``, ``settings.json``.
The per-case columns follow the model's declared modalities (``per_case_columns``); a survival model's
"class" is the case's predicted risk group when the page grouped by risk group, and its scores are in units
of the explained quantity, which the settings name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from explain.case import ExplainSettings
from explain.cohort import CohortImportance
from neurofusion.data.schema import MODALITIES
from neurofusion.hashing import folder_hashes

EXPORT_FILES = ("agreement_summary.csv", "per_case.csv", "settings.csv", "agreement.json", "settings.json")
SUMMARY_COLUMNS = ("group", "class", "mean_tau", "ci_low", "ci_high", "n_cases", "reason")


def per_case_columns(names: tuple[str, ...] | list[str] = MODALITIES) -> tuple[str, ...]:
    """per_case.csv's columns for the declared modalities ``names`` (default cardio's four)."""
    return ("case_id", "rater", "label", "predicted", "tau", "n_compared",
            *(f"model_rank_{m}" for m in names), *(f"rater_rank_{m}" for m in names),
            *(f"model_score_{m}" for m in names))


PER_CASE_COLUMNS = per_case_columns()  # cardio's


def research_export(result: dict, importance: CohortImportance, rankings: pd.DataFrame, *, raters: str,
                    simulated: bool, settings: ExplainSettings, checkpoint_dir: str | Path, cohort_dir: str | Path,
                    rankings_name: str, rankings_bytes: bytes, created: datetime | None = None) -> bytes:
    """The zip's bytes. ``result`` is explain.cohort.clinician_agreement's output for ``importance`` and
    ``rankings`` (the rankings it compared); ``rankings_bytes`` the rankings file as read (bundled or
    uploaded), hashed so the export names exactly which rankings it used."""
    method = result["method"]
    created = created or datetime.now(timezone.utc)
    summary = _summary(result)
    per_case = _per_case(result["per_pair"], importance, rankings, method)
    config = {
        "created_utc": created.isoformat(timespec="seconds"),
        "importance_method": method,
        "importance_units": importance.explained,
        "modalities": list(importance.names),
        "explanation": {k: v for k, v in dataclasses.asdict(settings).items() if k != "target"},
        "raters": raters, "raters_simulated": simulated,
        "rankings": {"name": rankings_name, "sha256": hashlib.sha256(rankings_bytes).hexdigest(),
                     "rows_compared": int(len(rankings))},
        "checkpoint": folder_hashes(checkpoint_dir),
        "cohort": folder_hashes(cohort_dir),
        "kendall_tau": "tau-b (scipy.stats.kendalltau) over the modalities both sides rank; CIs are percentile "
                       "bootstraps over cases, a case's raters resampled together",
    }
    agreement = {"summary": summary.to_dict("records"),
                 "kendalls_w": result["inter_rater"]["kendalls_w"],
                 "cases_with_two_or_more_raters": result["inter_rater"]["cases_with_two_or_more_raters"],
                 "per_case": per_case.to_dict("records")}
    flat = [("created_utc", config["created_utc"]), ("importance_method", method),
            ("importance_units", importance.explained), ("modalities", ",".join(importance.names)),
            *((f"explanation.{k}", v) for k, v in config["explanation"].items()),
            ("raters", raters), ("raters_simulated", simulated),
            ("rankings.name", rankings_name), ("rankings.sha256", config["rankings"]["sha256"]),
            ("checkpoint.path", config["checkpoint"]["path"]), ("checkpoint.sha256", config["checkpoint"]["sha256"]),
            ("cohort.path", config["cohort"]["path"]), ("cohort.sha256", config["cohort"]["sha256"])]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("agreement_summary.csv", summary.to_csv(index=False))
        archive.writestr("per_case.csv", per_case.to_csv(index=False))
        archive.writestr("settings.csv", pd.DataFrame(flat, columns=["setting", "value"]).to_csv(index=False))
        archive.writestr("agreement.json", json.dumps(_jsonable(agreement), indent=1, allow_nan=False))
        archive.writestr("settings.json", json.dumps(_jsonable(config), indent=1, allow_nan=False))
    return buffer.getvalue()


def _summary(result: dict) -> pd.DataFrame:
    """Rows: every class's and all cases' mean tau (model vs raters), then the inter-rater ceiling."""
    rows = [{"group": "model_vs_raters", "class": str(name), "mean_tau": row["mean"], "ci_low": row["ci_low"],
             "ci_high": row["ci_high"], "n_cases": row["n_cases"], "reason": row["reason"]}
            for name, row in result["summary"].iterrows()]
    ceiling = result["inter_rater"]["mean_pairwise_tau"]
    rows.append({"group": "inter_rater", "class": "all", "mean_tau": ceiling["mean"], "ci_low": ceiling["ci_low"],
                 "ci_high": ceiling["ci_high"], "n_cases": ceiling["n_cases"], "reason": ceiling["reason"]})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _per_case(per_pair: pd.DataFrame, importance: CohortImportance, rankings: pd.DataFrame,
              method: str) -> pd.DataFrame:
    scores = importance.method(method)
    model_ranks = importance.ranks(method)
    table = importance.table.set_index("case_id")
    names = list(importance.names)
    rows = []
    for _, pair in per_pair.iterrows():
        case_id, rater = pair["case_id"], pair["rater"]
        ranked = rankings[(rankings["case_id"] == case_id) & (rankings["rater"] == rater)].iloc[0]
        rows.append({
            "case_id": case_id, "rater": rater, "label": pair["label"], "predicted": table.loc[case_id, "predicted"],
            "tau": pair["tau"], "n_compared": pair["n_compared"],
            **{f"model_rank_{m}": model_ranks.loc[case_id, m] for m in names},
            **{f"rater_rank_{m}": ranked[m] for m in names},
            **{f"model_score_{m}": scores.loc[case_id, m] for m in names},
        })
    return pd.DataFrame(rows, columns=list(per_case_columns(names)))


def _jsonable(value):
    """NaN / pandas NA -> null, numpy scalars -> Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value
