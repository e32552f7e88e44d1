"""A study's full submission history as one table: every row (revisions, skips, withdrawn rows), oldest first,
marking the rows that count. The CLI's `study export --history` and the Expert studies page write it as a CSV."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd

from neurofusion.studies.records import Submission

if TYPE_CHECKING:
    from neurofusion.studies.store import StudyStore


def history_frame(submissions: Sequence[Submission], modalities: Sequence[str],
                  current: Iterable[int] = ()) -> pd.DataFrame:
    """Every submission row of a study (store.history: revisions, skips and withdrawn rows included), oldest
    first: submission_id, rater, case_id, revision, kind, one rank column per modality (<NA>: not ranked),
    diagnosis, confidence, reason, protocol, source, submitted_at and withdrawn_at (ISO 8601 UTC), withdrawn_reason,
    token, and counts (True for the row that counts for its rater and case: ``current``, the ids of
    store.latest)."""
    current = set(current)
    rows = []
    for s in submissions:
        row = {"submission_id": s.id, "rater": s.rater, "case_id": s.case_id, "revision": s.revision, "kind": s.kind}
        row.update({m: s.ranks.get(m) for m in modalities})
        row.update({"diagnosis": s.diagnosis, "confidence": s.confidence, "reason": s.reason,
                    "protocol": s.protocol, "source": s.source, "submitted_at": _iso(s.submitted_at),
                    "withdrawn_at": _iso(s.withdrawn_at), "withdrawn_reason": s.withdrawn_reason, "token": s.token,
                    "counts": s.id in current})
        rows.append(row)
    columns = ["submission_id", "rater", "case_id", "revision", "kind", *modalities, "diagnosis", "confidence",
               "reason", "protocol", "source", "submitted_at", "withdrawn_at", "withdrawn_reason", "token", "counts"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in (*modalities, "confidence"):
        frame[column] = frame[column].astype("Int64")
    return frame


def study_history(store: StudyStore, study: str) -> pd.DataFrame:
    """:func:`history_frame` of every row of ``study``, marking the rows that count."""
    record = store.study(study)
    return history_frame(store.history(study), record.modalities, (s.id for s in store.latest(study)))


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.isoformat()
