"""The study database's tables (SQLAlchemy Core) and the small migration runner that keeps a database at the
schema this code knows.

A database records its version in ``schema_version`` (one row per applied migration). Opening a store applies
the pending migrations, in order, in one transaction (both engines run DDL transactionally): a failed upgrade
leaves the database as it was. A database at a newer version than ``MIGRATIONS`` knows is refused, so an old
copy of the code never writes into a schema it does not understand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    inspect,
    insert,
    select,
    text,
)


class StudyError(ValueError):
    """Bad input, an unknown name or a conflicting state in a study; the message says what, which field and
    what is expected."""


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on both engines. PostgreSQL stores ``timestamptz``; SQLite has no time
    zones, so the UTC wall time is stored and UTC is attached again on reading."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise StudyError(f"timestamps must be timezone-aware (UTC), got naive {value.isoformat()}")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
          "ck": "ck_%(table_name)s_%(constraint_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s",
          "pk": "pk_%(table_name)s"}
metadata = MetaData(naming_convention=NAMING)

schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

studies = Table(
    "studies", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("task", String(100), nullable=False),
    Column("outcome", String(50), nullable=False),
    Column("cohort_dir", Text, nullable=False),
    Column("cohort_sha256", String(64), nullable=False),
    Column("checkpoint_dir", Text, nullable=False),
    Column("checkpoint_sha256", String(64), nullable=False),
    Column("modalities", Text, nullable=False),  # JSON list, declared order
    Column("classes", Text, nullable=False),  # JSON list (empty for survival)
    Column("selection", Text, nullable=False),
    Column("protocol", String(20), nullable=False),
    Column("allow_ties", Boolean, nullable=False),
    Column("reveal", Boolean, nullable=False),
    Column("reveal_method", String(50), nullable=False),
    Column("seed", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("withdrawn_at", UTCDateTime),
    Column("withdrawn_reason", Text, nullable=False),
    CheckConstraint("protocol IN ('blinded', 'unblinded')", name="protocol"),
)

study_raters = Table(
    "study_raters", metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", Integer, ForeignKey("studies.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("identity", String(320)),  # the OIDC login bound to the name; NULL until someone claims it
    Column("protocol", String(20), nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("withdrawn_at", UTCDateTime),
    Column("withdrawn_reason", Text, nullable=False),
    UniqueConstraint("study_id", "name"),
    UniqueConstraint("study_id", "identity"),  # NULLs are distinct on both engines: many unbound names
    CheckConstraint("protocol IN ('blinded', 'unblinded')", name="protocol"),
)

study_cases = Table(
    "study_cases", metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", Integer, ForeignKey("studies.id"), nullable=False),
    Column("case_id", String(200), nullable=False),
    Column("position", Integer, nullable=False),
    Column("label", String(200)),
    Column("available", Text, nullable=False),  # JSON list of the modalities the case has, declared order
    UniqueConstraint("study_id", "case_id"),
    UniqueConstraint("study_id", "position"),
)

submissions = Table(
    "submissions", metadata,
    Column("id", Integer, primary_key=True),
    Column("study_id", Integer, ForeignKey("studies.id"), nullable=False),
    Column("rater_id", Integer, ForeignKey("study_raters.id"), nullable=False),
    Column("study_case_id", Integer, ForeignKey("study_cases.id"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("diagnosis", String(200)),
    Column("confidence", Integer),
    Column("reason", Text, nullable=False),
    Column("protocol", String(20), nullable=False),
    Column("source", String(20), nullable=False),
    Column("token", String(200), nullable=False),
    Column("submitted_at", UTCDateTime, nullable=False),
    Column("withdrawn_at", UTCDateTime),
    Column("withdrawn_reason", Text, nullable=False),
    UniqueConstraint("token"),
    UniqueConstraint("rater_id", "study_case_id", "revision"),
    CheckConstraint("kind IN ('ranking', 'skip')", name="kind"),
    CheckConstraint("revision >= 1", name="revision"),
    CheckConstraint("confidence IS NULL OR (confidence >= 1 AND confidence <= 5)", name="confidence"),
    CheckConstraint("protocol IN ('blinded', 'unblinded')", name="protocol"),
)

submission_ranks = Table(
    "submission_ranks", metadata,
    Column("submission_id", Integer, ForeignKey("submissions.id"), primary_key=True),
    Column("modality", String(100), primary_key=True),
    Column("rank", Integer, nullable=False),
    CheckConstraint("rank >= 1", name="rank"),
)

STUDY_TABLES = (studies, study_raters, study_cases, submissions, submission_ranks)


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn, tables=list(STUDY_TABLES), checkfirst=False)


# Version 2 adds the indexes behind the queries every page load makes (a study's submissions, a rater's
# history); they are plain CREATE INDEX statements both engines accept.
_INDEXES = (
    "CREATE INDEX ix_submissions_study ON submissions (study_id, rater_id, study_case_id)",
    "CREATE INDEX ix_study_raters_study ON study_raters (study_id)",
)


def _create_indexes(conn: Connection) -> None:
    for statement in _INDEXES:
        conn.execute(text(statement))


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "expert-ranking studies: studies, raters, cases, submissions and their ranks", _create_tables),
    Migration(2, "indexes on a study's submissions and raters", _create_indexes),
)
LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The database's schema version: 0 for an empty database."""
    if not inspect(conn).has_table(schema_version.name):
        return 0
    return int(conn.execute(select(func.coalesce(func.max(schema_version.c.version), 0))).scalar_one())


def migrate(conn: Connection, where: str, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Apply the pending ``migrations`` on ``conn`` (inside the caller's transaction) -> the version reached.
    A database newer than the last migration is refused with StudyError naming ``where``."""
    if conn.dialect.name == "postgresql":
        # two processes opening a fresh database at once: the second waits here, then finds nothing to do
        conn.execute(text("SELECT pg_advisory_xact_lock(7140514)"))
    if not inspect(conn).has_table(schema_version.name):
        schema_version.create(conn)
    version = current_version(conn)
    known = migrations[-1].version if migrations else 0
    if version > known:
        raise StudyError(f"the study database {where} is at schema version {version}, newer than this code knows "
                         f"({known}); update NeuroFusion Explorer to open it")
    for migration in migrations:
        if migration.version <= version:
            continue
        migration.apply(conn)
        conn.execute(insert(schema_version).values(version=migration.version, description=migration.description,
                                                   applied_at=datetime.now(timezone.utc)))
        version = migration.version
    return version
