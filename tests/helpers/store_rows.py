"""Rows for the store contract: an accepted event, an adjustment to queue, a recorded
processing result, on any `Store`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from bridge.events import Envelope
from bridge.storage.records import EventStatus, NewAdjustment, ProcessingResult
from bridge.storage.store import Store

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def envelope(event_id: str, event_type: str = "invoice.paid") -> Envelope:
    return Envelope(event_id=event_id, event_type=event_type, livemode=False)


def adjustment(
    txid: str, *, payment: str = "in_1", amount: str = "49.99", customer: str = "cust_1"
) -> NewAdjustment:
    return NewAdjustment(
        transaction_id=txid,
        connector="stripe",
        rule="subscription-payment",
        kind="payment",
        payment_key=payment,
        reversal_key=None,
        customer_id=customer,
        asset="USD",
        account="default",
        amount=amount,
        payment_amount_minor=4999,
        body=f'{{"transaction_id": "{txid}", "amount": {amount}}}',
    )


def accept(store: Store, event_id: str, at: float | None = None, connector: str = "stripe") -> int:
    assert run(store.accept(connector, envelope(event_id), b'{"id": "x"}', at or time.time()))
    row = store.get_event(event_id)
    assert row is not None
    return row.id


def processed(store: Store, inbox_id: int, *adjustments: NewAdjustment) -> int:
    result = ProcessingResult(
        inbox_id,
        EventStatus.PROCESSED,
        payment_key=adjustments[0].payment_key if adjustments else None,
        customer_id="cust_1",
        adjustments=adjustments,
    )
    return run(store.record_processing(result, time.time()))
