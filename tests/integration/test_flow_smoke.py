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


def test_the_fast_path_leaves_other_routes_to_starlette(running: RunningBridge) -> None:
    import httpx

    assert httpx.get(f"{running.url}/healthz").json() == {"status": "ok"}
    # Only POST takes the fast path; a GET on a webhook URL is Starlette's 405.
    assert httpx.get(f"{running.url}/webhooks/stripe").status_code == 405
    # A nested path is no connector name: Starlette answers 404.
    assert httpx.post(f"{running.url}/webhooks/stripe/extra", content=b"{}").status_code == 404
    unknown = httpx.post(f"{running.url}/webhooks/nope", content=b"{}")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "unknown connector 'nope'"})
