"""Error messages the pages share: one message listing every error of an uploaded or imported file, each with its
line (read_rankings collects them on the exception's ``errors``), capped at SHOWN_ERRORS with a count of the rest."""

from __future__ import annotations

import streamlit as st

SHOWN_ERRORS = 20  # errors listed in one message; the count says how many more there are


def errors_text(prefix: str, err: Exception) -> str:
    """``prefix: err`` for a single error; else ``prefix: N errors`` and a bulleted list of the first
    SHOWN_ERRORS (``err.errors``), then "... and K more"."""
    errors = getattr(err, "errors", None) or [err]
    if len(errors) == 1:
        return f"{prefix}: {err}"
    shown = "\n".join(f"- {e}" for e in errors[:SHOWN_ERRORS])
    more = f"\n- ... and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
    return f"{prefix}: {len(errors)} errors\n\n{shown}{more}"


def show_errors(prefix: str, err: Exception) -> None:
    """:func:`errors_text` as one error message on the page."""
    st.error(errors_text(prefix, err))
