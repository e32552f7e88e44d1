"""Rate cases: a study's rater sees their next case as a clinician reads it (no model output in a blinded study),
ranks its modalities by how much each drove their own judgement, optionally gives a diagnosis, a confidence and
a reason, and submits; then, when the study reveals it, sees the model's prediction, its ranking and the case's
Kendall tau-b. Skip with a reason, go back and revise (a revision is a new row; the latest counts).

Drawing a case and checking a ranking: app/rating_panels.py; the database and who rates: app/study_state.py."""

from __future__ import annotations

import uuid

import pandas as pd
import streamlit as st

from app import rating_panels
from app.figures import pretty
from app.state import CASE_ERRORS, context
from app.study_state import cohort_sha256_now, current_rater, same_folder, study_store
from neurofusion.studies import Rater, Study, StudyError, StudyStore, Submission

ctx = context()
NOT_GIVEN = "not given"
FORM = "rate.f."  # prefix of the form's widget keys: cleared when the form is for another case
SUBMITTED = "rate.submitted"  # what was just stored: {"scope", "case_id", "kind", "revision", "ranks"}
REVISE = "rate.revise"
CONFIDENCE_WORDS = {1: "1 (guess)", 2: "2", 3: "3", 4: "4", 5: "5 (certain)"}

st.title("Rate cases")


def _load_study_folders(study: Study) -> None:
    """The button's callback: the sidebar's model and cohort become the study's (the page reruns with them)."""
    st.session_state["settings.checkpoint"] = study.checkpoint_dir
    st.session_state["settings.cohort"] = study.cohort_dir
    st.query_params["study"] = study.name


def _choose_study(store: StudyStore) -> Study:
    studies = store.studies()
    if not studies:
        st.info(f"No study in the database {store.url} yet. A researcher creates one on the Studies page.")
        st.stop()
    by_name = {s.name: s for s in studies}
    wanted = st.query_params.get("study")  # ?study=NAME: a link sent to raters, or kept across a model switch
    if wanted in by_name and wanted != st.session_state.get("rate.last_query"):
        st.session_state["rate.study"] = wanted
    if st.session_state.get("rate.study") not in by_name:
        st.session_state.pop("rate.study", None)
    name = st.selectbox("Study", list(by_name), key="rate.study")
    st.query_params["study"] = name
    st.session_state["rate.last_query"] = name
    return by_name[name]


def _check_loaded(study: Study) -> None:
    """Stops with a message and a switch button when the dashboard has another model or cohort loaded; warns
    when the cohort's files have changed since the study recorded their hash."""
    loaded = (st.session_state.get("settings.checkpoint", ""), st.session_state.get("settings.cohort", ""))
    if not (same_folder(study.checkpoint_dir, loaded[0]) and same_folder(study.cohort_dir, loaded[1])):
        st.warning(f"Study **{study.name}** rates cases of the cohort `{study.cohort_dir}` for the model "
                   f"`{study.checkpoint_dir}`; the dashboard has `{loaded[1]}` and `{loaded[0]}` loaded.")
        st.button("Load the study's model and cohort", key="rate.load_study", on_click=_load_study_folders,
                  args=(study,), type="primary", icon=":material/swap_horiz:")
        st.stop()
    current = cohort_sha256_now(study.cohort_dir)
    if current != study.cohort_sha256:
        st.warning(f"The cohort folder `{study.cohort_dir}` has changed since the study was created: its SHA-256 "
                   f"was {study.cohort_sha256[:12]}… and is now {current[:12]}…. A case may no longer show what "
                   "the study's other ratings saw; tell the researcher.", icon=":material/warning:")


def _progress(store: StudyStore, study: Study, rater: Rater) -> None:
    table = store.progress(study.name)
    row = table[table["rater"] == rater.name].iloc[0]
    ranked, skipped, to_do, total = (int(row[c]) for c in ("ranked", "skipped", "to_do", "total"))
    done = ranked + skipped
    st.progress(done / total if total else 1.0,
                text=f"**{rater.name}** ({rater.protocol}): {ranked} ranked, {skipped} skipped, {to_do} to do, "
                     f"of {total} cases")


