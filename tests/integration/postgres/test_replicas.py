"""Three `credyt-bridge serve` replicas on one PostgreSQL database, one killed mid-delivery.

Webhooks go round-robin to all three (duplicates to another replica than the first
copy). Then the two others are frozen (SIGSTOP) so that only replica 0 works, Credyt
(the sandbox) is made slow, and replica 0 is SIGKILLed while it holds leased outbox
rows. The survivors are thawed and more webhooks arrive, round-robin; a request to the
dead replica goes to the next one, as a load balancer or the PSP's retry would do.

Every webhook answered 200 must end as exactly one adjustment at the sandbox, per
transaction id, with no conflicting bodies; the dead replica's rows are delivered by
the others once its lease has run out.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from bridge.storage.postgres import PostgresStore
from connectors import stripe
from tests.conftest import STRIPE_SECRET, Sandbox, config_text, wait_until
from tests.helpers.processes import MODULE_COMMAND, free_port, serve_command

pytestmark = pytest.mark.slow

CREDYT_TIMEOUT = 2  # seconds; the bridge leases claimed rows for 2 * timeout + 5 = 9 s
LEASE = 2 * CREDYT_TIMEOUT + 5


def _die_with_parent() -> None:
    """In the child: SIGKILL it when the test process dies (Linux), so a killed test
    session leaves no replica behind."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Replica:
    def __init__(self, index: int, config: Path, log: Path) -> None:
        self.index = index
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            serve_command(config, self.port, MODULE_COMMAND),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_die_with_parent,
        )

    def ready(self) -> bool:
        if self.process.poll() is not None:
            self._log.flush()
            tail = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(
                f"replica {self.index} exited with {self.process.returncode}:\n{tail}"
            )
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


@pytest.fixture
def replicas(tmp_path: Path, sandbox: Sandbox, postgres_url: str) -> Iterator[list[Replica]]:
    text = config_text(postgres_url, sandbox.url).replace(
        "timeout: 5", f"timeout: {CREDYT_TIMEOUT}"
    )
    assert f"timeout: {CREDYT_TIMEOUT}" in text
    config = tmp_path / "config.yaml"
    config.write_text(text)
    PostgresStore(postgres_url).close()  # migrate once, so start-up logs stay quiet
    started = [Replica(i, config, tmp_path / f"replica-{i}.log") for i in range(3)]
    try:
        wait_until(lambda: all(r.ready() for r in started), 30, "three replicas to be ready")
        yield started
    finally:
        for replica in started:
            replica.stop()


class Sender:
    """Signs and sends Stripe webhooks round-robin; remembers what was accepted."""

    def __init__(self, replicas: list[Replica], customer: str) -> None:
        self.replicas = replicas
        self.customer = customer
        self.client = httpx.Client(timeout=10)
        self.turn = 0
        self.accepted: dict[str, str] = {}  # event id -> invoice id
        self.answers: Counter[str] = Counter()

    def send(self, event: dict[str, Any], replica: Replica | None = None) -> str:
        body = json.dumps(event).encode()
        targets = [replica] if replica else self._round_robin()
        for target in targets:
            try:
                answer = self.client.post(
                    f"{target.url}/webhooks/stripe",
                    content=body,
                    headers=stripe.sign(body, STRIPE_SECRET),
                )
            except httpx.TransportError:
                continue  # a dead replica: the next one gets it
            status = str(answer.json().get("status", answer.status_code))
            self.answers[status] += 1
            if answer.status_code == 200:
                self.accepted[event["id"]] = event["data"]["object"]["id"]
            return status
        raise AssertionError("no replica answered")

    def _round_robin(self) -> list[Replica]:
        self.turn += 1
        n = len(self.replicas)
        return [self.replicas[(self.turn + k) % n] for k in range(n)]

    def invoice(self, n: int, *, event_type: str = "invoice.paid", event_id: str = "") -> str:
        event = stripe.sample_event(
            event_type,
            event_id=event_id or f"evt_rep_{n}",
            object_id=f"in_rep_{n}",
            customer=self.customer,
            amount_minor=1000 + n,
        )
        return self.send(event)

    def close(self) -> None:
        self.client.close()


