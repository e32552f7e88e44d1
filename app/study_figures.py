"""Tables and figures of the "Expert studies" page (pure: data -> DataFrame / plotly Figure): which cases a
study would take (per class and missingness pattern), a study's settings in words, and rater progress."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from app.figures import finish, pretty
from neurofusion.data.cohort import CohortReader
from neurofusion.studies import Rater, Study

# Mid-tone colours that keep their contrast on Streamlit's light and dark backgrounds.
PROGRESS_COLORS = {"ranked": "#16a34a", "skipped": "#f59e0b", "to_do": "#94a3b8"}
PROGRESS_LABELS = {"ranked": "Ranked", "skipped": "Skipped", "to_do": "To do"}
TRANSPARENT = "rgba(0,0,0,0)"


def missingness_pattern(present: Mapping[str, bool], titles: Mapping[str, str]) -> str:
    """A case's missingness pattern in words: "complete", or "without Echo image, ECG" (declared order)."""
    missing = [titles.get(m, m) for m, has in present.items() if not has]
    return "complete" if not missing else "without " + ", ".join(missing)


def case_strata(cohort: CohortReader, case_ids: Sequence[str], titles: Mapping[str, str]) -> pd.DataFrame:
    """One row per case of ``case_ids``: case_id, group (the class in words; a survival cohort: "event" or
    "censored") and pattern (:func:`missingness_pattern`): the strata a stratified study samples over."""
    table = cohort.table.set_index("case_id")
    unknown = [c for c in case_ids if c not in table.index]
    if unknown:
        raise ValueError(f"cases {unknown[:5]} are not in the cohort {cohort.root}")
    rows = table.loc[list(case_ids)]
    if cohort.outcome == "survival":
        groups = ["event" if int(e) else "censored" for e in rows["event"]]
    else:
        groups = [pretty(str(label)) if label else "not labelled" for label in rows["label"]]
    available = cohort.availability().loc[list(case_ids)]
    patterns = [missingness_pattern(row.to_dict(), titles) for _, row in available.iterrows()]
    return pd.DataFrame({"case_id": list(case_ids), "group": groups, "pattern": patterns})


def selection_preview(strata: pd.DataFrame, group_name: str = "Class") -> pd.DataFrame:
    """Cases per stratum (group x missingness pattern) of :func:`case_strata`, most common first within each
    group, with a total row: what a researcher checks before creating a study."""
    if strata.empty:
        return pd.DataFrame({group_name: [], "Modalities": [], "Cases": []})
    counts = (strata.groupby(["group", "pattern"]).size().rename("Cases").reset_index()
              .sort_values(["group", "Cases", "pattern"], ascending=[True, False, True]))
    total = pd.DataFrame({"group": ["All"], "pattern": ["every pattern"], "Cases": [len(strata)]})
    frame = pd.concat([counts, total], ignore_index=True)
    return frame.rename(columns={"group": group_name, "pattern": "Modalities"})


def per_group(strata: pd.DataFrame) -> str:
    """"40 cases: 8 Normal, 8 Heart failure, ..." (groups in order of first appearance)."""
    counts = strata["group"].value_counts(sort=False)
    return f"{len(strata)} cases: " + ", ".join(f"{n} {g}" for g, n in counts.items())


def settings_table(study: Study, cases: int, raters: Sequence[Rater], titles: Mapping[str, str]) -> pd.DataFrame:
    """A study's settings, hashes and case selection in words (Setting, Value)."""
    reveal = (f"yes, with the model's {pretty(study.reveal_method).lower()} ranking" if study.reveal else "no")
    active = [r for r in raters if r.withdrawn_at is None]
    status = ("open" if study.withdrawn_at is None else
              f"withdrawn {study.withdrawn_at:%Y-%m-%d %H:%M} UTC: {study.withdrawn_reason}")
    rows = [
        ("Status", status),
        ("Task", f"{study.task} ({study.outcome})"),
        ("Modalities ranked", ", ".join(titles.get(m, m) for m in study.modalities)),
        ("Classes", ", ".join(pretty(c) for c in study.classes) or "none (survival)"),
        ("Cases", f"{cases}: {study.selection}"),
        ("Protocol", study.protocol + (" (raters see no model output before submitting)"
                                       if study.protocol == "blinded" else " (raters see the model's answer)")),
        ("Ties", "allowed" if study.allow_ties else "not allowed"),
        ("Reveal after submitting", reveal),
        ("Raters", f"{len(active)} active" + (f", {len(raters) - len(active)} withdrawn"
                                             if len(raters) > len(active) else "")),
        ("Cohort", study.cohort_dir),
        ("Cohort SHA-256", study.cohort_sha256),
        ("Checkpoint", study.checkpoint_dir),
        ("Checkpoint SHA-256", study.checkpoint_sha256),
        ("Created", f"{study.created_at:%Y-%m-%d %H:%M} UTC" + (f" by {study.created_by}" if study.created_by else "")),
    ]
    return pd.DataFrame(rows, columns=["Setting", "Value"])


def raters_table(raters: Sequence[Rater]) -> pd.DataFrame:
    """Every rater of a study, withdrawn ones included and marked."""
    return pd.DataFrame({
        "Rater": [r.name for r in raters],
        "Login (OIDC identity)": [r.identity or "— (name picker)" for r in raters],
        "Protocol": [r.protocol for r in raters],
        "Added (UTC)": [f"{r.added_at:%Y-%m-%d %H:%M}" for r in raters],
        "Status": ["active" if r.withdrawn_at is None else f"withdrawn: {r.withdrawn_reason}" for r in raters],
    })


def progress_table(progress: pd.DataFrame) -> pd.DataFrame:
    """store.progress (rater, protocol, ranked, skipped, to_do, total) with readable headers and a share done."""
    done = (progress["ranked"] + progress["skipped"]) / progress["total"].where(progress["total"] > 0)
    return pd.DataFrame({
        "Rater": progress["rater"].to_numpy(), "Protocol": progress["protocol"].to_numpy(),
        "Ranked": progress["ranked"].astype(int).to_numpy(), "Skipped": progress["skipped"].astype(int).to_numpy(),
        "To do": progress["to_do"].astype(int).to_numpy(), "Cases": progress["total"].astype(int).to_numpy(),
        "Done": ["—" if pd.isna(d) else f"{d:.0%}" for d in done],
    })


def progress_bars(progress: pd.DataFrame, study: str) -> go.Figure:
    """One stacked horizontal bar per rater: ranked, skipped, to do (store.progress)."""
    missing = [c for c in ("rater", *PROGRESS_LABELS) if c not in progress.columns]
    if missing:
        raise ValueError(f"progress needs the columns rater, ranked, skipped, to_do; missing {missing}")
    fig = go.Figure()
    for column, label in PROGRESS_LABELS.items():
        fig.add_trace(go.Bar(y=progress["rater"], x=progress[column], name=label, orientation="h",
                             marker_color=PROGRESS_COLORS[column],
                             hovertemplate=f"%{{y}}: %{{x}} {label.lower()}<extra></extra>"))
    return finish(fig, f"Progress of {study} per rater", height=120 + 36 * len(progress), barmode="stack",
                  xaxis_title="cases", yaxis=dict(autorange="reversed"), paper_bgcolor=TRANSPARENT,
                  plot_bgcolor=TRANSPARENT, legend=dict(orientation="h", y=-0.25, traceorder="normal"))
