"""Expert studies: a researcher sets up an expert-ranking study for the loaded cohort and checkpoint,
follows each rater's progress, adds or withdraws raters, withdraws a study, downloads its rankings
(clinician_rankings.csv) and its full submission history, and imports rankings made elsewhere. Raters rate on
the "Rate cases" page; the "Rater agreement" page reads a study's rankings. The study database is the sidebar's
"Study database" URL (app.study_state.study_store)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from streamlit.errors import StreamlitAPIException

from app import study_figures
from app.messages import errors_text
from app.state import Context, cohort_key, context, load_cohort
from app.study_state import cohort_sha256_now, same_folder, study_store
from neurofusion.checkpoint import CheckpointError
from neurofusion.data.annotations import display_name, write_rankings
from neurofusion.data.cohort import CohortReader
from neurofusion.data.errors import CohortError
from neurofusion.data.schema import SPLITS
from neurofusion.studies import (PROTOCOLS, REVEAL_METHODS, Study, StudyError, StudyStore, add_raters_identities,
                                 create_study, parse_raters, select_cases, study_history)

MAX_UPLOAD_MB = 5  # as the agreement page: ~50,000 rankings
DEFAULT_SAMPLE = 40
SELECTION_LABELS = {"all": "every case", "split": "one split", "stratified": "a stratified sample"}
PROTOCOL_LABELS = {"blinded": "blinded: no model output before submitting",
                   "unblinded": "unblinded: the model's prediction and ranking are shown"}
METHOD_LABELS = {"shapley": "Shapley", "attention": "Attention (models with cross-modal attention)",
                 "leave_one_out": "Leave-one-out", "interaction_aware": "Interaction-aware"}
STUDY_ERRORS = (StudyError, CohortError, CheckpointError, SQLAlchemyError)


def _flash(where: str, kind: str, text: str) -> None:
    """A message from a button's callback, shown beside that button on the rerun it causes."""
    st.session_state[f"studies.flash.{where}"] = (kind, text)


def _show_flash(where: str) -> None:
    kind, text = st.session_state.pop(f"studies.flash.{where}", (None, ""))
    if kind is not None:
        getattr(st, kind)(text)


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "study"


def _cohort_of(study: Study, ctx: Context) -> CohortReader | None:
    """The study's cohort (the loaded one when it is the same folder; else opened once per process), or None
    when its folder can no longer be read (the study's own cases and modalities still check an import)."""
    if same_folder(study.cohort_dir, ctx.cohort.root):
        return ctx.cohort
    try:
        return load_cohort(study.cohort_dir, cohort_key(study.cohort_dir))
    except (OSError, CohortError):
        return None


# ------------------------------------------------------------------------------------------- set-up
def _selection(ctx: Context) -> dict:
    """The case-list widgets -> select_cases' keyword arguments."""
    how = st.radio("Cases", tuple(SELECTION_LABELS), key="studies.cases", horizontal=True,
                   format_func=SELECTION_LABELS.get)
    splits = [s for s in SPLITS if ctx.cohort.ids(s)]
    if how == "all":
        return {"selection": how}
    if how == "split":
        split = st.selectbox("Split", splits, key="studies.split",
                             index=splits.index("test") if "test" in splits else 0)
        return {"selection": how, "split": split}
    c1, c2, c3 = st.columns(3)
    split = c1.selectbox("Sample from", [None, *splits], key="studies.sample_split",
                         format_func=lambda s: f"the whole cohort ({len(ctx.cohort)} cases)" if s is None
                         else f"the {s} split ({len(ctx.cohort.ids(s))} cases)",
                         help="The paper's figure 2D samples the test split, the cases the model was not fitted on.")
    n = c2.number_input("Cases in the sample", min_value=1, value=min(DEFAULT_SAMPLE, len(ctx.cohort)), step=1,
                        key="studies.n")
    seed = c3.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="studies.seed",
                           help="The same seed draws the same cases; it also orders each rater's queue.")
    return {"selection": how, "split": split, "n": int(n), "seed": int(seed)}


def _preview(ctx: Context, selection: dict) -> None:
    """How many cases per class (survival: event) and missingness pattern the study would take."""
    try:
        ids = select_cases(ctx.cohort, selection["selection"], split=selection.get("split"), n=selection.get("n"),
                           seed=selection.get("seed", 0))
    except (StudyError, CohortError) as err:
        st.error(f"These cases cannot be selected: {err}")
        return
    strata = study_figures.case_strata(ctx.cohort, ids, ctx.titles)
    group = "Outcome" if ctx.survival else "Class"
    st.caption(f"Preview: {study_figures.per_group(strata)}.")
    st.dataframe(study_figures.selection_preview(strata, group), hide_index=True, key="studies.preview")


