"""Two replicas deciding the same payments while the PostgreSQL server crashes under them.

The payments of `test_replicas_decisions.py` (each one's Checkout Session to one
replica and its marked PaymentIntent to the other at the same moment, `match: first`
crediting it once between them; every fourth payment's session also resent to the
other replica, as a PSP's retry) go to two bridges sharing one database, while that
database's server is restarted the way a crash or a failover does it: `pg_ctl stop -m
immediate` (SIGQUIT to the postmaster, no checkpoint, every connection cut
mid-transaction, some commits done but never acknowledged) and started again at once,
with crash recovery. The restarts are spread over the run by its progress (one after
each seventh of the payments has been accepted), so each one hits webhooks being
stored, decisions being recorded and deliveries in flight, however fast the machine.

Design: 2,000 payments (4,500 webhooks), 6 immediate restarts, 0 doubles and 0 lost
in the sandbox ledger; about 150 s on 2 cores shared with other work, less on idle
ones. The bridges are never restarted: both answer `/readyz` again, and both decide
and deliver after the last restart. The server is a cluster of the test's own, as in
`test_outage.py`.
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

from tests.conftest import RunningBridge, Sandbox, wait_until
from tests.helpers.replica_payments import (
    assert_credited_once,
    pay,
    replica_config,
    wait_until_decided,
)
from tests.integration.postgres.conftest import Cluster

pytestmark = pytest.mark.slow

PAYMENTS = int(os.environ.get("REPLICA_RESTART_PAYMENTS", "2000"))
RESTARTS = int(os.environ.get("REPLICA_RESTARTS", "6"))
RESEND_EVERY = 4  # every fourth payment's session reaches both replicas
GIVE_UP = 600.0  # seconds: only so a hung run ends; not a performance bound


def _work(replica: RunningBridge) -> tuple[float, float]:
    """Events this replica has decided and adjustments it has delivered, so far."""
    registry = replica.bridge.metrics.registry
    decided = delivered = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "bridge_events_processed_total":
                decided += sample.value
            elif sample.name == "bridge_deliveries_total" and sample.labels["result"] in (
                "delivered",
                "already_existed",
            ):
                delivered += sample.value
    return decided, delivered


def test_two_replicas_credit_each_payment_once_through_immediate_server_restarts(
    cluster: Cluster,
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
) -> None:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE bridge_restarts")
    database = cluster.url.rsplit("/", 1)[0] + "/bridge_restarts"
    text = replica_config(database, sandbox)
    replicas = [make_bridge(text), make_bridge(text)]
    customer = sandbox.state.add_customer(external_id="user_restarts")
    started = time.monotonic()
    deadline = started + GIVE_UP
    paid: list[int] = []  # payments whose webhooks were all accepted (list.append is atomic)
    stop = threading.Event()
    restarts: list[float] = []  # seconds each restart kept the server away
    failures: list[Exception] = []
    after_last: list[tuple[float, float]] = []  # each replica's work when the last ended

    def restart_under_load() -> None:
        try:
            for k in range(1, RESTARTS + 1):
                while len(paid) < k * PAYMENTS // (RESTARTS + 1):
                    if stop.wait(0.05):
                        return
                down = time.monotonic()
                cluster.stop()  # pg_ctl stop -m immediate: SIGQUIT to the postmaster
                cluster.start()  # crash recovery, then connections again
                restarts.append(time.monotonic() - down)
            after_last.extend(_work(replica) for replica in replicas)
        except Exception as exc:  # reported by the test
            failures.append(exc)

    def one_payment(client: httpx.Client, n: int) -> None:
        pay(client, replicas, customer, n, deadline, resend=n % RESEND_EVERY == 0)
        paid.append(n)

    restarter = threading.Thread(target=restart_under_load, daemon=True)
    restarter.start()
    try:
        with httpx.Client(timeout=10) as client, ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: one_payment(client, n), range(PAYMENTS)))
        restarter.join(max(1.0, deadline - time.monotonic()))
        assert failures == [], f"the server did not restart: {failures}"
        assert len(restarts) == RESTARTS, f"{len(restarts)} restarts of {RESTARTS}"
        wait_until_decided(replicas[0], PAYMENTS, deadline)
    finally:
        stop.set()
        restarter.join(5)

    # Recovered without a restart: both ready again, and both did work after the last
    # server restart (neither left its share to the other).
    with httpx.Client(timeout=10) as client:
        for replica in replicas:

            def ready(url: str = replica.url) -> bool:
                return client.get(f"{url}/readyz").status_code == 200

            wait_until(ready, 30, f"{replica.url} ready again")
    for replica, before in zip(replicas, after_last, strict=True):
        decided, delivered = _work(replica)
        assert decided > before[0], f"{replica.url} decided nothing after the last restart"
        assert delivered > before[1], f"{replica.url} delivered nothing after the last restart"

    assert_credited_once(sandbox, customer, PAYMENTS)
    print(
        f"{PAYMENTS} payments, {RESTARTS} immediate restarts"
        f" (down {min(restarts):.1f}-{max(restarts):.1f} s), 0 doubles, 0 lost,"
        f" {time.monotonic() - started:.0f} s"
    )
