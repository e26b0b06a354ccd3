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

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.conftest import RunningBridge, Sandbox
from tests.helpers.replica_payments import (
    assert_credited_once,
    pay,
    replica_config,
    wait_until_decided,
)
from tests.integration.postgres.conftest import drop_connections

pytestmark = pytest.mark.slow

PAYMENTS = int(os.environ.get("REPLICA_PAYMENTS", "2000"))
KILL_EVERY = 1.0  # seconds between two rounds of terminated connections
# A hung run fails here; how fast it settles is for benchmarks, not a pass/fail bound.
GIVE_UP = 600.0


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
                kills.append(drop_connections(postgres_url))
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
