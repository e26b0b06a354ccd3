"""The SQLite store on a real file: idempotent accept, group commit, migrations, outbox,
claims with leases, and an index behind every claim and list query."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import StoreError
from bridge.events import Envelope
from bridge.storage import queries as statements
from bridge.storage.records import (
    AdjustmentStatus,
    DeliveryOutcome,
    EventFilter,
    EventStatus,
    NewAdjustment,
    ProcessingResult,
)
from bridge.storage.sqlite import SCHEMA_VERSION, SQLiteStore


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


@pytest.fixture
def store(db_path: str) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(db_path)
    yield opened
    opened.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def envelope(event_id: str) -> Envelope:
    return Envelope(event_id, "invoice.paid", False)


def accept(store: SQLiteStore, event_id: str, connector: str = "stripe") -> bool:
    result: bool = run(store.accept(connector, envelope(event_id), b'{"id": 1}', time.time()))
    return result


def adjustment(transaction_id: str, body: str = '{"amount":1}', **fields: Any) -> NewAdjustment:
    values: dict[str, Any] = {
        "transaction_id": transaction_id,
        "connector": "stripe",
        "rule": "r",
        "kind": "payment",
        "payment_key": "in_1",
        "reversal_key": None,
        "customer_id": "cust_1",
        "asset": "USD",
        "account": "default",
        "amount": "1",
        "payment_amount_minor": 100,
        "body": body,
    }
    values.update(fields)
    return NewAdjustment(**values)


def processed(store: SQLiteStore, inbox_id: int, *adjustments: NewAdjustment, now: float) -> int:
    result = ProcessingResult(
        inbox_id,
        EventStatus.PROCESSED,
        payment_key=adjustments[0].payment_key if adjustments else None,
        customer_id="cust_1",
        adjustments=adjustments,
    )
    new: int = run(store.record_processing(result, now))
    return new


def inbox_id(store: SQLiteStore, event_id: str) -> int:
    row = store.get_event(event_id)
    assert row is not None
    return row.id


# -- accept ---------------------------------------------------------------------------


def test_accept_is_idempotent_per_connector_and_event_id(store: SQLiteStore) -> None:
    assert accept(store, "evt_1") is True
    assert accept(store, "evt_1") is False
    assert accept(store, "evt_1", connector="paddle") is True  # another PSP's namespace
    assert accept(store, "evt_2") is True
    events = store.list_events(EventFilter())
    assert sorted((e.connector, e.event_id) for e in events) == [
        ("paddle", "evt_1"),
        ("stripe", "evt_1"),
        ("stripe", "evt_2"),
    ]
    assert all(e.status is EventStatus.PENDING for e in events)


def test_accepted_body_is_kept_byte_for_byte(store: SQLiteStore) -> None:
    body = b'{"id": "evt_b",  "x": "\xc3\xa9"}'
    run(store.accept("stripe", envelope("evt_b"), body, 1234.5))
    row = store.get_event("evt_b")
    assert row is not None and row.body == body and row.received_at == 1234.5
    assert row.event_type == "invoice.paid" and row.livemode is False
    again = store.get_event(str(row.id))
    assert again is not None and again.event_id == "evt_b"


def test_concurrent_accepts_share_commits_and_survive_reopening(db_path: str) -> None:
    store = SQLiteStore(db_path)
    writes = 300

    async def many() -> list[bool]:
        return list(
            await asyncio.gather(
                *(
                    store.accept("stripe", envelope(f"evt_{i % 250}"), b"{}", time.time())
                    for i in range(writes)
                )
            )
        )

    commits_before = store.writer.commits
    results = run(many())
    commits = store.writer.commits - commits_before
    assert results.count(True) == 250 and results.count(False) == 50
    assert 1 <= commits < writes
    store.close()

    reopened = SQLiteStore(db_path)
    try:
        assert reopened.counts()["events"] == {"pending": 250}
    finally:
        reopened.close()
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT COUNT(DISTINCT event_id) FROM inbox").fetchone()[0] == 250
    finally:
        raw.close()


def test_connections_are_durable(store: SQLiteStore) -> None:
    """synchronous=FULL on the writer: a 2xx'd webhook is on disk."""
    level = store.writer.run_sync(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
    assert level == 2  # FULL


def test_only_a_group_without_durable_writes_skips_the_fsync(store: SQLiteStore) -> None:
    """A group of non-durable writes (decisions, delivery outcomes) commits at NORMAL; one
    durable write in the group (a webhook, a claim) makes the whole group FULL."""

    def level(conn: sqlite3.Connection) -> int:
        return int(conn.execute("PRAGMA synchronous").fetchone()[0])

    async def one_group(durable: list[bool]) -> list[int]:
        # Hold the writer in a group of its own until every write below is queued, so
        # that they make one group.
        started, release = threading.Event(), threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            started.set()
            release.wait(10)

        held = asyncio.ensure_future(store.writer.run(hold))
        while not started.is_set():
            await asyncio.sleep(0.001)
        writes = [asyncio.ensure_future(store.writer.run(level, durable=d)) for d in durable]
        await asyncio.sleep(0)  # each task puts its write on the queue
        release.set()
        await held
        return list(await asyncio.gather(*writes))

    async def groups() -> tuple[list[int], list[int]]:
        return await one_group([False] * 3), await one_group([False, True, False])

    alone, mixed = asyncio.run(groups())
    assert alone == [1, 1, 1]  # NORMAL
    assert mixed == [2, 2, 2]  # FULL, queued together into one group


def test_a_failing_write_rolls_back_only_itself(store: SQLiteStore) -> None:
    async def both() -> list[Any]:
        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO inbox (connector) VALUES ('x')")  # NOT NULL violations

        return list(
            await asyncio.gather(
                store.writer.run(broken),
                store.accept("stripe", envelope("evt_ok"), b"{}", time.time()),
                return_exceptions=True,
            )
        )

    failed, ok = run(both())
    assert isinstance(failed, StoreError) and ok is True
    assert store.counts()["events"] == {"pending": 1}


def test_a_write_alone_in_its_group_that_fails_leaves_nothing(store: SQLiteStore) -> None:
    """A group of one write runs without a savepoint: its failure rolls back all it did,
    and the writer goes on."""

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute(*statements.insert_event("stripe", envelope("evt_half"), b"{}", 1.0, None))
        raise ValueError("the second half failed")

    with pytest.raises(ValueError, match="second half"):
        store.writer.run_sync(half_then_fail)
    assert store.get_event("evt_half") is None
    assert run(store.accept("stripe", envelope("evt_after"), b"{}", time.time())) is True
    assert store.counts()["events"] == {"pending": 1}


# -- migrations -------------------------------------------------------------------------


def test_migrations_set_user_version(store: SQLiteStore, db_path: str) -> None:
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"inbox", "outbox", "attempts"} <= tables
    finally:
        raw.close()
    SQLiteStore(db_path).close()  # reopening migrates nothing and keeps the version
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