def _leased_pending(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id FROM outbox WHERE status = 'pending' AND lease_until > %s", (time.time(),)
        ).fetchall()
    return [int(r[0]) for r in rows]


def _settled(url: str) -> dict[str, dict[str, int]]:
    store = PostgresStore(url)
    try:
        return store.counts()
    finally:
        store.close()


def test_three_replicas_one_killed_every_webhook_delivered_once(
    replicas: list[Replica], sandbox: Sandbox, postgres_url: str
) -> None:
    customer = sandbox.state.add_customer(external_id="user_replicas")
    sender = Sender(replicas, customer)
    try:
        # 1. round-robin to all three, with cross-replica duplicates
        for n in range(30):
            assert sender.invoice(n) == "accepted"
        for n in range(0, 30, 5):  # the same event again, to another replica
            assert sender.invoice(n) == "duplicate"
        for n in range(0, 30, 10):  # the same invoice under its other event type
            sender.invoice(n, event_type="invoice.payment_succeeded", event_id=f"evt_rep_ps_{n}")
        wait_until(
            lambda: _settled(postgres_url)["adjustments"] == {"delivered": 30},
            20,
            "phase 1 deliveries",
        )
        assert len(sandbox.state.adjustments) == 30

        # 2. only replica 0 works, Credyt is slow: kill it while it holds leased rows
        for replica in replicas[1:]:
            replica.signal(signal.SIGSTOP)
        sandbox.state.inject(delay=1.5, only="adjustments")
        for n in range(30, 40):
            assert sender.send(_event(sender, n), replicas[0]) == "accepted"
        wait_until(lambda: len(_leased_pending(postgres_url)) >= 3, 10, "replica 0 to claim")
        held = _leased_pending(postgres_url)
        replicas[0].signal(signal.SIGKILL)
        replicas[0].process.wait(10)
        killed_at = time.time()
        sandbox.state.inject()  # Credyt is fast again
        for replica in replicas[1:]:
            replica.signal(signal.SIGCONT)

        # 3. more webhooks, round-robin over all three (the dead one refuses connections)
        for n in range(40, 55):
            assert sender.invoice(n) == "accepted"

        def all_delivered() -> bool:
            counts = _settled(postgres_url)
            return counts["adjustments"] == {"delivered": 55} and counts["events"] == {
                "processed": 55 + 3
            }

        wait_until(all_delivered, LEASE + 20, "every adjustment to be delivered")
    finally:
        sender.close()

    # every accepted webhook's payment: exactly one adjustment, no conflicting bodies
    transaction_ids = Counter(a["transaction_id"] for a in sandbox.state.adjustments)
    assert all(count == 1 for count in transaction_ids.values()), transaction_ids
    invoices = {a["body"]["metadata"]["invoice"] for a in sandbox.state.adjustments}
    assert invoices == set(sender.accepted.values())
    assert len(invoices) == 55
    assert sandbox.state.conflicts == []
    expected = sum((Decimal(1000 + n) / 100 for n in range(55)), Decimal(0))
    assert sandbox.state.balance(customer, "USD") == expected
    assert sender.answers == Counter({"accepted": 58, "duplicate": 6})

    # the rows replica 0 held were delivered by the others once its lease ran out (one it
    # finished in the instant before the kill may have been delivered by itself)
    store = PostgresStore(postgres_url)
    try:
        rows = [store.get_adjustment(str(outbox_id)) for outbox_id in held]
    finally:
        store.close()
    delivered_at = [r.delivered_at for r in rows if r is not None and r.delivered_at]
    assert len(delivered_at) == len(held)
    assert any(at > killed_at + LEASE / 2 for at in delivered_at), (killed_at, delivered_at)


def _event(sender: Sender, n: int) -> dict[str, Any]:
    return stripe.sample_event(
        "invoice.paid",
        event_id=f"evt_rep_{n}",
        object_id=f"in_rep_{n}",
        customer=sender.customer,
        amount_minor=1000 + n,
    )
