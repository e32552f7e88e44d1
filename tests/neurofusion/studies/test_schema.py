"""The study database's schema on both engines: migrations (fresh, reopened, upgraded from version 1, newer
than the code), and the constraints that keep it consistent whatever a client does: foreign keys, one row
per token, one row per (rater, case, revision)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import func, inspect, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from neurofusion.studies import LATEST_VERSION, MIGRATIONS, StudyError, StudyStore
from neurofusion.studies.schema import migrate, schema_version, studies, study_cases, study_raters, submissions
from neurofusion.studies.engine import make_engine
from tests.neurofusion.studies.conftest import ranking

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_a_fresh_database_is_at_the_latest_version_and_reopening_changes_nothing(study_url):
    assert len(MIGRATIONS) >= 2 and [m.version for m in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))
    with StudyStore(study_url) as store:
        assert store.schema_version == LATEST_VERSION
    engine = make_engine(study_url)
    with engine.connect() as conn:
        before = conn.execute(select(schema_version).order_by(schema_version.c.version)).all()
        tables = set(inspect(conn).get_table_names())
    assert [row.version for row in before] == [m.version for m in MIGRATIONS]
    assert {"schema_version", "studies", "study_raters", "study_cases", "submissions", "submission_ranks"} <= tables
    with StudyStore(study_url) as store:
        assert store.schema_version == LATEST_VERSION
    with engine.connect() as conn:
        assert conn.execute(select(schema_version).order_by(schema_version.c.version)).all() == before
    engine.dispose()


def test_a_database_newer_than_the_code_is_refused(study_url):
    StudyStore(study_url).close()
    engine = make_engine(study_url)
    with engine.begin() as conn:
        conn.execute(insert(schema_version).values(version=LATEST_VERSION + 1, description="from the future",
                                                   applied_at=NOW))
    engine.dispose()
    with pytest.raises(StudyError, match=f"schema version {LATEST_VERSION + 1}, newer than this code knows "
                                         f"\\({LATEST_VERSION}\\); update NeuroFusion Explorer"):
        StudyStore(study_url)


def test_a_version_1_database_upgrades_with_its_rows_kept(study_url):
    engine = make_engine(study_url)
    with engine.begin() as conn:
        assert migrate(conn, "test", MIGRATIONS[:1]) == 1
        study_id = conn.execute(insert(studies).values(
            name="old", task="cardio", outcome="classification", cohort_dir="c", cohort_sha256="0" * 64,
            checkpoint_dir="k", checkpoint_sha256="1" * 64, modalities='["image", "text"]',
            classes='["normal", "heart_failure"]', selection="all cases", protocol="blinded", allow_ties=False,
            reveal=True, reveal_method="shapley", seed=0, created_at=NOW, created_by="", withdrawn_at=None,
            withdrawn_reason="")).inserted_primary_key[0]
        rater_id = conn.execute(insert(study_raters).values(
            study_id=study_id, name="ann", identity=None, protocol="blinded", added_at=NOW, withdrawn_at=None,
            withdrawn_reason="")).inserted_primary_key[0]
        conn.execute(insert(study_cases).values(study_id=study_id, case_id="P1", position=0, label="normal",
                                                available='["image", "text"]'))
    with engine.connect() as conn:
        assert "ix_submissions_study" not in {ix["name"] for ix in inspect(conn).get_indexes("submissions")}
    engine.dispose()
    with StudyStore(study_url) as store:
        assert store.schema_version == LATEST_VERSION
        assert store.study("old").created_at == NOW and store.rater("old", "ann").id == rater_id
        case = store.cases("old")[0]
        store.submit("old", "ann", "P1", ranking(case, [2, 1]), token="after-upgrade")
        assert store.rankings("old")[["image", "text"]].iloc[0].tolist() == [2, 1]
    engine = make_engine(study_url)
    with engine.connect() as conn:
        assert "ix_submissions_study" in {ix["name"] for ix in inspect(conn).get_indexes("submissions")}
    engine.dispose()


def test_a_failed_migration_leaves_the_database_as_it_was(study_url):
    from neurofusion.studies.schema import Migration

    def broken(conn):
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        raise RuntimeError("migration 3 failed half-way")

    engine = make_engine(study_url)
    with engine.begin() as conn:
        migrate(conn, "test", MIGRATIONS)
    with pytest.raises(RuntimeError, match="half-way"):
        with engine.connect() as conn:
            conn.execution_options(study_write=True)
            with conn.begin():
                migrate(conn, "test", (*MIGRATIONS, Migration(LATEST_VERSION + 1, "broken", broken)))
    with engine.connect() as conn:
        assert "half_done" not in inspect(conn).get_table_names()
        assert conn.execute(select(func.max(schema_version.c.version))).scalar_one() == LATEST_VERSION
    engine.dispose()


def test_constraints_make_duplicates_and_dangling_rows_impossible(store, demo):
    case = store.cases("demo")[0]
    stored = store.submit("demo", "ann", case.case_id, ranking(case), token="once")
    engine = make_engine(_url(store))
    with engine.connect() as conn:
        row = dict(conn.execute(select(submissions).where(submissions.c.id == stored.id)).mappings().one())
    row.pop("id")
    for change, violated in [({"token": "once", "revision": 2}, "token"),
                             ({"token": "other", "revision": 1}, "(rater, case, revision)"),
                             ({"token": "x", "revision": 2, "rater_id": 999_999}, "foreign key to raters"),
                             ({"token": "y", "revision": 2, "study_case_id": 999_999}, "foreign key to cases"),
                             ({"token": "z", "revision": 0}, "revision >= 1"),
                             ({"token": "w", "revision": 3, "confidence": 9}, "confidence 1..5"),
                             ({"token": "v", "revision": 4, "kind": "guess"}, "kind")]:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(submissions).values(**{**row, **change}))
            pytest.fail(f"the database accepted a row breaking {violated}")
    with pytest.raises(IntegrityError), engine.begin() as conn:  # a study's rater names are unique
        conn.execute(insert(study_raters).values(study_id=demo.id, name="ann", identity=None, protocol="blinded",
                                                 added_at=NOW, withdrawn_at=None, withdrawn_reason=""))
    with pytest.raises(IntegrityError), engine.begin() as conn:  # so are a study's case positions
        conn.execute(update(study_cases).where(study_cases.c.id == case.id + 1).values(position=case.position))
    engine.dispose()
    assert len(store.history("demo")) == 1


def test_sqlite_runs_in_wal_mode_with_foreign_keys_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'studies.sqlite'}"
    StudyStore(url).close()
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30_000
    engine.dispose()


def _url(store: StudyStore) -> str:
    return store._engine.url.render_as_string(hide_password=False)