def test_a_newer_schema_is_refused(store: SQLiteStore, db_path: str) -> None:
    accept(store, "evt_keep")
    store.close()
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1}.*newer"):
        SQLiteStore(db_path)
    raw = sqlite3.connect(db_path)
    try:  # refused without touching the data
        assert raw.execute("SELECT COUNT(*) FROM inbox").fetchone()[0] == 1
    finally:
        raw.close()


def test_a_missing_folder_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        SQLiteStore(str(tmp_path / "nope" / "b.db"))


# -- the outbox ----------------------------------------------------------------------------


def test_transaction_id_is_unique_and_keeps_the_first_body(store: SQLiteStore) -> None:
    now = time.time()
    accept(store, "evt_a")
    accept(store, "evt_b")
    first = processed(
        store, inbox_id(store, "evt_a"), adjustment("tx-1", '{"first":true}'), now=now
    )
    second = processed(
        store,
        inbox_id(store, "evt_b"),
        adjustment("tx-1", '{"second":true}'),
        adjustment("tx-2"),
        now=now,
    )
    assert (first, second) == (1, 1)
    rows = {row.transaction_id: row for row in store.list_adjustments()}
    assert sorted(rows) == ["tx-1", "tx-2"]
    assert rows["tx-1"].body == '{"first":true}'
    assert rows["tx-1"].inbox_id == inbox_id(store, "evt_a")
    assert [e.status for e in store.list_events(EventFilter())] == [EventStatus.PROCESSED] * 2


def test_claim_respects_next_attempt_at_and_leases(store: SQLiteStore) -> None:
    # The real clock: record_delivery stamps updated_at with it, and a row updated in
    # the future (a clock stepped back) is due at once.
    now = time.time()
    accept(store, "evt_c")
    processed(store, inbox_id(store, "evt_c"), adjustment("tx-c"), now=now)

    assert run(store.claim_adjustments(now - 1, 10, lease=30)) == []  # not due yet
    [claimed] = run(store.claim_adjustments(now, 10, lease=30))
    assert claimed.transaction_id == "tx-c"
    assert run(store.claim_adjustments(now + 29, 10, lease=30)) == []  # leased
    [again] = run(store.claim_adjustments(now + 31, 10, lease=30))  # the lease ran out
    assert again.id == claimed.id

    retry_at = now + 100
    run(
        store.record_delivery(
            DeliveryOutcome(
                claimed.id,
                AdjustmentStatus.PENDING,
                now + 31,
                5.0,
                next_attempt_at=retry_at,
                status_code=503,
                error="Credyt answered 503",
            )
        )
    )
    assert run(store.claim_adjustments(retry_at - 1, 10, lease=30)) == []
    [third] = run(store.claim_adjustments(retry_at, 10, lease=30))
    assert third.attempts == 1 and third.last_status == 503
    run(
        store.record_delivery(
            DeliveryOutcome(third.id, AdjustmentStatus.DELIVERED, retry_at, 3.0, status_code=201)
        )
    )
    assert run(store.claim_adjustments(now + 10_000, 10, lease=30)) == []
    row = store.get_adjustment("tx-c")
    assert row is not None and row.status is AdjustmentStatus.DELIVERED
    assert row.attempts == 2 and row.delivered_at == retry_at
    attempts = store.attempts_for(row.id)
    assert [(a["status_code"], a["outcome"]) for a in attempts] == [
        (503, "pending"),
        (201, "delivered"),
    ]


