"""The rater agreement page reading an expert study straight from its database: the study's latest rankings
(revisions replace, withdrawn rows and skips left out, exactly what ``study export`` writes), re-read on every
run so the agreement follows the rankings as they come in, and the blinded vs unblinded contrast when a study
has rankings under both protocols."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from app.state import Context
from app.study_state import same_folder, study_store
from explain.agreement import contrast, model_vs_raters
from explain.cohort import CohortImportance
from neurofusion.data.annotations import write_rankings
from neurofusion.studies import Study, StudyError, StudyStore


@dataclass(frozen=True)
class StudyRankings:
    study: Study
    rankings: pd.DataFrame          # read_rankings' frame: case_id, rater, one rank column per modality
    by_protocol: dict[str, pd.DataFrame]  # the same rankings split by the protocol each was given under
    csv: bytes                      # the rankings as clinician_rankings.csv (what the research export hashes)


def studies_of(store: StudyStore, ctx: Context) -> list[Study]:
    """The database's studies on the loaded cohort (same folder, same declared modalities)."""
    return [s for s in store.studies()
            if same_folder(s.cohort_dir, ctx.cohort.root) and list(s.modalities) == ctx.names]


def read_study(ctx: Context) -> StudyRankings | None:
    """Pick a study of the loaded cohort and read its rankings; None (with the reason on the page) when there is
    no database, no study of this cohort or no ranking yet."""
    try:
        store = study_store()
        studies = studies_of(store, ctx)
    except StudyError as err:
        st.error(f"The study database could not be opened: {err}")
        return None
    if not studies:
        st.info(f"The study database ({store.url}) has no study of this cohort ({ctx.cohort.root.name}). Create one "
                "on the **Expert studies** page; its rankings appear here as raters submit them.")
        return None
    names = [s.name for s in studies]
    left, right = st.columns([3, 1])
    name = left.selectbox("Study", names, key="agreement.study")
    right.button("Reload rankings", key="agreement.reload", icon=":material/refresh:",
                 help="Read the rankings submitted since this page was drawn.")
    study = studies[names.index(name)]
    try:
        rankings, by_protocol = store.rankings_by_protocol(study.name)
    except StudyError as err:
        st.error(f"The study's rankings could not be read: {err}")
        return None
    st.caption(f"Study **{study.name}**: {study.selection}; {study.protocol} protocol by default; read live from "
               f"{store.url}. The latest ranking of each rater and case counts (revisions replace earlier ones, "
               "withdrawn rows and skipped cases are left out).")
    if not same_folder(study.checkpoint_dir, ctx.checkpoint.path):
        st.warning(f"This study was set up with the checkpoint {study.checkpoint_dir}; the model compared here is "
                   f"{ctx.checkpoint.path}.")
    buffer = io.StringIO()
    write_rankings(buffer, rankings, tuple(study.modalities))
    return StudyRankings(study, rankings, by_protocol, buffer.getvalue().encode())


def protocol_contrast(importance: CohortImportance, source: StudyRankings, method: str) -> dict | None:
    """Blinded vs unblinded: mean tau of each and the difference (unblinded - blinded) with its case-bootstrap
    CI; None unless both protocols have rankings."""
    blinded, unblinded = source.by_protocol["blinded"], source.by_protocol["unblinded"]
    if blinded.empty or unblinded.empty:
        return None
    ranks = importance.ranks(method)
    return contrast(model_vs_raters(ranks, blinded), model_vs_raters(ranks, unblinded))
