"""StudyStore: an expert-ranking study database behind any SQLAlchemy URL (SQLite by default, PostgreSQL
through psycopg 3 for a shared multi-site study; the connection set-up is in ``engine``).

Nothing is deleted: a revision is a new submission row (the latest counts, the history is kept) and
withdrawal marks rows. Unique constraints make a duplicate submission impossible: a retried request carries
the same token and gets the stored row back; two revisions of the same (rater, case) racing on PostgreSQL
collide on (rater, case, revision) and the loser retries (SQLite writers queue on BEGIN IMMEDIATE instead).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pandas as pd
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from neurofusion.data.annotations import read_rankings, write_rankings
from neurofusion.studies._checks import (
    check_confidence,
    check_diagnosis,
    check_name,
    check_protocol,
    check_ranks,
    check_reason,
    check_source,
    check_token,
)
from neurofusion.studies._rows import (
    case_record,
    queue_order,
    rater_record,
    study_record,
    submission_query,
    submission_record,
)
from neurofusion.studies.engine import default_url, make_engine
from neurofusion.studies.records import PROTOCOLS, Rater, Study, StudyCase, Submission
from neurofusion.studies.schema import (
    StudyError,
    migrate,
    studies,
    study_cases,
    study_raters,
    submission_ranks,
    submissions,
)

if TYPE_CHECKING:
    from neurofusion.data.cohort import CohortReader

_RETRIES = 50  # attempts of a write that lost a race on a unique constraint (PostgreSQL; SQLite queues instead)
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class StudyStore:
    """The study database at ``url`` (None: :func:`default_url`), migrated to the latest schema on opening.

    ``url`` (the attribute) is the URL with any password masked, fit to display; ``schema_version`` the
    version the database is at. Every method takes study and rater *names*; unknown names, withdrawn studies
    and bad input raise StudyError."""

    def __init__(self, url: str | None = None) -> None:
        self._engine = make_engine(url or default_url())
        self.url = self._engine.url.render_as_string(hide_password=True)
        try:
            with self._write() as conn:
                self.schema_version = migrate(conn, self.url)
        except StudyError:
            self._engine.dispose()
            raise

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"StudyStore({self.url!r}, schema_version={self.schema_version})"

    # ------------------------------------------------------------------------------------ transactions
    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._connection(write=False) as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._connection(write=True) as conn:
            yield conn

    @contextmanager
    def _connection(self, write: bool) -> Iterator[Connection]:
        """One transaction; a database that cannot be reached or stays locked past the busy timeout is a
        StudyError (a message for the page), not a driver traceback."""
        try:
            with self._engine.connect() as conn:
                if write:
                    conn.execution_options(study_write=True)
                with conn.begin():
                    yield conn
        except OperationalError as err:
            raise StudyError(f"cannot use the study database {self.url}: {str(err.orig).strip()}") from err

    def _retrying(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a write transaction; a unique-constraint collision with a concurrent writer rolls
        it back and runs it again (it re-reads what it depends on)."""
        attempt = 0
        while True:
            try:
                with self._write() as conn:
                    return work(conn)
            except IntegrityError as err:
                attempt += 1
                if attempt == _RETRIES:
                    raise StudyError(f"the study database refused the write {_RETRIES} times on a constraint: "
                                     f"{str(err.orig).strip()}") from err
                time.sleep(random.uniform(0, 0.002 * attempt))

    # ------------------------------------------------------------------------------------ studies
    def studies(self, include_withdrawn: bool = False) -> list[Study]:
        """Every study, newest first."""
        query = select(studies).order_by(studies.c.created_at.desc(), studies.c.id.desc())
        if not include_withdrawn:
            query = query.where(studies.c.withdrawn_at.is_(None))
        with self._read() as conn:
            return [study_record(row) for row in conn.execute(query).mappings()]

    def study(self, name: str) -> Study:
        with self._read() as conn:
            return study_record(self._study_row(conn, name))

    def withdraw_study(self, name: str, reason: str) -> None:
        reason = check_reason(reason, "withdrawing a study")
        with self._write() as conn:
            row = self._study_row(conn, name)
            if row["withdrawn_at"] is not None:
                raise StudyError(f"study {name!r} was already withdrawn on {row['withdrawn_at']:%Y-%m-%d %H:%M} UTC "
                                 f"({row['withdrawn_reason']})")
            conn.execute(update(studies).where(studies.c.id == row["id"])
                         .values(withdrawn_at=_now(), withdrawn_reason=reason))

    def _insert_study(self, values: dict, raters: Sequence[str], cases: Sequence[dict]) -> Study:
        """One transaction: the study row, its raters and its cases (create_study's last step)."""
        for rater in raters:
            check_name(rater, "rater")
        if len(set(raters)) != len(raters):
            twice = sorted({r for r in raters if list(raters).count(r) > 1})
            raise StudyError(f"raters must be distinct; named twice: {', '.join(twice)}")
        try:
            with self._write() as conn:
                if conn.execute(select(studies.c.id).where(studies.c.name == values["name"])).first():
                    raise StudyError(f"a study named {values['name']!r} already exists; choose another name")
                now = _now()
                study_id = conn.execute(insert(studies).values(**values, created_at=now, withdrawn_at=None,
                                                               withdrawn_reason="")).inserted_primary_key[0]
                if raters:
                    conn.execute(insert(study_raters), [
                        {"study_id": study_id, "name": r, "identity": None, "protocol": values["protocol"],
                         "added_at": now, "withdrawn_at": None, "withdrawn_reason": ""} for r in raters])
                conn.execute(insert(study_cases), [
                    {"study_id": study_id, "case_id": c["case_id"], "position": i, "label": c["label"],
                     "available": json.dumps(list(c["available"]))} for i, c in enumerate(cases)])
                return study_record(self._study_row(conn, values["name"]))
        except IntegrityError:  # a concurrent create_study took the name between the check and the insert
            raise StudyError(f"a study named {values['name']!r} already exists; choose another name") from None

    # ------------------------------------------------------------------------------------ raters
    def raters(self, study: str, include_withdrawn: bool = False) -> list[Rater]:
        with self._read() as conn:
            study_row = self._study_row(conn, study)
            query = select(study_raters).where(study_raters.c.study_id == study_row["id"]).order_by(study_raters.c.id)
            if not include_withdrawn:
                query = query.where(study_raters.c.withdrawn_at.is_(None))
            return [rater_record(row) for row in conn.execute(query).mappings()]

    def rater(self, study: str, name: str) -> Rater:
        with self._read() as conn:
            return rater_record(self._rater_row(conn, self._study_row(conn, study), name))

    def rater_for_identity(self, study: str, identity: str) -> Rater | None:
        """The rater whose name ``identity`` (an OIDC login) has claimed, or None."""
        with self._read() as conn:
            study_row = self._study_row(conn, study)
            row = conn.execute(select(study_raters).where(study_raters.c.study_id == study_row["id"],
                                                          study_raters.c.identity == identity)).mappings().first()
            return rater_record(row) if row else None

    def add_rater(self, study: str, name: str, *, identity: str | None = None, protocol: str | None = None) -> Rater:
        check_name(name, "rater")
        if identity is not None:
            check_name(identity, "identity", limit=320)
        try:
            with self._write() as conn:
                study_row = self._open_study_row(conn, study)
                rater_row = self._add_rater(conn, study_row, name, protocol, identity)
                return rater_record(rater_row)
        except IntegrityError:
            raise StudyError(f"study {study!r} already has a rater {name!r} or one bound to {identity!r}") from None

    def _add_rater(self, conn: Connection, study_row, name: str, protocol: str | None,
                   identity: str | None = None):
        protocol = check_protocol(protocol or study_row["protocol"])
        taken = conn.execute(select(study_raters.c.id).where(study_raters.c.study_id == study_row["id"],
                                                             study_raters.c.name == name)).first()
        if taken:
            raise StudyError(f"study {study_row['name']!r} already has a rater {name!r}")
        if identity is not None:
            self._check_identity_free(conn, study_row, identity, name)
        rater_id = conn.execute(insert(study_raters).values(
            study_id=study_row["id"], name=name, identity=identity, protocol=protocol, added_at=_now(),
            withdrawn_at=None, withdrawn_reason="")).inserted_primary_key[0]
        return conn.execute(select(study_raters).where(study_raters.c.id == rater_id)).mappings().one()

    def bind_identity(self, study: str, name: str, identity: str) -> Rater:
        """Bind an OIDC login to a rater name (a rater's first login claims their name). A name bound to
        another login, or a login already bound to another name, is refused."""
        check_name(identity, "identity", limit=320)
        try:
            with self._write() as conn:
                study_row = self._study_row(conn, study)
                row = self._rater_row(conn, study_row, name)
                if row["identity"] == identity:
                    return rater_record(row)
                if row["identity"] is not None:
                    raise StudyError(f"rater {name!r} of study {study!r} is already bound to another login; "
                                     "ask the study's organiser if this is you")
                self._check_identity_free(conn, study_row, identity, name)
                conn.execute(update(study_raters).where(study_raters.c.id == row["id"]).values(identity=identity))
                return rater_record(self._rater_row(conn, study_row, name))
        except IntegrityError:  # a concurrent login bound the same identity first
            raise StudyError(f"login {identity!r} is already bound to another rater of study {study!r}") from None

    def _check_identity_free(self, conn: Connection, study_row, identity: str, name: str) -> None:
        other = conn.execute(select(study_raters.c.name).where(study_raters.c.study_id == study_row["id"],
                                                               study_raters.c.identity == identity)).first()
        if other and other.name != name:
            raise StudyError(f"login {identity!r} is already bound to rater {other.name!r} of study "
                             f"{study_row['name']!r}; one login rates as one name")

    def withdraw_rater(self, study: str, name: str, reason: str) -> None:
        """Mark the rater and every submission of theirs not already withdrawn as withdrawn."""
        reason = check_reason(reason, "withdrawing a rater")
        with self._write() as conn:
            row = self._rater_row(conn, self._study_row(conn, study), name)
            if row["withdrawn_at"] is not None:
                raise StudyError(f"rater {name!r} of study {study!r} was already withdrawn ({row['withdrawn_reason']})")
            now = _now()
            conn.execute(update(study_raters).where(study_raters.c.id == row["id"])
                         .values(withdrawn_at=now, withdrawn_reason=reason))
            conn.execute(update(submissions).where(submissions.c.rater_id == row["id"],
                                                   submissions.c.withdrawn_at.is_(None))
                         .values(withdrawn_at=now, withdrawn_reason=f"rater withdrawn: {reason}"))

    # ------------------------------------------------------------------------------------ cases
    def cases(self, study: str) -> list[StudyCase]:
        """The study's cases in study order."""
        with self._read() as conn:
            return self._cases(conn, self._study_row(conn, study))

    def _cases(self, conn: Connection, study_row) -> list[StudyCase]:
        query = select(study_cases).where(study_cases.c.study_id == study_row["id"]).order_by(study_cases.c.position)
        return [case_record(row) for row in conn.execute(query).mappings()]

    def queue(self, study: str, rater: str) -> list[str]:
        """The rater's own case order: a permutation of the study's cases seeded by (study seed, rater name),
        the same every time (so raters do not all start on the same case, and a rater's order never moves)."""
        with self._read() as conn:
            study_row = self._study_row(conn, study)
            self._rater_row(conn, study_row, rater)
            return queue_order([c.case_id for c in self._cases(conn, study_row)], study_row["seed"], rater)

    def next_case(self, study: str, rater: str) -> str | None:
        """The first case of the rater's queue without a current (latest, not withdrawn) ranking or skip;
        None when the rater is done."""
        done = {s.case_id for s in self.latest(study, rater)}
        return next((case for case in self.queue(study, rater) if case not in done), None)

    def progress(self, study: str) -> pd.DataFrame:
        """One row per rater (withdrawn ones left out): rater, protocol, ranked, skipped, to_do, total."""
        raters = self.raters(study)
        total = len(self.cases(study))
        current = self.latest(study)
        rows = []
        for rater in raters:
            kinds = [s.kind for s in current if s.rater == rater.name]
            ranked, skipped = kinds.count("ranking"), kinds.count("skip")
            rows.append({"rater": rater.name, "protocol": rater.protocol, "ranked": ranked, "skipped": skipped,
                         "to_do": total - ranked - skipped, "total": total})
        columns = ["rater", "protocol", "ranked", "skipped", "to_do", "total"]
        return pd.DataFrame(rows, columns=columns).astype({c: "int64" for c in columns[2:]})

    # ------------------------------------------------------------------------------------ submissions
    def submit(self, study: str, rater: str, case_id: str, ranks: Mapping[str, int], *, token: str,
               diagnosis: str | None = None, confidence: int | None = None, reason: str = "",
               source: str = "dashboard") -> Submission:
        """Store a ranking of the modalities the case has (a new revision when the rater has ranked or
        skipped the case before). The same ``token`` again returns the stored row with ``duplicate=True``."""
        check_token(token)
        check_source(source)
        confidence = check_confidence(confidence)
        if not isinstance(reason, str):
            raise StudyError(f"reason must be text, got {type(reason).__name__}")

        def work(conn: Connection) -> Submission:
            stored = self._by_token(conn, token, rater, case_id)
            if stored is not None:
                return stored
            study_row, rater_row, case_row = self._target(conn, study, rater, case_id)
            case = case_record(case_row)
            clean = check_ranks(ranks, case.available, allow_ties=study_row["allow_ties"], case_id=case_id)
            check_diagnosis(diagnosis, tuple(json.loads(study_row["classes"])))
            return self._insert_submission(conn, study_row, rater_row, case_row, kind="ranking", ranks=clean,
                                           diagnosis=diagnosis, confidence=confidence, reason=reason.strip(),
                                           source=source, token=token)

        return self._retrying(work)

    def skip(self, study: str, rater: str, case_id: str, reason: str, *, token: str,
             source: str = "dashboard") -> Submission:
        """Record that the rater skips the case, with the reason (required)."""
        reason = check_reason(reason, "skipping a case")
        check_token(token)
        check_source(source)

        def work(conn: Connection) -> Submission:
            stored = self._by_token(conn, token, rater, case_id)
            if stored is not None:
                return stored
            study_row, rater_row, case_row = self._target(conn, study, rater, case_id)
            return self._insert_submission(conn, study_row, rater_row, case_row, kind="skip", ranks={},
                                           diagnosis=None, confidence=None, reason=reason, source=source,
                                           token=token)

        return self._retrying(work)

    def withdraw_submission(self, submission_id: int, reason: str) -> None:
        reason = check_reason(reason, "withdrawing a submission")
        with self._write() as conn:
            row = conn.execute(select(submissions.c.withdrawn_at).where(submissions.c.id == submission_id)).first()
            if row is None:
                raise StudyError(f"there is no submission {submission_id!r}")
            if row.withdrawn_at is not None:
                raise StudyError(f"submission {submission_id} was already withdrawn")
            conn.execute(update(submissions).where(submissions.c.id == submission_id)
                         .values(withdrawn_at=_now(), withdrawn_reason=reason))

    def history(self, study: str, rater: str | None = None, case_id: str | None = None) -> list[Submission]:
        """Every submission (withdrawn ones included), oldest first, optionally of one rater and/or case."""
        with self._read() as conn:
            study_row = self._study_row(conn, study)
            if rater is not None:
                self._rater_row(conn, study_row, rater)
            if case_id is not None:
                self._case_row(conn, study_row, case_id)
            return self._history(conn, study_row, rater, case_id)

    def latest(self, study: str, rater: str | None = None) -> list[Submission]:
        """The current submission per (rater, case): the latest one not withdrawn, of raters not withdrawn;
        in history order."""
        with self._read() as conn:
            study_row = self._study_row(conn, study)
            if rater is not None:
                self._rater_row(conn, study_row, rater)
            active = {r["name"] for r in conn.execute(select(study_raters.c.name).where(
                study_raters.c.study_id == study_row["id"], study_raters.c.withdrawn_at.is_(None))).mappings()}
            rows = self._history(conn, study_row, rater, None)
        current: dict[tuple[str, str], Submission] = {}
        for row in rows:
            if row.withdrawn_at is None and row.rater in active:
                key = (row.rater, row.case_id)
                if key not in current or row.revision > current[key].revision:
                    current[key] = row
        return sorted(current.values(), key=lambda s: s.id)

    def rankings(self, study: str, protocol: str | None = None) -> pd.DataFrame:
        """The study's current rankings as read_rankings returns a rankings file: case_id, rater, then one
        nullable Int64 column per study modality (<NA> = not ranked); skips left out; with ``protocol``, only
        rankings made under it. Sorted by case_id, rater."""
        if protocol is not None:
            check_protocol(protocol)
        names = self.study(study).modalities
        rows = [s for s in self.latest(study) if s.kind == "ranking" and protocol in (None, s.protocol)]
        return _rankings_frame(rows, names)

    def rankings_by_protocol(self, study: str) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
        """``rankings(study)`` and ``rankings(study, protocol=p)`` for every protocol p, from one reading of the
        study's submissions (the agreement page redraws with all of them on every rerun)."""
        names = self.study(study).modalities
        rows = [s for s in self.latest(study) if s.kind == "ranking"]
        return _rankings_frame(rows, names), {p: _rankings_frame([s for s in rows if s.protocol == p], names)
                                              for p in PROTOCOLS}

    def export_csv(self, study: str, path: str | Path) -> int:
        """Write the study's rankings in the cohort's clinician_rankings.csv format -> rows written."""
        frame = self.rankings(study)
        write_rankings(path, frame, self.study(study).modalities)
        return len(frame)

    def import_csv(self, study: str, source: str | Path | bytes, *, cohort: CohortReader | None = None,
                   name: str | None = None, protocol: str | None = None) -> int:
        """Store each row of a rankings file (clinician_rankings.csv format) as a submission with source
        "import" -> the number of new rows. The file is checked by read_rankings (against ``cohort`` when
        given), then against the study (its cases, each case's modalities, its ties rule); raters not yet in
        the study are added with ``protocol`` (default: the study's). Each row's token comes from the file's
        SHA-256 and the row (and the study), so importing the same file again adds nothing. All or nothing."""
        study_record = self.study(study)
        if protocol is not None:
            check_protocol(protocol)
        data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
        if cohort is not None and tuple(cohort.modality_names) != study_record.modalities:
            raise StudyError(f"the cohort's modalities ({', '.join(cohort.modality_names)}) are not the study's "
                             f"({', '.join(study_record.modalities)})")
        frame = read_rankings(source if isinstance(source, (str, Path)) else data, name=name, cohort=cohort,
                              modalities=study_record.modalities)
        digest = hashlib.sha256(data).hexdigest()
        shown = Path(source).name if isinstance(source, (str, Path)) else (name or "uploaded file")

        def work(conn: Connection) -> int:
            study_row = self._open_study_row(conn, study)
            cases = {c.case_id: c for c in self._cases(conn, study_row)}
            rater_rows = {r["name"]: r for r in conn.execute(select(study_raters).where(
                study_raters.c.study_id == study_row["id"])).mappings()}
            errors, planned = [], []
            for i, row in enumerate(frame.to_dict("records")):
                line = f"{shown}, line {i + 2}, case {row['case_id']}, rater {row['rater']}"
                case = cases.get(row["case_id"])
                if case is None:
                    errors.append(f"{line}: case {row['case_id']!r} is not in study {study!r}")
                    continue
                rater_row = rater_rows.get(row["rater"])
                if rater_row is not None and rater_row["withdrawn_at"] is not None:
                    errors.append(f"{line}: rater {row['rater']!r} was withdrawn from the study")
                    continue
                ranks = {m: int(row[m]) for m in study_record.modalities if not pd.isna(row[m])}
                try:
                    ranks = check_ranks(ranks, case.available, allow_ties=study_row["allow_ties"], case_id=case.case_id)
                except StudyError as err:
                    errors.append(f"{line}: {err}")
                    continue
                key = f"{study_row['id']}|{digest}|{row['case_id']}|{row['rater']}"  # tokens are unique across studies
                token = "import:" + hashlib.sha256(key.encode()).hexdigest()
                planned.append((row["rater"], case.case_id, ranks, token))
            if errors:
                shown_errors = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
                raise StudyError(f"{len(errors)} row(s) of {shown} do not fit study {study!r}; nothing was "
                                 "imported:\n" + "\n".join(shown_errors))
            added = 0
            for rater, case_id, ranks, token in planned:
                if conn.execute(select(submissions.c.id).where(submissions.c.token == token)).first():
                    continue
                if rater not in rater_rows:
                    rater_rows[rater] = self._add_rater(conn, study_row, rater, protocol)
                case_row = self._case_row(conn, study_row, case_id)
                self._insert_submission(conn, study_row, rater_rows[rater], case_row, kind="ranking", ranks=ranks,
                                        diagnosis=None, confidence=None, reason="", source="import", token=token)
                added += 1
            return added

        return self._retrying(work)

    # ------------------------------------------------------------------------------------ internals
    def _study_row(self, conn: Connection, name: str):
        row = conn.execute(select(studies).where(studies.c.name == name)).mappings().first()
        if row is None:
            known = conn.execute(select(studies.c.name).order_by(studies.c.name)).scalars().all()
            raise StudyError(f"there is no study {name!r}; studies: {', '.join(known) or 'none yet'}")
        return row

    def _open_study_row(self, conn: Connection, name: str):
        row = self._study_row(conn, name)
        if row["withdrawn_at"] is not None:
            raise StudyError(f"study {name!r} was withdrawn ({row['withdrawn_reason']}); it takes no more "
                             "raters or submissions")
        return row

    def _rater_row(self, conn: Connection, study_row, name: str):
        row = conn.execute(select(study_raters).where(study_raters.c.study_id == study_row["id"],
                                                      study_raters.c.name == name)).mappings().first()
        if row is None:
            known = conn.execute(select(study_raters.c.name).where(study_raters.c.study_id == study_row["id"])
                                 .order_by(study_raters.c.id)).scalars().all()
            raise StudyError(f"study {study_row['name']!r} has no rater {name!r}; raters: "
                             f"{', '.join(known) or 'none yet'}")
        return row

    def _case_row(self, conn: Connection, study_row, case_id: str):
        row = conn.execute(select(study_cases).where(study_cases.c.study_id == study_row["id"],
                                                     study_cases.c.case_id == case_id)).mappings().first()
        if row is None:
            count = conn.execute(select(func.count()).where(study_cases.c.study_id == study_row["id"])).scalar_one()
            raise StudyError(f"case {case_id!r} is not one of the {count} cases of study {study_row['name']!r}")
        return row

    def _target(self, conn: Connection, study: str, rater: str, case_id: str):
        """(study, rater, case) rows for a new submission: all must exist and none be withdrawn."""
        study_row = self._open_study_row(conn, study)
        rater_row = self._rater_row(conn, study_row, rater)
        if rater_row["withdrawn_at"] is not None:
            raise StudyError(f"rater {rater!r} was withdrawn from study {study!r} ({rater_row['withdrawn_reason']}); "
                             "they cannot submit")
        return study_row, rater_row, self._case_row(conn, study_row, case_id)

    def _by_token(self, conn: Connection, token: str, rater: str, case_id: str) -> Submission | None:
        """The stored submission with ``token`` (duplicate=True), or None; a token reused for another
        (rater, case) is a client bug and refused."""
        row = conn.execute(submission_query().where(submissions.c.token == token)).mappings().first()
        if row is None:
            return None
        stored = submission_record(row, self._ranks(conn, [row["id"]]).get(row["id"], {}), duplicate=True)
        if (stored.rater, stored.case_id) != (rater, case_id):
            raise StudyError(f"token {token!r} was already used by submission {stored.id} (rater {stored.rater!r}, "
                             f"case {stored.case_id!r}); each submission needs a new token")
        return stored

    def _insert_submission(self, conn: Connection, study_row, rater_row, case_row, *, kind: str,
                           ranks: dict[str, int], diagnosis: str | None, confidence: int | None, reason: str,
                           source: str, token: str) -> Submission:
        earlier = (submissions.c.rater_id == rater_row["id"], submissions.c.study_case_id == case_row["id"])
        previous = conn.execute(select(func.max(submissions.c.revision)).where(*earlier)).scalar_one()
        values = {"study_id": study_row["id"], "rater_id": rater_row["id"], "study_case_id": case_row["id"],
                  "revision": (previous or 0) + 1, "kind": kind, "diagnosis": diagnosis, "confidence": confidence,
                  "reason": reason, "protocol": self._protocol(conn, study_row, rater_row, earlier),
                  "source": source, "token": token,
                  "submitted_at": _now(), "withdrawn_at": None, "withdrawn_reason": ""}
        submission_id = conn.execute(insert(submissions).values(**values)).inserted_primary_key[0]
        if ranks:
            conn.execute(insert(submission_ranks), [{"submission_id": submission_id, "modality": m, "rank": r}
                                                    for m, r in ranks.items()])
        return Submission(id=submission_id, study_id=study_row["id"], rater=rater_row["name"],
                          case_id=case_row["case_id"], revision=values["revision"], kind=kind, ranks=dict(ranks),
                          diagnosis=diagnosis, confidence=confidence, reason=reason, protocol=values["protocol"],
                          source=source, token=token, submitted_at=values["submitted_at"], withdrawn_at=None,
                          withdrawn_reason="")

    @staticmethod
    def _protocol(conn: Connection, study_row, rater_row, earlier: tuple) -> str:
        """What the rater had seen of the model when answering: their protocol, except that in a study that
        reveals the model's view after each ranking made in the dashboard, a blinded rater who ranked this case
        there before has seen it, so a revision is stored as unblinded (the contrast counts it with those who
        saw the model)."""
        if rater_row["protocol"] != "blinded" or not study_row["reveal"]:
            return rater_row["protocol"]
        revealed = conn.execute(select(func.count()).select_from(submissions).where(
            *earlier, submissions.c.kind == "ranking", submissions.c.source == "dashboard")).scalar_one()
        return "unblinded" if revealed else "blinded"

    def _history(self, conn: Connection, study_row, rater: str | None, case_id: str | None) -> list[Submission]:
        query = submission_query().where(submissions.c.study_id == study_row["id"]).order_by(submissions.c.id)
        if rater is not None:
            query = query.where(study_raters.c.name == rater)
        if case_id is not None:
            query = query.where(study_cases.c.case_id == case_id)
        rows = conn.execute(query).mappings().all()
        ranks = self._ranks(conn, study_id=study_row["id"]) if rows else {}
        return [submission_record(row, ranks.get(row["id"], {})) for row in rows]

    def _ranks(self, conn: Connection, ids: list[int] | None = None,
               study_id: int | None = None) -> dict[int, dict[str, int]]:
        query = select(submission_ranks)
        if ids is not None:
            query = query.where(submission_ranks.c.submission_id.in_(ids))
        else:
            query = query.join(submissions, submissions.c.id == submission_ranks.c.submission_id).where(
                submissions.c.study_id == study_id)
        out: dict[int, dict[str, int]] = {}
        for row in conn.execute(query).mappings():
            out.setdefault(row["submission_id"], {})[row["modality"]] = int(row["rank"])
        return out


def _rankings_frame(rows: list, names: tuple[str, ...]) -> pd.DataFrame:
    """Ranking submissions as read_rankings' frame: case_id, rater, one nullable Int64 rank column per modality,
    sorted by case_id, rater."""
    rows = sorted(rows, key=lambda s: (s.case_id, s.rater))
    frame = pd.DataFrame({"case_id": pd.Series([s.case_id for s in rows], dtype="str"),
                          "rater": pd.Series([s.rater for s in rows], dtype="str")})
    for modality in names:
        frame[modality] = pd.array([s.ranks.get(modality) for s in rows], dtype="Int64")
    return frame
