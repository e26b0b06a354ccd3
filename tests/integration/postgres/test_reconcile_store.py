"""What reconcile asks of a store, the same of SQLite and PostgreSQL: decided
adjustments by connector and window, page by page; a delivered adjustment sent again;
the last run of each connector."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.storage.records import AdjustmentStatus, DeliveryOutcome
from bridge.storage.store import Store, open_store
from tests.helpers.store_rows import accept, adjustment, processed, run
from tests.integration.postgres.conftest import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        database = str(tmp_path / "bridge.db")
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        database = server.create_database()
    opened = open_store(database)
    yield opened
    opened.close()


def test_decided_page_reads_one_connector_s_window_in_pages(store: Store) -> None:
    before = time.time() - 1
    for n in range(5):
        processed(store, accept(store, f"evt_{n}"), adjustment(f"tx-{n}", payment=f"in_{n}"))
    after = time.time() + 1
    first = store.decided_page("stripe", before, after, 0, 3)
    assert [d.transaction_id for _, d in first] == ["tx-0", "tx-1", "tx-2"]
    rest = store.decided_page("stripe", before, after, first[-1][0], 3)
    assert [d.transaction_id for _, d in rest] == ["tx-3", "tx-4"]
    assert store.decided_page("paddle", before, after, 0, 10) == []
    assert store.decided_page("stripe", after, after + 10, 0, 10) == []


def test_resend_queues_delivered_adjustments_only(store: Store) -> None:
    processed(store, accept(store, "evt_1"), adjustment("tx-ok"), adjustment("tx-dead"))
    now = time.time() + 0.01
    rows = {r.transaction_id: r for r in run(store.claim_adjustments(now, 10, lease=30))}
    for tx, status in (("tx-ok", AdjustmentStatus.DELIVERED), ("tx-dead", AdjustmentStatus.DEAD)):
        run(store.record_delivery(DeliveryOutcome(rows[tx].id, status, now, 1.0, status_code=201)))
    assert run(store.resend_adjustments([rows["tx-ok"].id, rows["tx-dead"].id])) == 1
    ok, dead = store.get_adjustment("tx-ok"), store.get_adjustment("tx-dead")
    assert ok is not None and ok.status is AdjustmentStatus.PENDING and ok.attempts == 0
    assert dead is not None and dead.status is AdjustmentStatus.DEAD


def test_the_last_run_of_each_connector_is_kept(store: Store) -> None:
    assert store.last_reconciles() == []
    for connector, at, ok in (("stripe", 1.0, 3), ("paddle", 2.0, 4), ("stripe", 3.0, 5)):
        run(store.record_reconcile(connector, at, json.dumps({"counts": {"ok": ok}})))
    runs = store.last_reconciles()
    assert [(r.connector, r.finished_at) for r in runs] == [("paddle", 2.0), ("stripe", 3.0)]
    assert json.loads(runs[1].report) == {"counts": {"ok": 5}}
