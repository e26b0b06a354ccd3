"""Payments told to two replicas at once: each a Checkout Session to one and its marked
PaymentIntent to the other, which `match: first` must credit once between them; then
the wait until all are decided, and the ledger check that each was credited once."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import httpx

from connectors import stripe
from tests.conftest import STRIPE_SECRET, RunningBridge, Sandbox, bridge_config, wait_until

CONNECTORS = """
  stripe:
    type: stripe
    secrets: ["{secret}"]
    match: first
    rules:
      - name: topup-checkout
        on: [checkout.session.completed]
        credit: {{amount: paid}}
      - name: topup-payment-intent
        on: payment_intent.succeeded
        when: {{metadata: {{credyt_topup: "true"}}}}
        credit: {{amount: paid}}
"""


def replica_config(database: str, sandbox: Sandbox) -> str:
    connectors = CONNECTORS.format(secret=STRIPE_SECRET)
    return bridge_config(database, sandbox.url, connectors, timeout=2)


def amount_minor(n: int) -> int:
    return 1000 + n % 500


def post_until_accepted(
    client: httpx.Client, url: str, event: dict[str, Any], deadline: float
) -> None:
    """As the PSP does: until the bridge answers 200 (503 while the database is away)."""
    body = json.dumps(event).encode()
    while True:
        try:
            answer = client.post(
                f"{url}/webhooks/stripe", content=body, headers=stripe.sign(body, STRIPE_SECRET)
            )
            if answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{event['id']} was never accepted")
        time.sleep(0.05)


def pay(
    client: httpx.Client,
    replicas: Sequence[RunningBridge],
    customer: str,
    n: int,
    deadline: float,
    *,
    resend: bool = False,
) -> None:
    """Payment `n`, told at once to both replicas: its Checkout Session to one, its
    marked PaymentIntent to the other (alternating which gets which). With `resend`
    the session also reaches the other replica at the same moment, as a PSP's retry
    through a load balancer does."""
    common: dict[str, Any] = {"customer": customer, "amount_minor": amount_minor(n)}
    session = stripe.sample_event(
        "checkout.session.completed", event_id=f"evt_cs_{n}", object_id=f"cs_d{n}", **common
    )
    intent = stripe.sample_event(
        "payment_intent.succeeded",
        event_id=f"evt_pi_{n}",
        object_id=f"pi_d{n}",
        metadata={"credyt_topup": "true"},
        **common,
    )
    first, second = (replicas[0], replicas[1]) if n % 2 else (replicas[1], replicas[0])
    deliveries = [(first, session), (second, intent)]
    if resend:
        deliveries.append((second, session))
    threads = [
        threading.Thread(target=post_until_accepted, args=(client, r.url, event, deadline))
        for r, event in deliveries
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def wait_until_decided(replica: RunningBridge, payments: int, deadline: float) -> None:
    """Until both events of every payment are decided and nothing waits for delivery."""

    def settled() -> bool:
        counts = replica.bridge.store.counts()
        done = counts["events"].get("processed", 0) + counts["events"].get("ignored", 0)
        return done == 2 * payments and not counts["adjustments"].get("pending")

    try:
        wait_until(settled, max(10.0, deadline - time.monotonic()), "every event decided")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {replica.bridge.store.counts()}") from None


def assert_credited_once(sandbox: Sandbox, customer: str, payments: int) -> None:
    """The sandbox ledger: each payment credited exactly once, none lost, none twice."""
    credits = Counter(a["body"]["metadata"]["payment_intent"] for a in sandbox.state.adjustments)
    doubles = {payment: n for payment, n in credits.items() if n > 1}
    assert doubles == {}, f"{len(doubles)} doubles in {payments} payments"
    assert len(credits) == payments
    assert sandbox.state.conflicts == []
    expected = sum((Decimal(amount_minor(n)) / 100 for n in range(payments)), Decimal(0))
    assert sandbox.state.balance(customer, "USD") == expected