def _researcher() -> str:
    """The logged-in user's e-mail when Streamlit's OIDC login is configured, else "" (recorded as created_by)."""
    try:
        return str(st.user.get("email") or "")
    except (AttributeError, KeyError, StreamlitAPIException):
        return ""


def _create(store: StudyStore, ctx: Context, selection: dict) -> None:
    """The create button's callback: the study, then the raters' identities; the new study is selected below."""
    state = st.session_state
    name = state.get("studies.name", "").strip()
    try:
        if not name:
            raise StudyError("the study name is empty: give the study a name (e.g. figure_2d)")
        raters = parse_raters(state.get("studies.raters", "").splitlines())
        study = create_study(store, name, cohort_dir=ctx.cohort.root, checkpoint_dir=ctx.checkpoint.path,
                             raters=[r[0] for r in raters], protocol=state["studies.protocol"],
                             allow_ties=state["studies.allow_ties"], reveal=state["studies.reveal"],
                             reveal_method=state["studies.reveal_method"], created_by=_researcher(), **selection)
    except STUDY_ERRORS as err:
        _flash("create", "error", f"The study was not created: {err}")
        return
    state["studies.study"] = study.name
    try:
        add_raters_identities(store, study.name, raters)
    except STUDY_ERRORS as err:
        _flash("create", "warning", f"Created study **{study.name}**, but a rater's login was not bound: {err}. "
                                    "Those raters can claim their names when they first log in.")
        return
    cases = len(store.cases(study.name))
    _flash("create", "success",
           f"Created study **{study.name}**: {cases} cases ({study.selection}), {len(raters)} raters. "
           f"Cohort SHA-256 `{study.cohort_sha256}`, checkpoint SHA-256 `{study.checkpoint_sha256}`. "
           "It is selected under **Studies**.")


def _create_section(store: StudyStore, ctx: Context) -> None:
    config = ctx.checkpoint.config
    st.markdown(f"A study of the loaded model **{Path(ctx.checkpoint.path).name}** ({config.task}, "
                f"{config.architecture}) on the cohort **{Path(ctx.cohort.root).name}** ({len(ctx.cohort)} cases); "
                "their SHA-256 hashes are recorded with the study. Change them under Advanced in the sidebar.")
    st.caption(f"Model `{ctx.checkpoint.path}` · cohort `{ctx.cohort.root}`")
    st.text_input("Study name", key="studies.name", placeholder="figure_2d", max_chars=200)
    selection = _selection(ctx)
    _preview(ctx, selection)
    st.text_area("Raters, one per line", key="studies.raters", placeholder="dr_a\ndr_b <b@clinic.org>",
                 help='A name, or "name <email>" to bind the rater to the login they use when the dashboard has '
                      "an identity provider (Streamlit OIDC): only that login can then rate as them.")
    st.radio("Protocol", PROTOCOLS, key="studies.protocol", format_func=PROTOCOL_LABELS.get)
    c1, c2, c3 = st.columns(3)
    c1.checkbox("Allow ties", key="studies.allow_ties", value=False,
                help="Two modalities may share a rank (1, 1, 3); otherwise a rater gives every modality its own.")
    reveal = c2.checkbox("Reveal the model's answer after submitting", key="studies.reveal", value=True,
                         help="After a rater submits a case: the model's prediction, its ranking and the case's tau.")
    c3.selectbox("Ranking revealed", REVEAL_METHODS, key="studies.reveal_method", format_func=METHOD_LABELS.get,
                 disabled=not reveal)
    st.button("Create study", key="studies.create", type="primary", on_click=_create, args=(store, ctx, selection))
    _show_flash("create")


# ------------------------------------------------------------------------------------------- studies
def _overview(store: StudyStore, studies: list[Study]) -> None:
    rows = [{"Study": s.name, "Task": s.task, "Cases": len(store.cases(s.name)),
             "Raters": len(store.raters(s.name)), "Protocol": s.protocol,
             "Created (UTC)": f"{s.created_at:%Y-%m-%d %H:%M}",
             "Status": "open" if s.withdrawn_at is None else "withdrawn"} for s in studies]
    st.dataframe(rows, hide_index=True, key="studies.overview")


def _add_rater(store: StudyStore, study: str) -> None:
    state = st.session_state
    try:
        entries = parse_raters([state.get("studies.new_rater", "")])
        if len(entries) != 1:
            raise StudyError("add one rater at a time")
        name, identity = entries[0]
        store.add_rater(study, name, identity=identity, protocol=state["studies.new_rater_protocol"])
    except STUDY_ERRORS as err:
        _flash("raters", "error", f"The rater was not added: {err}")
        return
    state["studies.new_rater"] = ""
    _flash("raters", "success", f"Added rater **{name}** to {study}" + (f", bound to the login {identity}"
                                                                        if identity else "") + ".")


