"""A delivery cut off by shutdown hands its row back at once, still pending."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bridge.credyt.client import CredytClient
from bridge.delivery.deliverer import Deliverer
from bridge.delivery.retry import RetryPolicy
from bridge.events import Envelope
from bridge.storage.records import AdjustmentStatus, EventStatus, NewAdjustment, ProcessingResult
from bridge.storage.sqlite import SQLiteStore
from tests.conftest import API_KEY, Sandbox


def test_cut_off_delivery_is_released_for_immediate_redelivery(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer(external_id="user_stop")
    sandbox.state.inject(delay=3.0)  # every answer takes longer than the grace below
    store = SQLiteStore(str(tmp_path / "bridge.db"))

    async def scenario() -> None:
        await store.accept("stripe", Envelope("evt_stop", "invoice.paid"), b"{}", time.time())
        inbox_id = store.due_events(time.time(), 1)[0].id
        body = (
            '{"transaction_id":"0b0f4f6e-3a52-5d55-9f0e-2d5c5d1f4e01","asset":"USD",'
            '"amount":5,"reason":"external_topup"}'
        )
        adjustment = NewAdjustment(
            transaction_id="0b0f4f6e-3a52-5d55-9f0e-2d5c5d1f4e01",
            connector="stripe",
            rule="r",
            kind="payment",
            payment_key="in_stop",
            reversal_key=None,
            customer_id=customer,
            asset="USD",
            account="default",
            amount="5",
            payment_amount_minor=500,
            body=body,
        )
        result = ProcessingResult(inbox_id, EventStatus.PROCESSED, adjustments=(adjustment,))
        await store.record_processing(result, time.time())
        client = CredytClient(sandbox.url, API_KEY, timeout=10)
        deliverer = Deliverer(store, client, RetryPolicy(), lease=60)
        worker = asyncio.create_task(deliverer.run())
        while sandbox.state.adjustment_requests == 0:  # the request is in flight
            await asyncio.sleep(0.01)
        await deliverer.stop(grace=0.2)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await client.aclose()
        # With the 60 s lease given back, the row can be claimed again right away.
        again = await store.claim_adjustments(time.time(), 10, 60)
        assert [row.transaction_id for row in again] == [adjustment.transaction_id]
        assert again[0].status is AdjustmentStatus.PENDING

    try:
        asyncio.run(scenario())
    finally:
        store.close()
