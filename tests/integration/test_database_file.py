"""A live SQLite file that is deleted or replaced: /readyz fails and webhooks get 503.

SQLite keeps writing to a deleted file's inode; the bridge would answer 200 to webhooks
that vanish at its next start. A real bridge on loopback, a real file in tmp_path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from bridge.storage.sqlite import SQLiteStore
from connectors import stripe
from tests.conftest import RunningBridge


def send(running: RunningBridge, event_id: str) -> int:
    event = stripe.sample_event(
        "invoice.paid", event_id=event_id, object_id=f"in_{event_id}", customer="cust_file"
    )
    return running.send_stripe(event).status_code


def remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def replace(path: Path) -> None:
    """What a restore from backup does: a new file (a new inode) under the same name."""
    shutil.copyfile(path, f"{path}.copy")
    remove(path)
    os.rename(f"{path}.copy", path)


@pytest.mark.parametrize("change", [remove, replace])
def test_a_deleted_or_replaced_database_fails_readyz_and_refuses_webhooks(
    running: RunningBridge, change: object
) -> None:
    database = Path(running.config.database)
    assert send(running, "evt_before") == 200
    assert httpx.get(f"{running.url}/readyz").status_code == 200
    assert callable(change)
    change(database)
    assert httpx.get(f"{running.url}/readyz").status_code == 503
    answer = running.send_stripe(
        stripe.sample_event(
            "invoice.paid", event_id="evt_after", object_id="in_after", customer="cust_file"
        )
    )
    assert answer.status_code == 503, answer.text
    assert "deleted or replaced" in answer.text or answer.json().get("error")
    assert httpx.get(f"{running.url}/healthz").status_code == 200  # alive, not ready


def test_the_check_costs_one_stat_per_commit_group(tmp_path: Path) -> None:
    """The guard runs once per committed group, not per webhook: a burst shares it."""
    from bridge.storage.sqlite import file_identity

    store = SQLiteStore(str(tmp_path / "bridge.db"))
    try:
        calls = 0
        real = store._check_same_file

        def counted() -> None:
            nonlocal calls
            calls += 1
            real()

        store.writer._guard = counted
        store.writer.run_sync(lambda conn: None)
        assert calls == 1
        identity = file_identity(str(tmp_path / "bridge.db"))
        assert identity is not None and identity == store._identity
    finally:
        store.close()


def test_file_identity_of_a_missing_file_is_none(tmp_path: Path) -> None:
    from bridge.storage.sqlite import file_identity

    assert file_identity(str(tmp_path / "absent.db")) is None
    (tmp_path / "present.db").write_bytes(b"")
    first = file_identity(str(tmp_path / "present.db"))
    assert first == file_identity(str(tmp_path / "present.db"))
