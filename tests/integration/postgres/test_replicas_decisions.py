"""Two replicas deciding the same payments at once while their connections are killed.

Each payment sends two events that `match: first` must credit once between them:
checkout.session.completed (rule topup-checkout) to one replica and the marked
payment_intent.succeeded (rule topup-payment-intent) to the other, at the same moment.
Meanwhile every connection of the bridge is terminated over and over
(`pg_terminate_backend`: what a failover, a server restart or an idle timeout does to
them), so transactions and any lock tied to a connection die mid-decision.

A decision and its lock are one transaction: a lost connection can only abort it, and
the event is decided again. So every payment is credited exactly once: 0 doubles.
Real parts: two bridges (own stores, pools, processors) on uvicorn on loopback sharing
one PostgreSQL database, the Credyt sandbox, signed webhooks over HTTP.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from connectors import stripe
from tests.conftest import STRIPE_SECRET, RunningBridge, Sandbox, bridge_config, wait_until

pytestmark = pytest.mark.slow

PAYMENTS = int(os.environ.get("REPLICA_PAYMENTS", "2000"))
KILL_EVERY = 1.0  # seconds between two rounds of terminated connections
# A hung run fails here; how fast it settles is for benchmarks, not a pass/fail bound.
GIVE_UP = 600.0

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


def _kill_connections(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


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


def test_two_replicas_deciding_one_payment_under_connection_kills_credit_it_once(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, postgres_url: str
) -> None:
    text = replica_config(postgres_url, sandbox)
    replicas = [make_bridge(text), make_bridge(text)]
    customer = sandbox.state.add_customer(external_id="user_decisions")
    deadline = time.monotonic() + GIVE_UP
    stop = threading.Event()
    kills: list[int] = []

    def chaos() -> None:
        while not stop.wait(KILL_EVERY):
            try:
                kills.append(_kill_connections(postgres_url))
            except psycopg.Error:
                pass

    killer = threading.Thread(target=chaos, daemon=True)
    killer.start()
    try:
        with httpx.Client(timeout=10) as client, ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: pay(client, replicas, customer, n, deadline), range(PAYMENTS)))
        wait_until_decided(replicas[0], PAYMENTS, deadline)
    finally:
        stop.set()
        killer.join(5)
    assert sum(kills) > 0 and len(kills) >= 10  # connections really were killed, often

    assert_credited_once(sandbox, customer, PAYMENTS)
