"""Fixtures of the study database tests: every store test runs on SQLite (a file in tmp_path) and on a real
PostgreSQL server started for the session (tests/postgres_server.py), each test on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from neurofusion.studies import Study, StudyCase, StudyStore, create_study
from tests.postgres_server import PostgresFailed, PostgresMissing, PostgresServer, find_bindir, postgres_server

ROOT = Path(__file__).resolve().parents[3]
CARDIO = ROOT / "sample_data" / "cardio"
CARDIO_DEMO = ROOT / "sample_data" / "checkpoints" / "cardio_demo"
CANCER = ROOT / "sample_data" / "cancer"
CANCER_DEMO = ROOT / "sample_data" / "checkpoints" / "cancer_demo"
ENGINES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        find_bindir()
    except PostgresMissing as err:
        pytest.skip(str(err))
    try:
        with postgres_server() as server:
            yield server
    except PostgresFailed as err:  # installed but broken: a failure with the server's log, never a skip
        pytest.fail(str(err), pytrace=False)


def _fresh_url(engine: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'studies.sqlite'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = server.create_database()
    try:
        yield server.url(name)
    finally:
        server.drop_database(name)


@pytest.fixture(params=ENGINES)
def study_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: SQLite, then PostgreSQL."""
    yield from _fresh_url(request.param, request, tmp_path)


@pytest.fixture
def store(study_url: str) -> Iterator[StudyStore]:
    with StudyStore(study_url) as opened:
        yield opened


@pytest.fixture
def demo(store: StudyStore) -> Study:
    """A blinded study of 12 stratified cardio cases rated by ann and bob (no ties)."""
    return create_study(store, "demo", cohort_dir=CARDIO, checkpoint_dir=CARDIO_DEMO, selection="stratified", n=12,
                        seed=3, raters=["ann", "bob"])


def ranking(case: StudyCase, order: list[int] | None = None) -> dict[str, int]:
    """Ranks 1..k over the case's modalities, in declared order (or in ``order``'s)."""
    order = order or list(range(1, len(case.available) + 1))
    return dict(zip(case.available, order))


def case_with(store: StudyStore, study: str, k: int) -> StudyCase:
    """A case of the study with exactly ``k`` modalities."""
    return next(c for c in store.cases(study) if len(c.available) == k)
