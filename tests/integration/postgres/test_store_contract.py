"""One store test suite, run against both backends: SQLite and PostgreSQL.

Every behaviour the receiver, processor, deliverer and CLI rely on is checked here
through the `Store` protocol only, so a backend passes or fails on the same terms.
The PostgreSQL-only tests at the end cover what several replicas add: claims that
never overlap, the inbox unique across stores, and NOTIFY waking another store's
subscriber.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from bridge.cli import cli as main_cli
from bridge.errors import DecisionConflictError, StoreError
from bridge.storage.postgres import SCHEMA_VERSION, PostgresStore
from bridge.storage.records import (
    AdjustmentStatus,
    DeliveryOutcome,
    EventFilter,
    EventStatus,
    ProcessingResult,
)
from bridge.storage.store import (
    ChangeFeed,
    EventClaims,
    Store,
    open_store,
    redact_database,
)
from tests.conftest import config_text, wait_until
from tests.helpers.store_rows import accept, adjustment, envelope, processed, run
from tests.integration.postgres.conftest import PostgresServer, drop_connections

# -- the webhook path ---------------------------------------------------------------------


def test_open_store_picks_the_backend(database: str, store: Store) -> None:
    assert isinstance(store, PostgresStore) == database.startswith("postgresql://")
    assert isinstance(store, EventClaims) == isinstance(store, ChangeFeed)


def test_accept_is_unique_per_connector_and_event_id(store: Store) -> None:
    now = time.time()
    body = b'{"id": "evt_1", "amount": 1}'
    assert run(store.accept("stripe", envelope("evt_1"), body, now)) is True
    assert run(store.accept("stripe", envelope("evt_1"), b"other", now)) is False
    assert run(store.accept("paddle", envelope("evt_1"), body, now)) is True
    due = store.due_events(now + 1, 10)
    assert [(r.connector, r.event_id) for r in due] == [("stripe", "evt_1"), ("paddle", "evt_1")]
    assert due[0].body == body and due[0].status is EventStatus.PENDING
    assert due[0].livemode is False and due[0].event_type == "invoice.paid"
    assert store.next_event_due() == pytest.approx(now)


def test_due_events_respects_time_order_and_limit(store: Store) -> None:
    now = time.time()
    accept(store, "evt_late", now + 30)  # within CLOCK_STEP_SLACK: not a clock step
    accept(store, "evt_b", now - 1)
    accept(store, "evt_a", now - 2)
    assert [r.event_id for r in store.due_events(now, 10)] == ["evt_a", "evt_b"]
    assert [r.event_id for r in store.due_events(now, 1)] == ["evt_a"]


def test_a_row_written_an_hour_ahead_is_due_now(store: Store) -> None:
    """Written by a clock an hour ahead of this one (a backward step since): due now."""
    now = time.time()
    accept(store, "evt_ahead", now + 3600)
    accept(store, "evt_soon", now + 30)
    assert [r.event_id for r in store.due_events(now, 10)] == ["evt_ahead"]
    if isinstance(store, EventClaims):  # the replicas' claim reads the same rule
        assert [r.event_id for r in run(store.claim_events(now, 10, 30))] == ["evt_ahead"]


def test_an_adjustment_queued_an_hour_ahead_is_claimed_now(store: Store) -> None:
    now = time.time()
    inbox = accept(store, "evt_q")
    result = ProcessingResult(
        inbox, EventStatus.PROCESSED, payment_key="in_1", adjustments=(adjustment("tx-q"),)
    )
    run(store.record_processing(result, now + 3600))  # queued by a clock an hour ahead
    [claimed] = run(store.claim_adjustments(now, 10, lease=30))
    assert claimed.transaction_id == "tx-q"
    assert run(store.claim_adjustments(now + 1, 10, lease=30)) == []  # and now leased


def test_record_processing_is_one_transaction_with_idempotent_adjustments(store: Store) -> None:
    first = accept(store, "evt_1")
    second = accept(store, "evt_2")
    assert processed(store, first, adjustment("tx-1"), adjustment("tx-2", amount="1.00")) == 2
    # the same payment under another event: the transaction id keeps its first body
    assert processed(store, second, adjustment("tx-1", amount="99.00")) == 0
    rows = store.adjustments_for_payment("in_1")
    assert [(r.transaction_id, r.amount, r.inbox_id) for r in rows] == [
        ("tx-1", "49.99", first),
        ("tx-2", "1.00", first),
    ]
    assert rows[0].status is AdjustmentStatus.PENDING and rows[0].attempts == 0
    assert rows[0].received_at is not None and rows[0].payment_amount_minor == 4999
    event = store.get_event(str(first))
    assert event is not None
    assert (event.status, event.attempts, event.payment_key, event.customer_id) == (
        EventStatus.PROCESSED,
        1,
        "in_1",
        "cust_1",
    )
    assert [r.transaction_id for r in store.adjustments_for_event(first)] == ["tx-1", "tx-2"]
    assert store.adjustments_for_event(second) == []
    assert store.due_events(time.time() + 1, 10) == []


def test_a_failed_write_leaves_nothing_behind(store: Store) -> None:
    inbox_id = accept(store, "evt_1")
    broken = ProcessingResult(
        inbox_id,
        EventStatus.PROCESSED,
        adjustments=(adjustment("tx-ok"), adjustment("tx-bad", customer=None)),  # type: ignore[arg-type]
    )
    with pytest.raises(StoreError):
        run(store.record_processing(broken, time.time()))
    assert store.list_adjustments() == []
    event = store.get_event("evt_1")
    assert event is not None and event.status is EventStatus.PENDING


def test_pending_result_reschedules_and_credit_releases_held_reversals(store: Store) -> None:
    now = time.time()
    refund = accept(store, "evt_refund", now)
    held = ProcessingResult(
        refund, EventStatus.PENDING, "held", next_attempt_at=now + 300, payment_key="in_1"
    )
    assert run(store.record_processing(held, now)) == 0
    assert store.due_events(now + 1, 10) == []
    assert store.next_event_due() == pytest.approx(now + 300)
    payment = accept(store, "evt_payment")
    assert processed(store, payment, adjustment("tx-1")) == 1
    assert [r.event_id for r in store.due_events(time.time() + 0.01, 10)] == ["evt_refund"]


# -- the delivery path --------------------------------------------------------------------


def test_claims_lease_rows_until_recorded_or_expired(store: Store) -> None:
    inbox_id = accept(store, "evt_1")
    processed(store, inbox_id, adjustment("tx-1"), adjustment("tx-2"), adjustment("tx-3"))
    now = time.time() + 0.01
    first = run(store.claim_adjustments(now, 2, lease=30))
    assert len(first) == 2
    second = run(store.claim_adjustments(now, 10, lease=30))
    assert [r.transaction_id for r in second] == sorted(
        {"tx-1", "tx-2", "tx-3"} - {r.transaction_id for r in first}
    )
    assert run(store.claim_adjustments(now, 10, lease=30)) == []
    # a replica that died: its lease runs out and the rows are claimable again
    again = run(store.claim_adjustments(now + 31, 10, lease=30))
    assert len(again) == 3


def test_record_delivery_outcomes_and_attempts(store: Store) -> None:
    inbox_id = accept(store, "evt_1")
    processed(store, inbox_id, adjustment("tx-ok"), adjustment("tx-retry"), adjustment("tx-dead"))
    now = time.time() + 0.01
    rows = {r.transaction_id: r for r in run(store.claim_adjustments(now, 10, lease=30))}
    run(
        store.record_delivery(
            DeliveryOutcome(rows["tx-ok"].id, AdjustmentStatus.DELIVERED, now, 3.5, status_code=201)
        )
    )
    run(
        store.record_delivery(
            DeliveryOutcome(
                rows["tx-retry"].id,
                AdjustmentStatus.PENDING,
                now,
                1.0,
                next_attempt_at=now + 60,
                status_code=503,
                error="unavailable",
            )
        )
    )
    run(
        store.record_delivery(
            DeliveryOutcome(
                rows["tx-dead"].id, AdjustmentStatus.DEAD, now, 2.0, status_code=422, error="no"
            )
        )
    )
    ok = store.get_adjustment("tx-ok")
    assert ok is not None and ok.status is AdjustmentStatus.DELIVERED
    assert (ok.attempts, ok.last_status) == (1, 201)
    assert ok.delivered_at == pytest.approx(now)
    assert store.get_adjustment(str(ok.id)) == ok
    retry = store.get_adjustment("tx-retry")
    assert retry is not None and retry.status is AdjustmentStatus.PENDING
    assert retry.next_attempt_at == pytest.approx(now + 60) and retry.last_error == "unavailable"
    assert store.next_adjustment_due() == pytest.approx(now + 60)
    assert run(store.claim_adjustments(now + 1, 10, lease=30)) == []  # not due yet
    assert [r.transaction_id for r in run(store.claim_adjustments(now + 61, 10, 30))] == [
        "tx-retry"
    ]
    attempts = store.attempts_for(ok.id)
    assert attempts == [
        {
            "started_at": pytest.approx(now),
            "duration_ms": 3.5,
            "status_code": 201,
            "outcome": "delivered",
            "response": "",
        }
    ]
    assert store.counts()["adjustments"] == {"delivered": 1, "pending": 1, "dead": 1}
    assert [r.transaction_id for r in store.list_adjustments("dead")] == ["tx-dead"]
    assert [r.transaction_id for r in store.list_adjustments(limit=2)] == ["tx-dead", "tx-retry"]
    assert store.get_adjustment("tx-unknown") is None


def test_retry_adjustments_and_reset_events(store: Store) -> None:
    inbox_id = accept(store, "evt_1")
    processed(store, inbox_id, adjustment("tx-1"), adjustment("tx-2"), adjustment("tx-3"))
    now = time.time() + 0.01
    rows = {r.transaction_id: r for r in run(store.claim_adjustments(now, 10, lease=30))}
    for txid in ("tx-1", "tx-2"):
        run(
            store.record_delivery(
                DeliveryOutcome(rows[txid].id, AdjustmentStatus.DEAD, now, 1.0, status_code=422)
            )
        )
    run(
        store.record_delivery(
            DeliveryOutcome(rows["tx-3"].id, AdjustmentStatus.DELIVERED, now, 1.0, status_code=201)
        )
    )
    assert run(store.retry_adjustments([rows["tx-1"].id, rows["tx-3"].id])) == 1  # not delivered
    retried = store.get_adjustment("tx-1")
    assert retried is not None
    assert (retried.status, retried.attempts) == (AdjustmentStatus.PENDING, 0)
    assert run(store.retry_adjustments(dead=True)) == 1
    assert store.counts()["adjustments"] == {"pending": 2, "delivered": 1}
    assert store.oldest_pending_adjustment() is not None
    claimed = run(store.claim_adjustments(time.time() + 0.01, 10, lease=30))
    assert {r.transaction_id for r in claimed} == {"tx-1", "tx-2"}

    assert run(store.reset_events([inbox_id, 999_999])) == 1
    event = store.get_event(str(inbox_id))
    assert event is not None and event.status is EventStatus.PENDING
    assert [r.id for r in store.due_events(time.time() + 0.01, 10)] == [inbox_id]


def test_events_are_listed_by_the_credyt_account_their_payment_is_scoped_to(
    store: Store,
) -> None:
    for event_id, key in (("evt_a", "acc_a:pi_1"), ("evt_b", "acc_b:pi_1"), ("evt_c", "pi_1")):
        inbox_id = accept(store, event_id)
        result = ProcessingResult(inbox_id, EventStatus.IGNORED, "x", payment_key=key)
        run(store.record_processing(result, time.time()))
    listed = store.list_events(EventFilter(credyt_account="acc_a"))
    assert [e.event_id for e in listed] == ["evt_a"]
    assert store.list_events(EventFilter(credyt_account="acc_")) == []  # not a prefix match


def test_held_adjustments_wait_for_a_decision_that_is_kept(store: Store) -> None:
    from dataclasses import replace

    inbox_id = accept(store, "evt_held")
    big = replace(adjustment("tx-big", amount="900"), held="held: over the limit")
    other = replace(adjustment("tx-other", amount="700"), held="held: over the limit")
    processed(store, inbox_id, big, adjustment("tx-small", amount="5"), other)
    claimed = run(store.claim_adjustments(time.time() + 0.01, 10, lease=30))
    assert [r.transaction_id for r in claimed] == ["tx-small"]  # held ones are never claimed
    held = store.get_adjustment("tx-big")
    assert held is not None and held.status is AdjustmentStatus.HELD
    assert held.last_error == "held: over the limit"
    assert run(store.retry_adjustments([held.id])) == 0  # retry does not release it
    assert store.credited_since("cust_1", "USD", time.time() - 60) == Decimal("5")

    assert run(store.decide_held(held.id, True, "approved by op"))
    assert not run(store.decide_held(held.id, False, "too late"))  # decided once
    approved = store.get_adjustment("tx-big")
    assert approved is not None and approved.status is AdjustmentStatus.PENDING
    assert [a["outcome"] for a in store.attempts_for(held.id)] == ["approved"]
    assert store.credited_since("cust_1", "USD", time.time() - 60) == Decimal("905")

    rejected_id = store.get_adjustment("tx-other")
    assert rejected_id is not None
    assert run(store.decide_held(rejected_id.id, False, "rejected by op: fraud"))
    rejected = store.get_adjustment("tx-other")
    assert rejected is not None and rejected.status is AdjustmentStatus.REJECTED
    assert rejected.last_error == "rejected by op: fraud"
    assert run(store.retry_adjustments(dead=True)) == 0
    claimed = run(store.claim_adjustments(time.time() + 0.01, 10, lease=30))
    assert [r.transaction_id for r in claimed] == ["tx-big"]


# -- operating ----------------------------------------------------------------------------


def test_list_and_get_events(store: Store) -> None:
    now = time.time()
    ids = [accept(store, f"evt_{n}", now + n) for n in range(3)]
    accept(store, "evt_p", now + 3, connector="paddle")
    processed(store, ids[0], adjustment("tx-1"))
    listed = store.list_events(EventFilter())
    assert [r.event_id for r in listed] == ["evt_p", "evt_2", "evt_1", "evt_0"]
    assert all(r.body is None for r in listed)
    assert [r.event_id for r in store.list_events(EventFilter(status="processed"))] == ["evt_0"]
    assert [r.event_id for r in store.list_events(EventFilter(connector="paddle"))] == ["evt_p"]
    assert [r.event_id for r in store.list_events(EventFilter(customer="cust_1"))] == ["evt_0"]
    window = EventFilter(since=now + 1, until=now + 3, event_type="invoice.paid")
    assert [r.event_id for r in store.list_events(window)] == ["evt_2", "evt_1"]
    assert len(store.list_events(EventFilter(limit=2))) == 2
    by_id = store.get_event(str(ids[1]))
    assert by_id is not None and by_id.event_id == "evt_1" and by_id.body == b'{"id": "x"}'
    assert store.get_event("evt_nope") is None and store.get_event("424242") is None
    assert store.counts()["events"] == {"processed": 1, "pending": 3}


def test_events_before_a_row_id_page_the_list(store: Store) -> None:
    ids = [accept(store, f"evt_page_{n}") for n in range(5)]
    first = store.list_events(EventFilter(limit=2))
    assert [r.id for r in first] == [ids[4], ids[3]]
    second = store.list_events(EventFilter(limit=2, before_id=first[-1].id))
    assert [r.id for r in second] == [ids[2], ids[1]]
    last = store.list_events(EventFilter(limit=2, before_id=second[-1].id, status="pending"))
    assert [r.id for r in last] == [ids[0]]


def test_activity_counts_webhooks_and_attempts_per_bucket(store: Store) -> None:
    since = 1_800_000_000.0  # a fixed hour, so every row's bucket is known
    for n, offset in enumerate((5.0, 299.9, 300.0, 3_599.0, -1.0, 3_600.5)):
        accept(store, f"evt_act_{n}", since + offset)
    inbox_id = accept(store, "evt_act_paid", since + 10)
    processed(store, inbox_id, adjustment("tx-act"))
    row = run(store.claim_adjustments(time.time() + 0.01, 10, lease=30))[0]
    for at in (since + 620, since + 640):
        outcome = DeliveryOutcome(row.id, AdjustmentStatus.PENDING, at, 1.0, status_code=503)
        run(store.record_delivery(outcome))
    activity = store.activity(since, 300, 12)
    # before `since` and after the last bucket are left out; 300.0 starts bucket 1
    assert activity["webhooks"] == [3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert activity["deliveries"] == [0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert store.activity(since + 7200, 300, 12) == {"webhooks": [0] * 12, "deliveries": [0] * 12}


def test_check_writable(store: Store) -> None:
    run(store.check_writable())
    run(store.check_writable())


def test_prune_finished_keeps_unfinished_payments(store: Store) -> None:
    now = time.time()
    done = accept(store, "evt_done", now - 100)
    open_ = accept(store, "evt_open", now - 100)
    processed(store, done, adjustment("tx-done", payment="in_done"))
    processed(store, open_, adjustment("tx-open", payment="in_open"))
    claimed = {r.transaction_id: r for r in run(store.claim_adjustments(now + 1, 10, 30))}
    run(
        store.record_delivery(
            DeliveryOutcome(
                claimed["tx-done"].id, AdjustmentStatus.DELIVERED, now - 50, 1.0, status_code=201
            )
        )
    )
    counts = run(store.prune_finished(now))
    assert counts == {"adjustments": 1, "attempts": 1, "events": 1}
    assert store.get_adjustment("tx-done") is None and store.get_event("evt_done") is None
    assert store.get_adjustment("tx-open") is not None and store.get_event("evt_open") is not None


def test_reopening_keeps_the_data(database: str) -> None:
    first = open_store(database)
    try:
        accept(first, "evt_1")
    finally:
        first.close()
    second = open_store(database)
    try:
        assert [r.event_id for r in second.list_events(EventFilter())] == ["evt_1"]
    finally:
        second.close()


def test_the_store_answers_from_another_event_loop_and_thread(store: Store) -> None:
    """serve uses uvicorn's loop, the CLI asyncio.run: every loop may call the store."""
    results: list[bool] = []
    worker = threading.Thread(
        target=lambda: results.append(run(store.accept("stripe", envelope("evt_t"), b"{}", 1.0)))
    )
    worker.start()
    worker.join(10)
    assert results == [True]
    assert run(store.accept("stripe", envelope("evt_t"), b"{}", 1.0)) is False


