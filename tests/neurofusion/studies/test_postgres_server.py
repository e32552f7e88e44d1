"""The throwaway PostgreSQL server helper: a missing install is a skip with a reason naming the package, a
broken one a failure that carries what the server printed."""

from __future__ import annotations

import stat

import pytest

from tests import postgres_server as pg


def test_missing_binaries_give_the_reason_to_skip_with(monkeypatch):
    monkeypatch.setattr(pg.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(pg.shutil, "which", lambda name: None)
    with pytest.raises(pg.PostgresMissing, match=r"^PostgreSQL server binaries not found \(Debian package "
                                                 r"postgresql\): looked in /usr/lib/postgresql/\*/bin/initdb"):
        pg.find_bindir()


def test_a_server_that_cannot_start_fails_with_its_output(monkeypatch, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("initdb", "pg_ctl"):
        script = fake / name
        script.write_text("#!/bin/sh\necho 'initdb: could not create directory: simulated failure' >&2\nexit 1\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(pg, "find_bindir", lambda: fake)
    monkeypatch.setattr(pg.os, "geteuid", lambda: 1000)  # run the fake directly, not through runuser
    with pytest.raises(pg.PostgresFailed, match="(?s)initdb failed \\(exit 1\\).*simulated failure"):
        with pg.postgres_server():
            pytest.fail("the server helper yielded although initdb failed")


def test_each_test_database_is_fresh_and_reachable(postgres):
    import psycopg

    first, second = postgres.create_database(), postgres.create_database()
    assert first != second
    with psycopg.connect(host=str(postgres.socket_dir), dbname=first, user=pg.SUPERUSER) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
    postgres.drop_database(first)
    postgres.drop_database(second)
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        psycopg.connect(host=str(postgres.socket_dir), dbname=first, user=pg.SUPERUSER)