def _withdraw(store: StudyStore, study: str) -> None:
    state = st.session_state
    reason = state.get("studies.withdraw_reason", "").strip()
    whole = state.get("studies.withdraw_what") == "study"
    rater = state.get("studies.withdraw_rater")
    if not reason:
        _flash("withdraw", "error", "Nothing was withdrawn: give a reason (it is recorded with the withdrawal).")
        return
    if not state.get("studies.withdraw_confirm"):
        _flash("withdraw", "error", "Nothing was withdrawn: tick the confirmation first.")
        return
    try:
        if whole:
            store.withdraw_study(study, reason)
        elif rater is None:
            raise StudyError(f"study {study!r} has no active rater to withdraw")
        else:
            store.withdraw_rater(study, rater, reason)
    except STUDY_ERRORS as err:
        _flash("withdraw", "error", f"Nothing was withdrawn: {err}")
        return
    state["studies.withdraw_reason"], state["studies.withdraw_confirm"] = "", False
    what = f"study **{study}**" if whole else f"rater **{rater}** from {study}"
    _flash("withdraw", "success", f"Withdrew {what}: the rows are kept and marked withdrawn ({reason}).")


def _import(store: StudyStore, study: Study, ctx: Context) -> None:
    state = st.session_state
    upload = state.get("studies.import")
    if upload is None:
        _flash("import", "error", "Nothing was imported: choose a clinician_rankings.csv first.")
        return
    cohort = _cohort_of(study, ctx)
    try:  # parsed in memory: the client-supplied name only labels messages, it is never a path
        added = store.import_csv(study.name, upload.getvalue(), cohort=cohort, name=upload.name,
                                 protocol=state["studies.import_protocol"])
    except STUDY_ERRORS as err:
        _flash("import", "error", errors_text(f"{display_name(upload.name)} was not imported (nothing was written)",
                                              err))
        return
    _flash("import", "success" if added else "info",
           f"Imported {added} rankings from {display_name(upload.name)}." if added else
           f"Nothing new in {display_name(upload.name)}: every ranking in it is already in {study.name}.")


def _downloads(store: StudyStore, study: Study) -> None:
    rankings = store.rankings(study.name)
    buffer = io.StringIO()
    write_rankings(buffer, rankings, study.modalities)
    history = study_history(store, study.name)
    c1, c2 = st.columns(2)
    c1.download_button(f"Rankings: clinician_rankings.csv ({len(rankings)} rows)", buffer.getvalue(),
                       file_name="clinician_rankings.csv", mime="text/csv", key="studies.download_rankings",
                       help="The latest ranking per rater and case (skips and withdrawn rows left out), in the "
                            "format every page and `python -m explain cohort --rankings` read.")
    c2.download_button(f"Full history ({len(history)} submission rows, CSV)", history.to_csv(index=False),
                       file_name=f"{_file_stem(study.name)}_history.csv", mime="text/csv",
                       key="studies.download_history",
                       help="Every submission: revisions, skips and withdrawn rows; `counts` marks the rows in force.")


def _check_hashes(study: Study) -> None:
    """Warn when the study's cohort or checkpoint folder is gone or no longer has the SHA-256 recorded at creation
    (hashed once per version of the folder's files)."""
    changed = []
    for what, folder, recorded in (("cohort", study.cohort_dir, study.cohort_sha256),
                                   ("checkpoint", study.checkpoint_dir, study.checkpoint_sha256)):
        if not Path(folder).is_dir():
            changed.append(f"the {what} folder `{folder}` is gone")
        elif (now := cohort_sha256_now(folder)) != recorded:
            changed.append(f"the {what} folder `{folder}` has changed since the study was created (SHA-256 "
                           f"{recorded[:12]}… then, {now[:12]}… now)")
    if changed:
        text = "; ".join(changed)
        st.warning(f"{text[0].upper()}{text[1:]}. Rankings made before and after the change may not be comparable.",
                   icon=":material/warning:")


