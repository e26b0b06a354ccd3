"""PostgreSQL's disk full: `/readyz` says so, as the webhooks do, and the log names it.

A real full disk: the bridge's database lives in a tablespace on a small tmpfs (mounted
for the test; this needs root), which a filler file then fills. The WAL stays on the
server's own disk, as with a separate data volume, so an update in place (the old
heartbeat) still succeeds while no insert can. Without the right to mount, skipped.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Sandbox, config_text, wait_until
from tests.helpers.samples import invoice_event
from tests.integration.postgres.conftest import URL_ENV, PostgresServer

DISK = "8m"


@pytest.fixture
def small_disk() -> Iterator[Path]:
    if os.environ.get(URL_ENV):
        pytest.skip("the tablespace must be on this machine")
    base = Path(tempfile.mkdtemp(prefix="bridge-pg-disk-"))
    base.chmod(0o755)  # the server's OS user must reach it (pytest's tmp_path is private)
    path = base / "disk"
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no byte left."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        try:
            while True:
                out.write(b"\0")
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


@pytest.fixture
def small_database(postgres_server: PostgresServer, small_disk: Path) -> Iterator[str]:
    """A database whose tables live on the small disk; dropped after the bridge stops."""
    name = f"bridge_full_{os.getpid()}"
    space = f"small_{os.getpid()}"
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLESPACE {space} LOCATION '{small_disk}'")
        conn.execute(f'CREATE DATABASE "{name}" TABLESPACE {space}')
    try:
        yield postgres_server.url(name)
    finally:
        with psycopg.connect(postgres_server.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f"DROP TABLESPACE IF EXISTS {space}")


def test_readyz_fails_while_no_insert_can_succeed_and_recovers(
    small_database: str, small_disk: Path, make_bridge: Callable[..., Any], sandbox: Sandbox
) -> None:
    url = small_database
    bridge = make_bridge(config_text(url, sandbox.url), database=url)
    customer = sandbox.state.add_customer()
    first = invoice_event("evt_f0", "in_f0", customer=customer)
    assert bridge.send_stripe(first).status_code == 200
    bridge.settle()
    assert httpx.get(f"{bridge.url}/readyz").status_code == 200

    filler = fill(small_disk)
    codes = []
    for n in range(1, 400):  # the pages already there hold a few more rows
        event = invoice_event(f"evt_f{n}", f"in_f{n}", customer=customer)
        codes.append(bridge.send_stripe(event).status_code)
        if codes[-1] == 503:
            break
    assert codes[-1] == 503, "the disk never filled"
    ready = httpx.get(f"{bridge.url}/readyz", timeout=30)
    assert ready.status_code == 503, ready.text
    assert "disk is full" in ready.json()["error"]

    filler.unlink()
    wait_until(lambda: httpx.get(f"{bridge.url}/readyz").status_code == 200, 15, "ready")
    event = invoice_event("evt_after", "in_after", customer=customer)
    assert bridge.send_stripe(event).status_code == 200
    bridge.settle(30)
