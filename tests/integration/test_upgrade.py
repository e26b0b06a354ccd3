"""Upgrading: schema migrations run on start, after a backup of a database that holds data.

Real SQLite files in tmp_path. An "older bridge" is the current code with SCHEMA_VERSION
lowered, so the database it leaves behind is exactly what that version created.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
import sqlite_utils

from bridge.errors import StoreError
from bridge.events import Envelope
from bridge.storage import sqlite_schema as sqlite_store
from bridge.storage.sqlite import SQLiteStore


def schema_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def event_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT event_id FROM inbox ORDER BY id")]


def store_events(path: Path, *ids: str) -> None:
    store = SQLiteStore(str(path))
    try:
        for event_id in ids:
            envelope = Envelope(event_id, "invoice.paid", False)
            asyncio.run(store.accept("stripe", envelope, b"{}", time.time()))
    finally:
        store.close()


def backups(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".backup-v" in p.name)


def test_an_older_database_is_backed_up_then_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = sqlite_store.SCHEMA_VERSION
    db = tmp_path / "bridge.db"
    with monkeypatch.context() as older:
        older.setattr(sqlite_store, "SCHEMA_VERSION", 1)
        store_events(db, "evt_1", "evt_2")
    assert schema_version(db) == 1

    store_events(db, "evt_3")  # the upgraded bridge starts: backup, migrate, work

    backup = tmp_path / "bridge.db.backup-v1"
    assert backups(tmp_path) == ["bridge.db.backup-v1"]
    assert schema_version(backup) == 1
    assert event_ids(backup) == ["evt_1", "evt_2"]  # everything before the upgrade
    with sqlite3.connect(backup) as conn:  # a self-contained file, usable as it is
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert schema_version(db) == current
    assert event_ids(db) == ["evt_1", "evt_2", "evt_3"]


def test_a_new_or_current_database_is_not_copied(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    store_events(db, "evt_1")  # created fresh: nothing to keep
    store_events(db, "evt_2")  # already current: nothing to migrate
    assert backups(tmp_path) == []
    assert event_ids(db) == ["evt_1", "evt_2"]


def test_a_failed_migration_leaves_the_database_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = sqlite_store.SCHEMA_VERSION
    db = tmp_path / "bridge.db"
    store_events(db, "evt_1")

    def broken(database: sqlite_utils.Database) -> None:
        database.execute("ALTER TABLE inbox ADD COLUMN note TEXT")
        database.execute("SELECT * FROM no_such_table")  # fails halfway through

    with monkeypatch.context() as newer:
        newer.setattr(sqlite_store, "SCHEMA_VERSION", current + 1)
        newer.setitem(sqlite_store.MIGRATIONS, current + 1, broken)
        with pytest.raises(StoreError, match="no_such_table"):
            SQLiteStore(str(db))

    assert backups(tmp_path) == [f"bridge.db.backup-v{current}"]
    assert schema_version(db) == current  # rolled back, half of it included
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(inbox)")]
    assert "note" not in columns
    store_events(db, "evt_2")  # the previous bridge still runs on it
    assert event_ids(db) == ["evt_1", "evt_2"]


def test_a_retried_upgrade_refreshes_the_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "bridge.db"
    with monkeypatch.context() as older:
        older.setattr(sqlite_store, "SCHEMA_VERSION", 1)
        store_events(db, "evt_1")
        conn = sqlite3.connect(db)
        sqlite_store.backup_before_migrating(conn, 1)  # a backup left by an earlier try
        conn.close()
        store_events(db, "evt_2")
    store_events(db, "evt_3")
    assert event_ids(tmp_path / "bridge.db.backup-v1") == ["evt_1", "evt_2"]
    assert backups(tmp_path) == ["bridge.db.backup-v1"]


def test_a_newer_database_is_refused_and_not_copied(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    store_events(db, "evt_1")
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {sqlite_store.SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="upgrade credyt-bridge"):
        SQLiteStore(str(db))
    assert backups(tmp_path) == []


def test_a_backup_that_cannot_be_written_stops_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "bridge.db"
    with monkeypatch.context() as older:
        older.setattr(sqlite_store, "SCHEMA_VERSION", 1)
        store_events(db, "evt_1")
    (tmp_path / "bridge.db.backup-v1.partial").mkdir()  # in the way: the copy fails
    with pytest.raises(StoreError, match="could not back up"):
        SQLiteStore(str(db))
    assert schema_version(db) == 1  # not migrated without its backup