def _study_section(store: StudyStore, ctx: Context) -> None:
    studies = store.studies(include_withdrawn=True)
    if not studies:
        st.info("No studies in this database yet: create one under **New study**.")
        return
    _overview(store, studies)
    names = [s.name for s in studies]
    if st.session_state.get("studies.study") not in names:
        st.session_state["studies.study"] = names[0]
    name = st.selectbox("Study", names, key="studies.study",
                        format_func=lambda n: n + (" (withdrawn)" if next(s for s in studies if s.name == n)
                                                   .withdrawn_at else ""))
    study = next(s for s in studies if s.name == name)
    loaded = same_folder(study.cohort_dir, ctx.cohort.root) and same_folder(study.checkpoint_dir,
                                                                              ctx.checkpoint.path)
    if not loaded:
        st.info(f"This study is of the cohort `{study.cohort_dir}` and the checkpoint `{study.checkpoint_dir}`; "
                "the dashboard has others loaded. The Rate cases page offers to switch to them.")
    _check_hashes(study)
    titles = ctx.titles if tuple(ctx.names) == tuple(study.modalities) else {}
    raters = store.raters(name, include_withdrawn=True)
    cases = store.cases(name)
    with st.expander("Settings, hashes and case selection", expanded=False):
        st.dataframe(study_figures.settings_table(study, len(cases), raters, titles), hide_index=True,
                     key="studies.settings")
        st.dataframe(study_figures.raters_table(raters), hide_index=True, key="studies.raters_table")
        cohort = _cohort_of(study, ctx)
        if cohort is None:
            st.caption(f"The study's cohort folder {study.cohort_dir} is gone: its cases cannot be broken down.")
        else:
            strata = study_figures.case_strata(cohort, [c.case_id for c in cases], titles)
            st.caption(f"The study's cases: {study_figures.per_group(strata)}.")
            st.dataframe(study_figures.selection_preview(strata, "Outcome" if study.outcome == "survival" else "Class"),
                         hide_index=True, key="studies.case_strata")

    st.subheader("Progress")
    progress = store.progress(name)
    if progress.empty:
        st.info("This study has no active raters.")
    else:
        st.dataframe(study_figures.progress_table(progress), hide_index=True, key="studies.progress")
        st.plotly_chart(study_figures.progress_bars(progress, name), key="studies.progress_chart")
    c1, c2 = st.columns(2)
    c1.page_link("views/rate.py", label=f"Rate cases: {name}", icon=":material/rate_review:",
                 query_params={"study": name})
    c1.caption(f"Raters open the dashboard's `rate?study={name}` address (this study preselected).")
    c2.page_link("views/agreement.py", label="Rater agreement", icon=":material/handshake:")
    c2.caption("Choose “an expert study” as its rankings: agreement is read live as rankings come in.")

    st.subheader("Results")
    _downloads(store, study)
    if study.withdrawn_at is not None:
        st.info(f"This study was withdrawn on {study.withdrawn_at:%Y-%m-%d %H:%M} UTC ({study.withdrawn_reason}); "
                "its rows are kept and can still be downloaded, but it takes no new raters, rankings or imports.")
        return
    st.file_uploader(f"Import a clinician_rankings.csv: case_id, rater, {', '.join(study.modalities)} (1 = most "
                     "important; blank where the case lacks the modality)", type="csv", key="studies.import",
                     max_upload_size=MAX_UPLOAD_MB)
    st.selectbox("The imported raters rated", PROTOCOLS, key="studies.import_protocol",
                 index=PROTOCOLS.index(study.protocol), format_func=lambda p: f"{p}")
    st.button("Import rankings", key="studies.import_button", on_click=_import, args=(store, study, ctx))
    _show_flash("import")

    st.subheader("Raters")
    c1, c2 = st.columns([2, 1])
    c1.text_input("Add a rater", key="studies.new_rater", placeholder="dr_e  or  dr_e <e@clinic.org>")
    c2.selectbox("Protocol", PROTOCOLS, key="studies.new_rater_protocol", index=PROTOCOLS.index(study.protocol))
    st.button("Add rater", key="studies.add_rater", on_click=_add_rater, args=(store, name))
    _show_flash("raters")

    st.subheader("Withdraw")
    st.caption("Withdrawal marks rows; nothing is deleted. A withdrawn rater's rankings no longer count; a "
               "withdrawn study takes no more submissions.")
    what = st.radio("Withdraw", ("rater", "study"), key="studies.withdraw_what", horizontal=True,
                    format_func={"rater": "a rater", "study": "the whole study"}.get)
    if what == "rater":
        active = [r.name for r in raters if r.withdrawn_at is None]
        st.selectbox("Rater", active, key="studies.withdraw_rater")
    st.text_input("Reason (required, recorded)", key="studies.withdraw_reason")
    st.checkbox("I confirm the withdrawal", key="studies.withdraw_confirm")
    st.button("Withdraw", key="studies.withdraw", on_click=_withdraw, args=(store, name))
    _show_flash("withdraw")


ctx = context()
st.title("Expert studies")
st.caption("Set up a study in which clinicians rank the modalities of each case by how much each drove their own "
           "judgement, follow it, and take its rankings to the agreement page (the paper's figure 2D).")
try:
    store = study_store()
except STUDY_ERRORS as err:
    st.error(f"The study database could not be opened: {err}\n\nFix the URL under Advanced in the sidebar.")
    st.stop()
st.caption(f"Study database: `{store.url}` (schema version {store.schema_version}); set under Advanced in the sidebar.")
studies_tab, create_tab = st.tabs(["Studies", "New study"])
with create_tab:  # first, so a study created by its button is listed under Studies on the same run
    _create_section(store, ctx)
with studies_tab:
    _study_section(store, ctx)