def _after_submit(study: Study, scope: tuple[str, str]) -> None:
    """What follows a stored answer: the reveal (study.reveal, a ranking) with a Next case button, or a line
    saying it was stored."""
    done = st.session_state.get(SUBMITTED)
    if not done or done["scope"] != scope:
        return
    st.session_state.pop(REVISE, None)  # the next case, not the one revised
    what = "ranking" if done["kind"] == "ranking" else "skip"
    stored = f"Stored your {what} of case {done['case_id']} (revision {done['revision']})."
    if done["kind"] != "ranking" or not study.reveal:
        st.success(stored, icon=":material/check:")
        st.session_state.pop(SUBMITTED)
        return
    st.success(stored, icon=":material/check:")
    _reveal(study, done["case_id"], done["ranks"])
    st.button("Next case", key="rate.next", type="primary", icon=":material/arrow_forward:",
              on_click=lambda: st.session_state.pop(SUBMITTED, None))
    st.stop()


def _model_view(study: Study, case_id: str) -> tuple[str, dict[str, float]] | None:
    """The model's prediction and its ranking of the case by study.reveal_method, or None (said why)."""
    try:
        explanation = ctx.explain(case_id)
        ranks = rating_panels.model_ranks(explanation, study.reveal_method, ctx.survival)
    except CASE_ERRORS as err:  # an unreadable case, or a method this model lacks (attention)
        st.warning(f"The model's view of case {case_id} cannot be shown: {err}")
        return None
    return rating_panels.prediction_words(explanation, ctx.survival), ranks


def _reveal(study: Study, case_id: str, ranks: dict[str, int]) -> None:
    st.subheader("The model's view of this case")
    view = _model_view(study, case_id)
    if view is None:
        return
    prediction, model = view
    tau, n = rating_panels.case_tau(model, ranks)
    method = rating_panels.REVEAL_METHODS[study.reveal_method]
    st.markdown(f"**Model's prediction:** {prediction}")
    st.dataframe(rating_panels.reveal_table(model, ranks, ctx.titles), hide_index=True, key="rate.reveal_table")
    agreement = "not defined (fewer than two modalities, or one side ranks them all equal)" if pd.isna(tau) \
        else f"{tau:+.2f}"
    st.markdown(f"**Kendall tau-b with your ranking:** {agreement} over {n} modalities")
    st.caption(f"The model's ranking: {method} for its predicted class (1 = most important). tau-b: +1 the same "
               "order, 0 unrelated, −1 reversed.")


def _submitted_cases(store: StudyStore, study: Study, rater: Rater) -> dict[str, Submission]:
    """{case_id: the rater's current answer}, in the rater's own case order."""
    latest = {s.case_id: s for s in store.latest(study.name, rater.name) if s.rater == rater.name}
    return {c: latest[c] for c in store.queue(study.name, rater.name) if c in latest}


def _go_back(submitted: dict[str, Submission]) -> str | None:
    if st.session_state.get(REVISE) not in submitted:
        st.session_state.pop(REVISE, None)
    if not submitted:
        return None

    def label(case_id: str) -> str:
        answer = submitted[case_id]
        what = "skipped" if answer.kind == "skip" else "ranked"
        return f"{case_id} · {what}" + (f" (revision {answer.revision})" if answer.revision > 1 else "")

    return st.selectbox("Go back to a case you answered", list(submitted), index=None, key=REVISE,
                        format_func=label, placeholder="Next case in your list",
                        help="Opens the case to revise your answer: a revision is stored as a new row, the "
                             "earlier ones are kept, the latest counts.")


