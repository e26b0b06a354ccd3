"""The core path end to end: signed Stripe webhook -> stored -> credited once at the sandbox."""

from __future__ import annotations

from decimal import Decimal

from connectors import stripe
from tests.conftest import RunningBridge, Sandbox


def test_invoice_paid_is_credited_once(running: RunningBridge, sandbox: Sandbox) -> None:
    customer = sandbox.state.add_customer(external_id="user_1")
    event = stripe.sample_event(
        "invoice.paid",
        event_id="evt_smoke_1",
        object_id="in_smoke_1",
        customer=customer,
        amount_minor=4999,
        currency="usd",
    )
    first = running.send_stripe(event)
    again = running.send_stripe(event)
    assert (first.status_code, first.json()) == (200, {"status": "accepted"})
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    running.settle()
    assert sandbox.state.balance(customer, "USD") == Decimal("49.99")
    assert len(sandbox.state.adjustments) == 1
    assert running.url and running.bridge.store.list_adjustments()[0].status.value == "delivered"
