"""A wall clock stepped back does not leave retries waiting for the length of the step.

The machine's clock is not touched: the rows are written as a clock one hour ahead of
the current one would have written them (an hour-long step back just after). A real
bridge then runs on the same SQLite file, against the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bridge.config.loading import parse_config
from bridge.events import Envelope, PaymentEvent
from bridge.processing.rules import build_credit
from bridge.service import make_connector
from bridge.storage.records import EventStatus, ProcessingResult
from bridge.storage.sqlite import SQLiteStore
from bridge.storage.store import CLOCK_STEP_SLACK
from connectors import stripe
from tests.conftest import Sandbox, config_text, wait_until

STEP = 3600.0  # the clock went back an hour


def invoice(event_id: str, customer: str) -> dict[str, Any]:
    return stripe.sample_event(
        "invoice.paid",
        event_id=event_id,
        object_id=f"in_{event_id}",
        customer=customer,
        amount_minor=1500,
    )


def write_rows_before_the_step(database: str, customer: str, config_text_: str) -> None:
    """Three events, as a clock STEP seconds ahead of now (and one honest one) left them."""
    config = parse_config(config_text_)
    connector = config.connectors["stripe"]
    rule = connector.rules[0]
    store = SQLiteStore(database)
    ahead = time.time() + STEP

    async def write() -> None:
        # 1. a retry scheduled 2 s out by the clock before the step: due an hour late
        retry = invoice("evt_retry", customer)
        await store.accept(
            "stripe",
            Envelope("evt_retry", "invoice.paid", False),
            json.dumps(retry).encode(),
            ahead,
        )
        row = store.get_event("evt_retry")
        assert row is not None
        await store.record_processing(
            ProcessingResult(row.id, EventStatus.PENDING, "Credyt unavailable", ahead + 2), ahead
        )
        # 2. an adjustment queued by the clock before the step, not yet delivered
        queued = invoice("evt_queued", customer)
        await store.accept(
            "stripe",
            Envelope("evt_queued", "invoice.paid", False),
            json.dumps(queued).encode(),
            time.time(),
        )
        row = store.get_event("evt_queued")
        assert row is not None
        event = make_connector(connector).normalize(queued)
        assert isinstance(event, PaymentEvent)
        adjustment = build_credit(rule, event, connector, customer)
        await store.record_processing(
            ProcessingResult(
                row.id,
                EventStatus.PROCESSED,
                payment_key="in_evt_queued",
                customer_id=customer,
                adjustments=(adjustment,),
            ),
            ahead,
        )
        # 3. an honest wait of an hour written now (a long Retry-After): not due early
        honest = invoice("evt_honest", customer)
        now = time.time()
        await store.accept(
            "stripe",
            Envelope("evt_honest", "invoice.paid", False),
            json.dumps(honest).encode(),
            now,
        )
        row = store.get_event("evt_honest")
        assert row is not None
        await store.record_processing(
            ProcessingResult(row.id, EventStatus.PENDING, "waiting an hour", now + STEP), now
        )

    try:
        asyncio.run(write())
    finally:
        store.close()


def test_rows_written_before_a_backward_step_are_due_at_once(
    make_bridge: Any, sandbox: Sandbox, tmp_path: Path
) -> None:
    assert STEP > CLOCK_STEP_SLACK
    database = str(tmp_path / "bridge.db")
    text = config_text(database, sandbox.url)
    customer = sandbox.state.add_customer()
    write_rows_before_the_step(database, customer, text)
    bridge = make_bridge(text, database=database)

    def credited(transaction_ids: set[str]) -> bool:
        return {a["transaction_id"] for a in sandbox.state.adjustments} >= transaction_ids

    store = bridge.bridge.store
    queued = store.adjustments_for_payment("in_evt_queued")
    assert len(queued) == 1
    wait_until(lambda: credited({queued[0].transaction_id}), 10, "the queued adjustment")
    wait_until(
        lambda: (
            (r := store.get_event("evt_retry")) is not None and r.status is EventStatus.PROCESSED
        ),
        10,
        "the retry scheduled before the step",
    )
    retry = store.adjustments_for_payment("in_evt_retry")
    wait_until(lambda: credited({a.transaction_id for a in retry}), 10, "the retry's credit")
    honest = store.get_event("evt_honest")
    assert honest is not None and honest.status is EventStatus.PENDING
    assert honest.attempts == 1  # not tried again: its hour is real