# -- PostgreSQL: what several replicas add -------------------------------------------------


@pytest.fixture
def pg_pair(postgres_url: str) -> Iterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database, like two replicas."""
    a, b = PostgresStore(postgres_url), PostgresStore(postgres_url)
    yield a, b
    a.close()
    b.close()


def test_postgres_schema_is_versioned(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute("SELECT version FROM schema_version").fetchall()
        assert row == [(SCHEMA_VERSION,)]
        conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this bridge"):
        PostgresStore(postgres_url)


def test_postgres_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(PostgresStore(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for opened in stores:
        opened.close()
    assert errors == [] and len(stores) == 4


def test_postgres_unreachable_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        PostgresStore("postgresql://bridge:s3cret@127.0.0.1:1/bridge?connect_timeout=2")
    assert "s3cret" not in str(caught.value)
    assert "bridge:***@127.0.0.1:1/bridge" in str(caught.value)
    assert redact_database("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"


def test_postgres_inbox_is_unique_across_replicas(
    pg_pair: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pg_pair

    async def race() -> list[bool]:
        return await asyncio.gather(
            *(
                store.accept("stripe", envelope(f"evt_{n % 10}"), b"{}", time.time())
                for n in range(40)
                for store in (a, b)
            )
        )

    results = run(race())
    assert sum(results) == 10
    assert a.counts()["events"] == {"pending": 10}


def test_postgres_claims_never_overlap_across_replicas(
    pg_pair: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pg_pair
    for n in range(30):
        inbox_id = accept(a, f"evt_{n}")
        processed(a, inbox_id, adjustment(f"tx-{n}", payment=f"in_{n}"))
    accept(a, "evt_x")

    async def claim_all() -> tuple[list[list[int]], list[list[int]]]:
        now = time.time() + 0.01
        adjustments = await asyncio.gather(
            *(store.claim_adjustments(now, 4, 30) for _ in range(6) for store in (a, b))
        )
        events = await asyncio.gather(
            *(store.claim_events(now, 1, 30) for _ in range(3) for store in (a, b))
        )
        return [[r.id for r in rows] for rows in adjustments], [
            [r.id for r in rows] for rows in events
        ]

    adjustment_claims, event_claims = run(claim_all())
    ids = [i for rows in adjustment_claims for i in rows]
    assert len(ids) == len(set(ids)) == 30
    events = [i for rows in event_claims for i in rows]
    assert len(events) == len(set(events)) == 1
    # an event claimed by a replica that died is due again after the lease
    assert a.due_events(time.time() + 0.01, 10) == []
    assert [r.event_id for r in a.due_events(time.time() + 31, 10)] == ["evt_x"]


def test_postgres_late_outcome_does_not_undo_a_delivery(
    pg_pair: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pg_pair
    processed(a, accept(a, "evt_1"), adjustment("tx-1"))
    now = time.time() + 0.01
    [slow] = run(a.claim_adjustments(now, 1, lease=1))
    [fast] = run(b.claim_adjustments(now + 2, 1, lease=30))  # a's lease ran out
    delivered = DeliveryOutcome(fast.id, AdjustmentStatus.DELIVERED, now, 1.0, status_code=201)
    run(b.record_delivery(delivered))
    late = DeliveryOutcome(slow.id, AdjustmentStatus.PENDING, now, 1.0, now + 5, 503, "timeout")
    run(a.record_delivery(late))
    row = a.get_adjustment("tx-1")
    assert row is not None and row.status is AdjustmentStatus.DELIVERED
    assert [x["outcome"] for x in a.attempts_for(row.id)] == ["delivered", "pending"]


def test_postgres_notify_wakes_the_other_replica(
    pg_pair: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pg_pair

    async def scenario() -> None:
        woken: dict[str, asyncio.Event] = {
            "events": asyncio.Event(),
            "adjustments": asyncio.Event(),
        }
        unsubscribe = a.subscribe(events=woken["events"].set, adjustments=woken["adjustments"].set)
        # the listener reports once when it starts listening: wait for that, then reset
        await asyncio.wait_for(woken["adjustments"].wait(), 10)
        await asyncio.sleep(0.1)
        for event in woken.values():
            event.clear()

        await b.accept("stripe", envelope("evt_1"), b"{}", time.time())
        await asyncio.wait_for(woken["events"].wait(), 5)
        assert not woken["adjustments"].is_set()
        row = b.get_event("evt_1")
        assert row is not None
        result = ProcessingResult(row.id, EventStatus.PROCESSED, adjustments=(adjustment("t"),))
        await b.record_processing(result, time.time())
        await asyncio.wait_for(woken["adjustments"].wait(), 5)

        woken["events"].clear()
        assert await b.reset_events([row.id]) == 1
        await asyncio.wait_for(woken["events"].wait(), 5)
        unsubscribe()

    run(scenario())


def test_bridge_end_to_end_on_postgres(
    make_bridge: Callable[..., Any], sandbox: Any, postgres_url: str, tmp_path: Path
) -> None:
    """The whole bridge, unchanged, on a postgresql:// database."""
    from connectors import stripe

    running = make_bridge(config_text(postgres_url, sandbox.url))
    assert isinstance(running.bridge.store, PostgresStore)
    customer = sandbox.state.add_customer(external_id="user_pg")
    event = stripe.sample_event(
        "invoice.paid", event_id="evt_pg_1", object_id="in_pg_1", customer=customer
    )
    assert running.send_stripe(event).json() == {"status": "accepted"}
    assert running.send_stripe(event).json() == {"status": "duplicate"}
    running.settle()
    assert len(sandbox.state.adjustments) == 1
    assert [r.status for r in running.bridge.store.list_adjustments()] == [
        AdjustmentStatus.DELIVERED
    ]
    # the operator's commands work on the same database, from another store
    config = tmp_path / "cli.yaml"
    config.write_text(config_text(postgres_url, sandbox.url))
    cli = CliRunner()
    listed = cli.invoke(main_cli, ["events", "list", "--json", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert [e["event_id"] for e in json.loads(listed.output)] == ["evt_pg_1"]
    outbox = cli.invoke(main_cli, ["outbox", "list", "--json", "--config", str(config)])
    assert outbox.exit_code == 0, outbox.output
    assert [a["status"] for a in json.loads(outbox.output)] == ["delivered"]


def test_bridge_survives_losing_every_connection(
    make_bridge: Callable[..., Any], sandbox: Any, postgres_url: str
) -> None:
    """The pools and the listener reconnect; workers keep going; nothing is answered 503."""
    from connectors import stripe

    running = make_bridge(config_text(postgres_url, sandbox.url))
    customer = sandbox.state.add_customer(external_id="user_failover")

    def send(n: int) -> str:
        event = stripe.sample_event(
            "invoice.paid", event_id=f"evt_fo_{n}", object_id=f"in_fo_{n}", customer=customer
        )
        answer = running.send_stripe(event)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["status"])

    assert send(1) == "accepted"
    running.settle()
    assert drop_connections(postgres_url) >= 3  # writes, reads and the listener
    assert [send(n) for n in range(2, 6)] == ["accepted"] * 4
    running.settle()
    assert len(sandbox.state.adjustments) == 5
    # the listener is back too
    wait_until(lambda: _listening(postgres_url), 5, "the listener to reconnect")
    # and an operator's retry from another process reaches the running bridge
    store = running.bridge.store
    assert isinstance(store, PostgresStore)
    row = store.get_adjustment(sandbox.state.adjustments[0]["transaction_id"])
    assert row is not None
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE outbox SET status = 'dead' WHERE id = %s", (row.id,))
    requests = sandbox.state.adjustment_requests
    other = PostgresStore(postgres_url)
    try:
        assert run(other.retry_adjustments([row.id])) == 1
    finally:
        other.close()
    wait_until(lambda: sandbox.state.adjustment_requests > requests, 5, "the retry to be sent")
    running.settle()
    assert len(sandbox.state.adjustments) == 5  # Credyt already had it: no second credit


def _listening(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'LISTEN bridge_%%'"
        ).fetchall()
    return bool(rows)


def test_postgres_a_row_leased_elsewhere_is_due_when_its_lease_ends(
    pg_pair: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pg_pair
    processed(a, accept(a, "evt_1"), adjustment("tx-1"))
    assert (a.next_adjustment_due() or 0) <= time.time()
    now = time.time()
    [_] = run(a.claim_adjustments(now + 0.01, 1, lease=30))
    # b does not spin on a row it can not claim: it looks again when the lease ends
    assert b.next_adjustment_due() == pytest.approx(now + 30.01, abs=0.01)


def _credit_on(basis: tuple[str, ...], inbox_id: int, txid: str, payment: str) -> ProcessingResult:
    return ProcessingResult(
        inbox_id,
        EventStatus.PROCESSED,
        payment_key=payment,
        customer_id="cust_1",
        adjustments=(adjustment(txid, payment=payment),),
        payment_ids=("cs_1",),
        basis=basis,
    )


def test_a_decision_on_a_stale_basis_is_refused_and_ids_join_one_class(store: Store) -> None:
    """Two decisions read the same (empty) state of one payment; the second to record
    is refused whole, and the ids each named are one payment from either side."""
    basis = store.payment_state(["pi_1", "cs_1"]).basis
    assert basis == ()
    first, second = accept(store, "evt_1"), accept(store, "evt_2")
    assert run(store.record_processing(_credit_on(basis, first, "tx-a", "pi_1"), time.time()))
    with pytest.raises(DecisionConflictError):
        run(store.record_processing(_credit_on(basis, second, "tx-b", "in_1"), time.time()))
    assert [a.transaction_id for a in store.list_adjustments()] == ["tx-a"]
    row = store.get_event("evt_2")
    assert row is not None and row.status is EventStatus.PENDING  # nothing recorded
    # in_1 is linked to cs_1 by a later event: all three are one payment, from any id
    link = ProcessingResult(
        second, EventStatus.IGNORED, "linked", payment_key="in_1", payment_ids=("cs_1",)
    )
    run(store.record_processing(link, time.time()))
    for one in ("pi_1", "cs_1", "in_1"):
        state = store.payment_state([one])
        assert set(state.ids) == {"pi_1", "cs_1", "in_1"}
        assert [d.transaction_id for d in state.decided] == ["tx-a"]
    # and prune does not forget it
    run(
        store.record_delivery(
            DeliveryOutcome(
                store.list_adjustments()[0].id,
                AdjustmentStatus.DELIVERED,
                time.time() - 10,
                1.0,
                status_code=201,
            )
        )
    )
    run(store.prune_finished(time.time() + 10))
    assert store.list_adjustments() == []
    assert [d.transaction_id for d in store.payment_state(["in_1"]).decided] == ["tx-a"]


def test_postgres_two_replicas_deciding_one_payment_at_once_record_one_decision(
    pg_pair: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = pg_pair
    basis = a.payment_state(["pi_1"]).basis
    first, second = accept(a, "evt_1"), accept(a, "evt_2")

    async def race() -> tuple[int | BaseException, int | BaseException]:
        return await asyncio.gather(
            a.record_processing(_credit_on(basis, first, "tx-a", "pi_1"), time.time()),
            b.record_processing(_credit_on(basis, second, "tx-b", "pi_1"), time.time()),
            return_exceptions=True,
        )

    outcomes = run(race())
    assert sorted(type(o).__name__ for o in outcomes) == ["DecisionConflictError", "int"]
    assert len(a.list_adjustments()) == 1


def test_postgres_writes_are_durable_even_if_the_server_says_otherwise(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_server.admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = off')
    store = PostgresStore(postgres_url)
    try:

        async def setting() -> str:
            async def read(conn: Any) -> str:
                cursor = await conn.execute("SELECT current_setting('synchronous_commit')")
                row = await cursor.fetchone()
                return str(row[0])

            return await store._write(read)

        assert run(setting()) == "on"
    finally:
        store.close()