def _fresh_form(scope: tuple[str, str, str], previous: Submission | None, available: tuple[str, ...]) -> str:
    """The form's state for this (study, rater, case): reset (and filled from the previous answer, if any)
    when the case changes or after a submission; -> the form's client token (one submission per token)."""
    if st.session_state.get("rate.form_for") != scope or "rate.token" not in st.session_state:
        for key in [k for k in st.session_state if str(k).startswith(FORM)]:
            del st.session_state[key]
        st.session_state["rate.form_for"] = scope
        st.session_state["rate.token"] = str(uuid.uuid4())
        st.session_state["rate.skip_token"] = str(uuid.uuid4())
        if previous is not None and previous.kind == "ranking":
            for modality in available:
                if modality in previous.ranks:
                    st.session_state[f"{FORM}rank.{modality}"] = previous.ranks[modality]
            st.session_state[f"{FORM}diagnosis"] = previous.diagnosis or NOT_GIVEN
            st.session_state[f"{FORM}confidence"] = previous.confidence or NOT_GIVEN
            st.session_state[f"{FORM}reason"] = previous.reason
    return st.session_state["rate.token"]


def _stored(scope: tuple[str, str], submission: Submission) -> None:
    st.session_state[SUBMITTED] = {"scope": scope, "case_id": submission.case_id, "kind": submission.kind,
                                   "revision": submission.revision, "ranks": dict(submission.ranks)}
    st.session_state.pop("rate.form_for", None)  # the next form gets a new token and empty fields
    st.rerun()


def _ranking_form(store: StudyStore, study: Study, rater: Rater, case_id: str, available: tuple[str, ...],
                  token: str) -> None:
    k = len(available)
    titles = ctx.titles
    with st.form(f"rate.form.{study.id}.{rater.id}.{case_id}"):
        st.markdown("**Rank the modalities by how much each drove your judgement** (1 = most)"
                    + (": ties allowed, written 1, 1, 3" if study.allow_ties else ""))
        for column, modality in zip(st.columns(k), available):
            column.selectbox(titles.get(modality, modality), list(range(1, k + 1)), index=None,
                             key=f"{FORM}rank.{modality}", placeholder="rank")
        left, right = st.columns(2)
        if study.classes:
            left.selectbox("Your diagnosis (optional)", [NOT_GIVEN, *study.classes], key=f"{FORM}diagnosis",
                           format_func=lambda c: c if c == NOT_GIVEN else pretty(c))
        right.radio("Your confidence (optional)", [NOT_GIVEN, *CONFIDENCE_WORDS], key=f"{FORM}confidence",
                    horizontal=True, format_func=lambda c: CONFIDENCE_WORDS.get(c, c))
        st.text_area("Why (optional)", key=f"{FORM}reason", height=80,
                     placeholder="What in the case decided it for you")
        submitted = st.form_submit_button("Submit", type="primary", icon=":material/send:")
    if not submitted:
        return
    ranks = {m: st.session_state.get(f"{FORM}rank.{m}") for m in available}
    problem = rating_panels.rank_problem(ranks, titles, study.allow_ties)
    if problem:
        st.error(problem)
        return
    diagnosis = st.session_state.get(f"{FORM}diagnosis", NOT_GIVEN)
    confidence = st.session_state.get(f"{FORM}confidence", NOT_GIVEN)
    try:
        submission = store.submit(study.name, rater.name, case_id, {m: int(r) for m, r in ranks.items()},
                                  token=token, diagnosis=None if diagnosis == NOT_GIVEN else diagnosis,
                                  confidence=None if confidence == NOT_GIVEN else int(confidence),
                                  reason=st.session_state.get(f"{FORM}reason", "").strip())
    except StudyError as err:
        st.error(f"Not stored: {err}")
        return
    _stored((study.name, rater.name), submission)


def _skip_form(store: StudyStore, study: Study, rater: Rater, case_id: str) -> None:
    with st.expander("Skip this case", icon=":material/skip_next:"):
        with st.form(f"rate.skip_form.{study.id}.{rater.id}.{case_id}"):
            st.text_input("Why you skip it (required)", key=f"{FORM}skip_reason",
                          placeholder="e.g. the ECG is unreadable; outside my specialty")
            skipped = st.form_submit_button("Skip")
    if not skipped:
        return
    reason = st.session_state.get(f"{FORM}skip_reason", "").strip()
    if not reason:
        st.error("Give a reason to skip this case: it is stored with the skip, for the researcher.")
        return
    try:
        submission = store.skip(study.name, rater.name, case_id, reason, token=st.session_state["rate.skip_token"])
    except StudyError as err:
        st.error(f"Not stored: {err}")
        return
    _stored((study.name, rater.name), submission)


