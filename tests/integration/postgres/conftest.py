"""A private PostgreSQL server for the tests: started once per session, stopped after;
`cluster`, a server of one test's own to stop and start; and `store`, the store
contract's fixture, on SQLite and on PostgreSQL.

Debian's `postgresql` package (installed by `.ci/run`) provides the binaries under
/usr/lib/postgresql/<version>/bin. The cluster lives in a temporary directory, listens
on a free 127.0.0.1 port (unix sockets in the same directory) and trusts local
connections; every test gets a fresh database in it. As root, initdb and the server
run as the `postgres` OS user, since PostgreSQL refuses to run as root.

`BRIDGE_TEST_POSTGRES_URL` points the tests at an existing server instead (its user
must be allowed to CREATE DATABASE). Without binaries the tests are skipped locally and
FAIL under CI (`CI` set), so a CI image that lost PostgreSQL cannot pass quietly.
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
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from bridge.storage.store import Store, open_store
from tests.helpers.processes import free_port

BIN_ENV = "BRIDGE_TEST_PG_BIN"
URL_ENV = "BRIDGE_TEST_POSTGRES_URL"


@dataclass(frozen=True)
class PostgresServer:
    admin_url: str  # connects to the `postgres` maintenance database
    _names = itertools.count(1)

    def url(self, database: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + "/" + database

    def create_database(self, prefix: str = "bridge_test") -> str:
        """A new empty database; returns its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def find_bin_dir() -> Path | None:
    explicit = os.environ.get(BIN_ENV)
    if explicit:  # only there
        candidates = [explicit]
    else:  # the newest Debian version, else whatever is on PATH
        versions = glob.glob("/usr/lib/postgresql/*/bin")
        candidates = sorted(versions, key=_version, reverse=True)
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def _version(bin_dir: str) -> float:
    try:
        return float(Path(bin_dir).parent.name)
    except ValueError:
        return 0.0


def _as_owner(command: list[str], owner: str | None) -> list[str]:
    if owner is None:
        return command
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", owner, "--", *command]
    return ["su", owner, "-s", "/bin/sh", "-c", " ".join(command)]


def _run(command: list[str], owner: str | None, timeout: float = 60) -> None:
    done = subprocess.run(
        _as_owner(command, owner), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    external = os.environ.get(URL_ENV)
    if external:
        yield PostgresServer(external)
        return
    bin_dir = find_bin_dir()
    if bin_dir is None:
        message = (
            "PostgreSQL server binaries (initdb, pg_ctl) not found under "
            f"/usr/lib/postgresql/*/bin or on PATH: install Debian's `postgresql` package "
            f"(`.ci/run` does), or set {BIN_ENV} or {URL_ENV}"
        )
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    owner: str | None = None
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, and there is no `postgres` OS user to run the server")
        owner = "postgres"
    workdir = Path(tempfile.mkdtemp(prefix="bridge-pg-"))
    data = workdir / "data"
    logfile = workdir / "server.log"
    if owner is not None:
        shutil.chown(workdir, owner, owner)
    port = free_port()
    _run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        owner,
    )
    options = " ".join(
        [
            "-c listen_addresses=127.0.0.1",
            f"-c port={port}",
            f"-c unix_socket_directories={workdir}",
            "-c max_connections=300",
            "-c shared_buffers=32MB",
            # Test-only: nothing here survives the session, so the server need not fsync
            # (the bridge's own durability rests on the default synchronous_commit = on).
            "-c fsync=off",
            "-c full_page_writes=off",
        ]
    )
    try:
        _run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(logfile),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            owner,
            timeout=90,
        )
    except RuntimeError as exc:
        log = logfile.read_text(errors="replace") if logfile.exists() else ""
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"the test PostgreSQL server did not start: {exc}\n{log}", pytrace=False)
    stop = _as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], owner)
    watchdog = _watchdog(stop, workdir)
    try:
        yield PostgresServer(f"postgresql://postgres@127.0.0.1:{port}/postgres")
    finally:
        try:
            _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], owner)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            watchdog.kill()
            watchdog.wait(5)


def _watchdog(stop: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    """Stops the server and removes its folder if this test session is killed before
    its teardown runs (a timeout, SIGKILL), so no orphan server outlives it."""
    script = (
        'while kill -0 "$0" 2>/dev/null; do sleep 1; done; "$@" >/dev/null 2>&1; rm -rf "$WORKDIR"'
    )
    return subprocess.Popen(
        ["sh", "-c", script, str(os.getpid()), *stop],
        env={**os.environ, "WORKDIR": str(workdir)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not in the session's process group: survives its kill
    )


def drop_connections(url: str) -> int:
    """What a failover or a server restart does to every open connection: every other
    backend on the database is terminated; returns how many."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


@dataclass
class Cluster:
    """A PostgreSQL server of one test's own, to stop and start under it (stopping the
    session's shared server would disturb other tests)."""

    bin_dir: Path
    data: Path
    logfile: Path
    port: int
    owner: str | None
    options: str

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        pg_ctl = str(self.bin_dir / "pg_ctl")
        command = [pg_ctl, "-D", str(self.data), "-l", str(self.logfile), "-o", self.options]
        _run([*command, "-w", "-t", "60", "start"], self.owner, timeout=90)

    def stop(self) -> None:
        pg_ctl = str(self.bin_dir / "pg_ctl")
        _run([pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"], self.owner)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    if os.environ.get(URL_ENV):
        pytest.skip("needs a PostgreSQL server of its own to stop and start")
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found")
    owner = "postgres" if os.geteuid() == 0 else None
    workdir = Path(tempfile.mkdtemp(prefix="bridge-pg-outage-"))
    if owner is not None:
        shutil.chown(workdir, owner, owner)
    data = workdir / "data"
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
    _run([*initdb, "-E", "UTF8", "--locale=C", "--no-sync"], owner)
    port = free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={workdir}"
        " -c fsync=off -c full_page_writes=off"
    )
    found = Cluster(bin_dir, data, workdir / "server.log", port, owner, options)
    found.start()
    try:
        yield found
    finally:
        try:
            pg_ctl = str(bin_dir / "pg_ctl")
            stop = _as_owner([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], owner)
            subprocess.run(stop, capture_output=True, timeout=60, check=False)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database for one test."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "bridge.db")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    opened = open_store(database)
    yield opened
    opened.close()
