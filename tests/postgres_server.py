"""A throwaway PostgreSQL server for the test session, from Debian's ``postgresql`` package binaries.

``postgres_server()`` runs initdb into a temporary folder (trust authentication, no TCP: the server listens on
a unix socket in that folder only), starts it with ``pg_ctl start -w``, yields a :class:`PostgresServer` that
creates a fresh database per test, and stops and removes everything at the end. PostgreSQL refuses to run as
root: as root, initdb and pg_ctl run as the package's ``postgres`` user (``runuser``), the folder owned by it.

Missing binaries raise :class:`PostgresMissing` (the tests skip with its reason); a server that is installed
but fails to start raises :class:`PostgresFailed` carrying the server's log (the tests fail with it).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MISSING = "PostgreSQL server binaries not found (Debian package postgresql): "
SUPERUSER = "postgres"


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


class PostgresFailed(RuntimeError):
    """PostgreSQL is installed but the throwaway server could not be set up; the message holds its log."""


def find_bindir() -> Path:
    """The folder of initdb / pg_ctl: the newest /usr/lib/postgresql/<version>/bin (Debian), else what
    ``pg_config --bindir`` or PATH says."""
    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parts[-3]
        return tuple(int(x) for x in part.split(".") if x.isdigit()) or (0,)

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    tried = ["/usr/lib/postgresql/*/bin/initdb"]
    if shutil.which("pg_config"):
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        if bindir and (Path(bindir) / "initdb").is_file() and (Path(bindir) / "pg_ctl").is_file():
            return Path(bindir)
        tried.append(f"pg_config --bindir ({bindir or 'no answer'})")
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    tried.append("initdb on PATH")
    raise PostgresMissing(MISSING + "looked in " + ", ".join(tried) + "; install it with `make postgresql`")


class PostgresServer:
    """A running throwaway server: ``url(database)`` is its SQLAlchemy URL, ``create_database()`` makes a
    fresh, empty database and returns its name, ``drop_database(name)`` removes it (closing connections)."""

    def __init__(self, socket_dir: Path, log: Path) -> None:
        self.socket_dir, self.log = socket_dir, log
        self._names = itertools.count(1)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def _admin(self):
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), dbname="postgres", user=SUPERUSER, autocommit=True)

    def create_database(self) -> str:
        name = f"study_test_{os.getpid()}_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="nf-postgres-"))
    try:
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise PostgresFailed(f"running as root and there is no {SUPERUSER!r} user to run PostgreSQL as "
                                     "(the Debian package creates it; reinstall postgresql)") from None
            if not shutil.which("runuser"):
                raise PostgresFailed("running as root: runuser (util-linux) is needed to start PostgreSQL as "
                                     f"{SUPERUSER!r}")
            os.chown(root, account.pw_uid, account.pw_gid)
            prefix = ["runuser", "-u", SUPERUSER, "--"]
        data, log = root / "data", root / "server.log"
        _run(prefix + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                       "--locale=C", "--no-sync"], "initdb", log)
        # test-only settings: no durability (fsync off) is fine for a database removed at the end
        options = (f"-c listen_addresses='' -k {root} -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=200")
        _run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options,
                       "start"], "pg_ctl start", log)
        try:
            yield PostgresServer(root, log)
        finally:
            subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(command: list[str], what: str, log: Path) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise PostgresFailed(f"{what} failed: {err}") from None
    if done.returncode != 0:
        server_log = log.read_text(errors="replace") if log.is_file() else "(no server log)"
        raise PostgresFailed(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n"
                             f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\nserver log:\n{server_log}")
