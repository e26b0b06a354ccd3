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
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from bridge.service import HTTP_DRAIN, SHUTDOWN_GRACE
from connectors import stripe
from tests.conftest import API_KEY, STRIPE_SECRET, Sandbox, wait_until

CONFIG = """
database: {database}
credyt:
  api_url: {api_url}
  api_key: {api_key}
  timeout: {timeout}
  concurrency: 1
delivery:
  backoff_initial: 0.05
  backoff_max: 0.5
connectors:
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
# Stopping takes the HTTP drain plus the workers' grace at the very most.
STOP_LIMIT = HTTP_DRAIN + SHUTDOWN_GRACE + 5


def credyt_bridge() -> list[str]:
    script = Path(sys.executable).parent / "credyt-bridge"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bridge"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServeProcess:
    """`credyt-bridge serve` in a subprocess, its output in a log file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.output = log.open("a")
        self.process = subprocess.Popen(
            [
                *credyt_bridge(),
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )
        wait_until(self.healthy, 30, "serve to answer /healthz")

    def healthy(self) -> bool:
        assert self.process.poll() is None, f"serve exited early:\n{self.log.read_text()}"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, signum: int) -> tuple[int, float]:
        """Send the signal; the exit status and how long the stop took."""
        started = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=STOP_LIMIT + 10)
        finally:
            self.kill()
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.output.close()


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
        CONFIG.format(
            database=database,
            api_url=sandbox.url,
            api_key=API_KEY,
            timeout=timeout,
            secret=STRIPE_SECRET,
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