def _case(store: StudyStore, study: Study, rater: Rater, case_id: str, previous: Submission | None) -> None:
    study_case = next(c for c in store.cases(study.name) if c.case_id == case_id)
    queue = store.queue(study.name, rater.name)
    st.subheader(f"Case {case_id}", anchor=False)
    st.caption(f"Number {queue.index(case_id) + 1} of {len(queue)} in your list.")
    if previous is not None:
        revision = max(s.revision for s in store.history(study.name, rater.name, case_id)) + 1
        before = (f"your previous ranking was {rating_panels.ranking_words(previous.ranks, ctx.titles)}"
                  if previous.kind == "ranking" else f"you previously skipped it ({previous.reason})")
        st.info(f"Revision {revision}: {before}. Submitting stores a new revision; the earlier ones are kept.",
                icon=":material/history:")
        if study.reveal and rater.protocol == "blinded" and previous.kind == "ranking":
            st.caption("You saw the model's view of this case after your first answer, so a revision is no longer "
                       "blind to it: it is stored as unblinded (the agreement page counts it with the raters who saw "
                       "the model), and the history keeps every revision.")
    token = _fresh_form((study.name, rater.name, case_id), previous, study_case.available)
    if rater.protocol == "unblinded":
        view = _model_view(study, case_id)
        if view is not None:
            prediction, model = view
            st.markdown(f"**Model's prediction:** {prediction} · **its ranking** "
                        f"({rating_panels.REVEAL_METHODS[study.reveal_method]}): "
                        f"{rating_panels.ranking_words(model, ctx.titles)}")
            st.caption("Unblinded study: you see the model's output before you rank.")
    try:
        case = ctx.cohort[case_id]
    except CASE_ERRORS as err:
        st.error(f"Case {case_id} cannot be read: {err}. Skip it with that reason, or tell the researcher.")
        _skip_form(store, study, rater, case_id)
        return
    rating_panels.draw_case(case, study.modalities, study_case.available, ctx.titles, ctx.kinds,
                            ctx.cohort.features, key="rate.case")
    _ranking_form(store, study, rater, case_id, study_case.available, token)
    _skip_form(store, study, rater, case_id)


def _page() -> None:
    left, right = st.columns(2, gap="large")  # the study and who rates it, side by side
    try:
        store = study_store()
        with left:
            study = _choose_study(store)
    except StudyError as err:
        st.error(f"The study database cannot be used: {err}")
        st.stop()
    ties = "allowed" if study.allow_ties else "not allowed"
    by = f" by {study.created_by}" if study.created_by else ""
    left.caption(f"{study.selection} · {study.protocol} by default · ties {ties} · created "
                 f"{study.created_at:%Y-%m-%d}{by}")
    _check_loaded(study)
    with right:
        rater = current_rater(store, study)
    if rater is None:
        st.stop()
    scope = (study.name, rater.name)
    if st.session_state.get("rate.scope") != scope:  # another study or rater: nothing carries over
        for key in (REVISE, SUBMITTED, "rate.form_for"):
            st.session_state.pop(key, None)
        st.session_state["rate.scope"] = scope
    _progress(store, study, rater)
    _after_submit(study, scope)
    submitted = _submitted_cases(store, study, rater)
    case_id = _go_back(submitted) or store.next_case(study.name, rater.name)
    if case_id is None:
        st.success("You have answered every case of this study. Thank you! To change an answer, go back to it "
                   "above.", icon=":material/task_alt:")
        return
    _case(store, study, rater, case_id, submitted.get(case_id))


try:
    _page()
except StudyError as err:  # e.g. the study or rater withdrawn by the researcher while this page was open
    st.error(f"{err}")
