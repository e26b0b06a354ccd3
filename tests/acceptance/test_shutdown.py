"""`credyt-bridge serve` stops gracefully on SIGTERM (docker stop) and SIGINT (Ctrl-C).

The bridge runs as a real subprocess on a loopback port against the sandbox, which is
made slow (`delay`) so that a delivery is in flight when the signal arrives. With
`credyt.concurrency: 1` only one delivery is in flight and the other payments wait.
After the signal the process must exit 0 within its grace period, the delivery in
flight must complete, nothing else may be sent, and every other payment must still
be in the database, pending; a restart delivers them, each exactly once.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from bridge.service import SHUTDOWN_GRACE
from connectors import stripe
from tests.conftest import STRIPE_SECRET, Sandbox, bridge_config, wait_until
from tests.helpers.processes import STOP_LIMIT, ServeProcess

CONNECTORS = """
  stripe:
    type: stripe
    secrets: ["{secret}"]
    rules:
      - name: subscription-payment
        on: invoice.paid
        credit:
          amount: paid
"""
AMOUNTS = (Decimal("10.00"), Decimal("20.00"), Decimal("30.00"))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for process in started:
        process.kill()


def write_config(tmp_path: Path, sandbox: Sandbox, timeout: float) -> tuple[Path, Path]:
    database = tmp_path / "bridge.db"
    config = tmp_path / "config.yaml"
    config.write_text(
        bridge_config(
            database,
            sandbox.url,
            CONNECTORS.format(secret=STRIPE_SECRET),
            timeout=timeout,
            credyt="  concurrency: 1\n",
        )
    )
    return config, database


def send_payments(url: str, customer: str) -> list[str]:
    invoices = []
    for index, amount in enumerate(AMOUNTS):
        invoice = f"in_shutdown{index}"
        event = stripe.sample_event(
            "invoice.paid",
            event_id=f"evt_shutdown{index}",
            object_id=invoice,
            customer=customer,
            amount_minor=int(amount * 100),
        )
        body = json.dumps(event).encode()
        answer = httpx.post(
            f"{url}/webhooks/stripe", content=body, headers=stripe.sign(body, STRIPE_SECRET)
        )
        assert answer.status_code == 200, answer.text
        invoices.append(invoice)
    return invoices


def rows(database: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Event status by event id, adjustment status by transaction id."""
    with sqlite3.connect(database) as conn:
        events = dict(conn.execute("SELECT event_id, status FROM inbox").fetchall())
        adjustments = dict(conn.execute("SELECT transaction_id, status FROM outbox").fetchall())
    return events, adjustments


def sent_transaction_ids(sandbox: Sandbox) -> list[str]:
    return [str(adjustment["transaction_id"]) for adjustment in sandbox.state.adjustments]


def assert_nothing_lost(database: Path, delivered: set[str]) -> None:
    events, adjustments = rows(database)
    assert len(events) == len(AMOUNTS), events  # every accepted webhook is on record
    assert set(events.values()) <= {"pending", "processed"}, events
    for transaction_id, status in adjustments.items():
        expected = "delivered" if transaction_id in delivered else "pending"
        assert status == expected, (transaction_id, status, adjustments)


def restart_and_settle(
    config: Path, database: Path, log: Path, sandbox: Sandbox, customer: str, signum: int
) -> None:
    sandbox.state.inject()  # Credyt is fast again
    again = ServeProcess(config, log)
    try:
        wait_until(
            lambda: sandbox.state.balance(customer, "USD") == sum(AMOUNTS),
            30 + SHUTDOWN_GRACE,
            "the restarted bridge to deliver what was left",
        )
        wait_until(
            lambda: (
                set(rows(database)[1].values()) == {"delivered"}
                and len(rows(database)[1]) == len(AMOUNTS)
            ),
            10,
            "every adjustment to be recorded as delivered",
        )
        code, _ = again.stop(signum)
        assert code == 0, log.read_text()
    finally:
        again.kill()
    ids = sent_transaction_ids(sandbox)
    assert len(set(ids)) == len(AMOUNTS)
    assert set(rows(database)[0].values()) == {"processed"}
    assert sandbox.state.balance(customer, "USD") == sum(AMOUNTS)  # each payment once


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_finishes_the_delivery_in_flight_and_keeps_the_rest(
    tmp_path: Path, sandbox: Sandbox, signum: int
) -> None:
    config, database = write_config(tmp_path, sandbox, timeout=30)
    log = tmp_path / "serve.log"
    customer = sandbox.state.add_customer(external_id="cus_shutdown")
    sandbox.state.inject(delay=2.0, only="adjustments")
    bridge = ServeProcess(config, log)
    try:
        send_payments(bridge.url, customer)
        wait_until(lambda: sandbox.state.adjustment_requests == 1, 15, "a delivery in flight")
        code, took = bridge.stop(signum)
    finally:
        bridge.kill()

    output = log.read_text()
    assert code == 0, output
    assert took < STOP_LIMIT, took
    assert "Traceback" not in output, output
    # The delivery in flight finished and was recorded; nothing new was started.
    assert sandbox.state.adjustment_requests == 1
    delivered = set(sent_transaction_ids(sandbox))
    assert len(delivered) == 1
    assert sandbox.state.balance(customer, "USD") in AMOUNTS
    assert_nothing_lost(database, delivered)
    assert list(rows(database)[1].values()).count("delivered") == 1

    restart_and_settle(config, database, log, sandbox, customer, signum)


@pytest.mark.slow
def test_a_delivery_longer_than_the_grace_stays_pending_and_is_not_doubled(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    # Credyt answers after 2x the grace: the stop may not wait that long. The bridge gives
    # up on the answer and exits; the row stays pending with its lease (2 x timeout + 5 s)
    # and is sent again, under the same transaction id, once a restarted bridge sees the
    # lease expire. (The client timeout is longer than the grace, so the stop cuts it.)
    config, database = write_config(tmp_path, sandbox, timeout=SHUTDOWN_GRACE + 2)
    log = tmp_path / "serve.log"
    customer = sandbox.state.add_customer(external_id="cus_slow")
    sandbox.state.inject(delay=2 * SHUTDOWN_GRACE, only="adjustments")
    bridge = ServeProcess(config, log)
    try:
        send_payments(bridge.url, customer)
        wait_until(lambda: sandbox.state.adjustment_requests == 1, 15, "a delivery in flight")
        code, took = bridge.stop(signal.SIGTERM)
    finally:
        bridge.kill()

    assert code == 0, log.read_text()
    assert SHUTDOWN_GRACE - 1 < took < STOP_LIMIT, took
    assert_nothing_lost(database, delivered=set())  # every adjustment still pending

    restart_and_settle(config, database, log, sandbox, customer, signal.SIGTERM)
    assert sandbox.state.adjustment_requests > len(AMOUNTS)  # the cut-short one went again