def test_claim_takes_at_most_limit_oldest_first(store: SQLiteStore) -> None:
    for i in range(5):
        accept(store, f"evt_{i}")
        processed(store, inbox_id(store, f"evt_{i}"), adjustment(f"tx-{i}"), now=100.0 + i)
    first = run(store.claim_adjustments(200.0, 3, lease=30))
    rest = run(store.claim_adjustments(200.0, 3, lease=30))
    assert [r.transaction_id for r in first] == ["tx-0", "tx-1", "tx-2"]
    assert [r.transaction_id for r in rest] == ["tx-3", "tx-4"]


def test_dead_rows_are_not_claimed_until_retried(store: SQLiteStore) -> None:
    accept(store, "evt_d")
    processed(store, inbox_id(store, "evt_d"), adjustment("tx-d"), now=10.0)
    [row] = run(store.claim_adjustments(10.0, 1, lease=30))
    run(
        store.record_delivery(
            DeliveryOutcome(row.id, AdjustmentStatus.DEAD, 10.0, 1.0, status_code=422, error="no")
        )
    )
    assert run(store.claim_adjustments(1e12, 10, lease=30)) == []
    assert run(store.retry_adjustments(dead=True)) == 1
    [back] = run(store.claim_adjustments(time.time() + 1, 10, lease=30))
    assert back.id == row.id and back.attempts == 0


# -- every claim and list query has an index -------------------------------------------------


def traced(store: SQLiteStore, action: Callable[[], Any], *, writer: bool = False) -> list[str]:
    """The SQL statements `action` runs on the store's read (or write) connection."""
    seen: list[str] = []

    def trace(sql: str) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            seen.append(sql)

    if writer:
        store.writer.run_sync(lambda conn: conn.set_trace_callback(trace))
    else:
        store._read.set_trace_callback(trace)
    try:
        action()
    finally:
        if writer:
            store.writer.run_sync(lambda conn: conn.set_trace_callback(None))
        else:
            store._read.set_trace_callback(None)
    assert seen, "the action ran no SELECT"
    return seen


def plan(db_path: str, sql: str) -> list[str]:
    raw = sqlite3.connect(db_path)
    try:
        return [row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}")]
    finally:
        raw.close()


def full_scans(steps: list[str]) -> list[str]:
    """Plan steps that read a whole table (a SCAN not through an index) or sort every
    matching row (a temporary B-tree) where an index could give the order."""
    return [s for s in steps if (s.startswith("SCAN") and "INDEX" not in s) or "TEMP B-TREE" in s]


QUERIES: dict[str, tuple[bool, Callable[[SQLiteStore], Any]]] = {
    "claim_adjustments": (True, lambda s: run(s.claim_adjustments(time.time(), 10, 30))),
    "due_events": (False, lambda s: s.due_events(time.time(), 10)),
    "next_event_due": (False, lambda s: s.next_event_due()),
    "next_adjustment_due": (False, lambda s: s.next_adjustment_due()),
    "events by status": (False, lambda s: s.list_events(EventFilter(status="failed"))),
    "events by connector": (False, lambda s: s.list_events(EventFilter(connector="stripe"))),
    "events by customer": (False, lambda s: s.list_events(EventFilter(customer="cust_1"))),
    "event by PSP id": (False, lambda s: s.get_event("evt_123")),
    "event by row id": (False, lambda s: s.get_event("12")),
    "adjustments by status": (False, lambda s: s.list_adjustments("dead")),
    "adjustments of a payment": (False, lambda s: s.adjustments_for_payment("in_1")),
    "adjustments of an event": (False, lambda s: s.adjustments_for_event(3)),
    "adjustment by transaction id": (False, lambda s: s.get_adjustment("tx-1")),
    "attempts of an adjustment": (False, lambda s: s.attempts_for(3)),
    "oldest pending adjustment": (False, lambda s: s.oldest_pending_adjustment()),
}


@pytest.mark.parametrize("name", list(QUERIES))
def test_query_uses_an_index(store: SQLiteStore, db_path: str, name: str) -> None:
    for i in range(50):  # some rows, so the planner has something to weigh
        accept(store, f"evt_{i}")
        processed(store, inbox_id(store, f"evt_{i}"), adjustment(f"tx-{i}"), now=time.time())
    run(store.accept("stripe", envelope("evt_x"), b"{}", time.time()))
    writer, action = QUERIES[name]
    for sql in traced(store, lambda: action(store), writer=writer):
        steps = plan(db_path, sql)
        assert not full_scans(steps), f"{name}: {sql}\n{steps}"
        assert any("INDEX" in s or "PRIMARY KEY" in s or "rowid" in s for s in steps), steps
