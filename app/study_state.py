"""The study database as the dashboard's pages share it: one StudyStore per database URL for the whole process
(the URL is the sidebar's ``settings.study_db``), and who is rating: the logged-in user when Streamlit's OIDC
login is configured, else a name picked from the study's raters (which verifies nothing)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import streamlit as st
from sqlalchemy.exc import SQLAlchemyError
from streamlit.errors import StreamlitSecretNotFoundError

from neurofusion.hashing import folder_hashes
from neurofusion.studies import Rater, Study, StudyError, StudyStore, default_url, masked_url

STUDY_DB = "settings.study_db"
LOGIN, NAME_PICKER = "login", "name"


@st.cache_resource(show_spinner="Opening the study database...", max_entries=4)
def _open_store(url: str) -> StudyStore:
    """One store (one connection pool) per URL, shared by every session: it holds no per-session state."""
    return StudyStore(url)


def study_url() -> str:
    """The database the sidebar names (``settings.study_db``), else the default (NEUROFUSION_STUDY_DB, or the
    SQLite file in the studies folder)."""
    return str(st.session_state.get(STUDY_DB) or default_url())


def study_store() -> StudyStore:
    """The StudyStore for the sidebar's database URL, opened once per URL. Raises StudyError saying which
    database could not be opened and why (a bad URL, an unreachable server, a folder that cannot be written)."""
    url = study_url()
    try:
        return _open_store(url)
    except StudyError:
        raise
    except (SQLAlchemyError, OSError, ValueError) as err:  # a malformed URL is a ValueError (ArgumentError)
        raise StudyError(f"cannot open the study database {masked_url(url)}: {err}. Set the study database under "
                         "Advanced in the sidebar (an SQLAlchemy URL, e.g. sqlite:///studies/studies.sqlite or "
                         "postgresql+psycopg://user@host/db).") from None


def same_folder(a: str | Path, b: str | Path) -> bool:
    """Whether two folder names (a study's recorded folder, a loaded one, a typed setting with ~) are the same
    folder; a name that cannot be resolved is no match."""
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False


def cohort_sha256_now(folder: str) -> str:
    """The cohort folder's SHA-256 as create_study records it (neurofusion.hashing.folder_hashes), computed
    once per version of its files: compare it with Study.cohort_sha256 to tell a changed cohort."""
    return _folder_sha256(folder, _folder_key(folder))


@st.cache_data(show_spinner="Checking the cohort against the study's record...", max_entries=8)
def _folder_sha256(folder: str, files_key: str) -> str:
    return folder_hashes(folder)["sha256"]


def _folder_key(folder: str) -> str:
    """Changes when any file under ``folder`` is added, removed or edited (path, size, mtime; nothing read)."""
    entries = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:  # gone since the listing: the key changes anyway
                continue
            entries.append((path, stat.st_size, stat.st_mtime_ns))
    return hashlib.sha256(repr(entries).encode()).hexdigest()[:16]


def identity_mode() -> str:
    """LOGIN when Streamlit's OIDC login is configured (``st.secrets`` has an [auth] section), else
    NAME_PICKER. No secrets file at all is the name-picker mode, not an error."""
    try:
        return LOGIN if "auth" in st.secrets else NAME_PICKER
    except (StreamlitSecretNotFoundError, FileNotFoundError):
        return NAME_PICKER


def current_rater(store: StudyStore, study: Study, key: str = "rate") -> Rater | None:
    """Who is rating ``study`` in this session, drawing what it takes to know: with login, a log-in button
    or, the first time, the choice of the study's name this login claims (for good); without, a name picker.
    None until a rater is known (the page then stops). ``key`` prefixes the widgets' keys."""
    raters = store.raters(study.name)
    if not raters:
        st.warning(f"Study {study.name!r} has no raters (all withdrawn?). The researcher adds them on the "
                   "Studies page.")
        return None
    if identity_mode() == LOGIN:
        return _logged_in_rater(store, study, raters, key)
    names = [r.name for r in raters]
    picker = f"{key}.rater"
    held = st.session_state.get(picker)
    if held is not None and held not in names:  # another study's name, or a rater withdrawn meanwhile
        st.session_state.pop(picker)
        withdrawn = {r.name for r in store.raters(study.name, include_withdrawn=True)} - set(names)
        if held in withdrawn:
            st.warning(f"{held} has been withdrawn from study {study.name!r} by the researcher: their answers are "
                       "kept but no longer count, and they cannot rate.")
    name = st.selectbox("Who is rating", names, index=None, key=picker, placeholder="Pick your name")
    st.caption("Name-picker mode: nothing checks who is at the keyboard, so anyone with this page can rate as any "
               "rater. Configure Streamlit's login (see the README) for a study whose raters must be verified.")
    return None if name is None else next(r for r in raters if r.name == name)


def _logged_in_rater(store: StudyStore, study: Study, raters: list[Rater], key: str) -> Rater | None:
    if not st.user.is_logged_in:
        st.info("This dashboard verifies raters: log in to rate.")
        st.button("Log in", key=f"{key}.login", on_click=st.login, icon=":material/login:")
        return None
    identity = st.user.get("email")
    if not identity:
        st.error("Your login did not give an email address, which is how raters are told apart: ask the "
                 "researcher to configure the identity provider to send the email claim.")
        return None
    rater = store.rater_for_identity(study.name, str(identity))
    if rater is not None:
        st.caption(f"Rating as **{rater.name}** (logged in as {identity}).")
        return rater
    free = [r.name for r in raters if r.identity is None]
    if not free:
        st.error(f"You are logged in as {identity}, but every rater of study {study.name!r} is already bound to "
                 "another login. Ask the researcher to add you as a rater.")
        return None
    st.info(f"You are logged in as {identity}. Choose which of the study's raters you are: the choice is final "
            "(this login can then rate only as that name, and no other login can take it).")
    claim = st.selectbox("I am", free, index=None, key=f"{key}.claim", placeholder="Pick your name")
    if st.button("Claim this name", key=f"{key}.claim_button", disabled=claim is None):
        try:
            rater = store.bind_identity(study.name, claim, str(identity))
        except StudyError as err:
            st.error(str(err))
            return None
        st.rerun()
    return None
