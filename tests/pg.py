# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Throwaway PostgreSQL servers for tests and benchmarks.

``throwaway_postgres()`` runs ``initdb`` into a temporary directory, starts ``postgres``
on a free 127.0.0.1 port (trust authentication, socket in the same directory), yields a
libpq DSN and, on exit, stops the server and deletes the cluster.  PostgreSQL refuses to
run as root, so under root the server runs as the ``postgres`` (or ``nobody``) account.

pytest usage (import the fixtures into the test module or a conftest)::

    from ansible_collections.labops.itsm.tests.pg import postgresql_server, postgresql_dsn  # noqa: F401

    def test_something(postgresql_dsn):      # a fresh, empty database per test
        ...

``postgresql_server`` is session-scoped (one server per run); ``postgresql_dsn`` creates a
new database on it for every test.  Both skip with a clear reason when the PostgreSQL
server binaries or psycopg are missing; ``LABOPS_TEST_PG_DSN`` points them at an existing
server instead (databases are still created and dropped per test).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

try:
    import pytest
except ImportError:  # bench/ledger.py uses this file without pytest
    pytest = None

try:
    import psycopg
except ImportError:
    psycopg = None

INSTALL_HINT = "install the Debian 'postgresql' package (scripts/bootstrap.sh with LABOPS_WITH_POSTGRES=1)"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be used here at all (binaries, account or psycopg missing): tests skip."""


class PostgresStartError(RuntimeError):
    """The binaries exist but the server failed: a real error, tests fail (never skip)."""


def find_pg_bin() -> Path | None:
    """Directory holding initdb/pg_ctl/postgres: $LABOPS_PG_BIN, else the newest /usr/lib/postgresql/*/bin."""
    candidates = [os.environ.get("LABOPS_PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                         reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).parent))
    for candidate in candidates:
        if candidate and all(os.access(os.path.join(candidate, tool), os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_account() -> pwd.struct_passwd | None:
    """None when not root (run as ourselves); else a non-root account postgres accepts."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither a 'postgres' nor a 'nobody' account exists to run the server")


def _run(cmd: list, account: pwd.struct_passwd | None, **kwargs) -> subprocess.CompletedProcess:
    if account is not None:
        kwargs.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120, **kwargs)


def _start(bindir: Path, workdir: Path, account: pwd.struct_passwd | None) -> int:
    """Start the server on a free port (retrying if another process grabs the port); return the port."""
    last_error = ""
    for dummy in range(5):
        port = free_port()
        options = "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100" % (port, workdir)
        try:
            _run([str(bindir / "pg_ctl"), "-D", str(workdir / "data"), "-l", str(workdir / "server.log"), "-o", options, "-w", "-t", "60", "start"],
                 account)
            return port
        except subprocess.CalledProcessError as exc:
            last_error = (exc.stderr or exc.stdout or "") + _tail(workdir / "server.log")
    raise PostgresStartError("PostgreSQL did not start: %s" % last_error.strip())


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-2000:]
    except OSError:
        return ""


@contextlib.contextmanager
def throwaway_postgres(user: str = "labops", dbname: str = "labops") -> Iterator[str]:
    """Yield the DSN of a brand-new PostgreSQL cluster; stop it and delete its files afterwards."""
    bindir = find_pg_bin()
    if bindir is None:
        raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; " + INSTALL_HINT)
    account = _server_account()
    workdir = Path(tempfile.mkdtemp(prefix="labops-pg-"))
    started = False
    try:
        if account is not None:
            os.chown(workdir, account.pw_uid, account.pw_gid)
        _run([str(bindir / "initdb"), "-D", str(workdir / "data"), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"], account)
        port = _start(bindir, workdir, account)
        started = True
        _run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, dbname], account)
        yield "host=127.0.0.1 port=%d user=%s dbname=%s" % (port, user, dbname)
    finally:
        if started:
            with contextlib.suppress(subprocess.SubprocessError):
                _run([str(bindir / "pg_ctl"), "-D", str(workdir / "data"), "-m", "immediate", "-w", "stop"], account)
        shutil.rmtree(workdir, ignore_errors=True)


def _with_dbname(dsn: str, dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


@contextlib.contextmanager
def scratch_database(server_dsn: str) -> Iterator[str]:
    """Create an empty database on ``server_dsn``'s server, yield its DSN, drop it afterwards."""
    if psycopg is None:
        raise PostgresUnavailable("psycopg (3.x) is not installed")
    name = "labops_test_%s" % uuid.uuid4().hex[:12]
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "%s"' % name)
    try:
        yield _with_dbname(server_dsn, name)
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


if pytest is not None:

    @pytest.fixture(scope="session")
    def postgresql_server() -> Iterator[str]:
        """DSN of a session-wide throwaway server (or of $LABOPS_TEST_PG_DSN)."""
        if psycopg is None:
            pytest.skip("psycopg (3.x) is not installed in this Python")
        if os.environ.get("LABOPS_TEST_PG_DSN"):
            yield os.environ["LABOPS_TEST_PG_DSN"]
            return
        try:
            server = throwaway_postgres()
            dsn = server.__enter__()
        except PostgresUnavailable as exc:
            pytest.skip(str(exc))
        try:
            yield dsn
        finally:
            server.__exit__(None, None, None)

    @pytest.fixture()
    def postgresql_dsn(postgresql_server: str) -> Iterator[str]:  # pylint: disable=redefined-outer-name
        """DSN of a fresh, empty database, dropped after the test."""
        with scratch_database(postgresql_server) as dsn:
            yield dsn
