"""The alert tables on both stores: noticed once, grouped into one message per target,
claimed with a lease, recorded; and on PostgreSQL two replicas looking at the same dead
adjustment at the same moment make one message, not two.

SQLite is a file in tmp_path; PostgreSQL is the private server of this folder's conftest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.alerting import ledger
from bridge.alerting.conditions import detect
from bridge.config.schema import AlertsConfig, AlertTarget
from bridge.events import Envelope
from bridge.storage.records import (
    AdjustmentStatus,
    DeliveryOutcome,
    EventStatus,
    NewAdjustment,
    ProcessingResult,
)
from bridge.storage.store import AlertTables, RunSQL, Store, open_store
from tests.integration.postgres.conftest import PostgresServer

CONFIG = AlertsConfig(
    targets=(AlertTarget("a", "webhook", "http://127.0.0.1:9/a"), AlertTarget("b", "slack", "x")),
    conditions=frozenset({"adjustment_dead"}),
    window=60.0,
)


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


def dead_adjustment(store: Store, txid: str) -> int:
    """One event with one adjustment that Credyt refused (dead); returns its id."""
    body = b'{"id": "x"}'
    assert asyncio.run(
        store.accept("stripe", Envelope(f"evt_{txid}", "invoice.paid", False), body, time.time())
    )
    event = store.get_event(f"evt_{txid}")
    assert event is not None
    adjustment = NewAdjustment(
        transaction_id=txid,
        connector="stripe",
        rule="subscription-payment",
        kind="payment",
        payment_key=f"in_{txid}",
        reversal_key=None,
        customer_id="cust_1",
        asset="USD",
        account="default",
        amount="49.99",
        payment_amount_minor=4999,
        body="{}",
    )
    result = ProcessingResult(
        event.id, EventStatus.PROCESSED, payment_key=f"in_{txid}", adjustments=(adjustment,)
    )
    asyncio.run(store.record_processing(result, time.time()))
    [row] = asyncio.run(store.claim_adjustments(time.time() + 1, 10, lease=30))
    outcome = DeliveryOutcome(row.id, AdjustmentStatus.DEAD, time.time(), 1.0, 422, error="no")
    asyncio.run(store.record_delivery(outcome))
    return row.id


def step(store: Store, now: float) -> list[ledger.DueMessage]:
    assert isinstance(store, AlertTables)
    return asyncio.run(
        store.alert_transaction(
            lambda run: ledger.step(run, CONFIG, detect(run, CONFIG, [], now), now)
        )
    )


def test_a_dead_adjustment_is_one_message_per_target_sent_once(store: Store) -> None:
    adjustment_id = dead_adjustment(store, "tx-1")
    now = time.time()
    due = step(store, now)
    assert sorted(m.target for m in due) == ["a", "b"]
    assert {m.payload["alerts"][0]["adjustment_id"] for m in due} == {adjustment_id}
    assert step(store, now + 1) == []  # noticed once; the claimed messages are leased
    assert isinstance(store, AlertTables)
    results = [ledger.SendResult(due[0], None), ledger.SendResult(due[1], "answered HTTP 500", 5)]
    asyncio.run(store.alert_transaction(lambda run: ledger.record(run, results, now + 1)))
    again = step(store, now + ledger.LEASE + 10)  # past the lease and the retry
    assert [(m.id, m.attempts) for m in again] == [(due[1].id, 1)]


def test_two_replicas_looking_at_once_make_one_message(postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database()
    first, second = open_store(database), open_store(database)
    try:
        dead_adjustment(first, "tx-race")
        now = time.time()

        async def both() -> list[list[ledger.DueMessage]]:
            calls = []
            for replica in (first, second):
                assert isinstance(replica, AlertTables)
                calls.append(
                    replica.alert_transaction(
                        lambda run: ledger.step(run, CONFIG, detect(run, CONFIG, [], now), now)
                    )
                )
            return list(await asyncio.gather(*calls))

        claimed = [m for batch in asyncio.run(both()) for m in batch]
        assert sorted(m.target for m in claimed) == ["a", "b"]
    finally:
        first.close()
        second.close()


def counts(store: Store) -> tuple[int, int]:
    assert isinstance(store, AlertTables)

    def read(run: RunSQL) -> tuple[int, int]:
        alerts = run("SELECT COUNT(*) FROM alerts", ())[0][0]
        messages = run("SELECT COUNT(*) FROM alert_messages", ())[0][0]
        return int(alerts), int(messages)

    return asyncio.run(store.alert_transaction(read))


def test_prune_forgets_old_rows_but_never_what_the_next_look_starts_from(store: Store) -> None:
    assert isinstance(store, AlertTables)
    dead_adjustment(store, "tx-old")
    now = time.time()
    due = step(store, now)
    results = [ledger.SendResult(m, None) for m in due]
    asyncio.run(store.alert_transaction(lambda run: ledger.record(run, results, now)))
    assert counts(store) == (1, 2)
    older = (
        "INSERT INTO alerts (condition, key, detail, observed_at, detected_at, grouped_at)"
        " VALUES ('adjustment_dead', 'adjustment_dead:0:1.0', '{}', ?, ?, ?)"
    )
    old = now - 1000
    asyncio.run(store.alert_transaction(lambda run: run(older, (old, old, old))))
    assert counts(store) == (2, 2)
    later = now + 10 * 86400
    asyncio.run(store.alert_transaction(lambda run: ledger.prune(run, later)))
    assert counts(store) == (
        1,
        0,
    )  # the older one went; the last alert stays: it is where the next look starts
    assert step(store, later) == []  # and it is not noticed again
