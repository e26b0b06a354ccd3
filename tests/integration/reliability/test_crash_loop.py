"""SIGKILL the bridge at random moments under load; nothing acknowledged is lost or doubled.

`credyt-bridge serve` runs as a subprocess against the sandbox (in this process, on
another loopback port) with a SQLite file in tmp_path. Load threads post unique signed
Stripe and Paddle webhooks the way a PSP does: each until it is answered 2xx, some
payments under two events (`invoice.paid` and `invoice.payment_succeeded`). The loop
kills the bridge with SIGKILL at a random moment (receiving, committing a group,
delivering) and starts it again, RELIABILITY_KILLS times (default 5). At the end:

- every webhook answered 2xx is in the inbox (durable before the answer);
- every payment with an acknowledged webhook is credited exactly once at Credyt, no
  payment that was never sent is, and Credyt saw no conflicting bodies;
- the wallet holds exactly the sum of those payments; no event failed, nothing is dead.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bridge.processing.rules import transaction_id
from connectors import paddle, stripe
from tests.conftest import PADDLE_SECRET, STRIPE_SECRET, Sandbox, wait_until
from tests.helpers.processes import MODULE_COMMAND, free_port, serve_command, wait_answering
from tests.integration.reliability.conftest import COUNTS, reliability_config, unique

KILLS = int(os.environ.get("RELIABILITY_KILLS", "5"))
LOAD_THREADS = 6
MAX_PAYMENTS = int(os.environ.get("RELIABILITY_MAX_PAYMENTS", "20000"))
LOAD_SECONDS_MAX = 60 + 5 * KILLS  # no load loop runs longer than this


@dataclass
class Payment:
    tid: str
    amount_minor: int
    webhooks: list[tuple[str, str, bytes]]  # (connector, event id, body)
    acked: set[str] = field(default_factory=set)


def make_payment(customer: str, n: int) -> Payment:
    amount = 100 + n
    if n % 3 == 2:
        txn = unique("txn_")
        event: dict[str, Any] = paddle.sample_event(
            "transaction.completed",
            event_id=unique("evt_"),
            object_id=txn,
            customer=customer,
            amount_minor=amount,
        )
        return Payment(
            transaction_id("paddle", txn, "transaction"),
            amount,
            [("paddle", event["event_id"], _body(event))],
        )
    invoice = unique("in_")
    webhooks: list[tuple[str, str, bytes]] = []
    types = ["invoice.paid", "invoice.payment_succeeded"] if n % 5 == 0 else ["invoice.paid"]
    for event_type in types:
        event = stripe.sample_event(
            event_type,
            event_id=unique("evt_"),
            object_id=invoice,
            customer=customer,
            amount_minor=amount,
        )
        webhooks.append(("stripe", str(event["id"]), _body(event)))
    return Payment(transaction_id("stripe", invoice, "subscription-payment"), amount, webhooks)


def _body(event: dict[str, Any]) -> bytes:
    import json

    return json.dumps(event).encode()


class Load:
    """Threads posting payments' webhooks, each until answered 2xx (bounded)."""

    def __init__(self, url: str, customer: str) -> None:
        self.url = url
        self.customer = customer
        self.payments: list[Payment] = []
        self.lock = threading.Lock()
        self.stop_new = threading.Event()
        self.deadline = time.monotonic() + LOAD_SECONDS_MAX
        self.posts = 0
        self.errors = 0
        self.threads = [
            threading.Thread(target=self._run, daemon=True) for _ in range(LOAD_THREADS)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, end - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "load threads did not finish"

    def _next(self) -> Payment | None:
        with self.lock:
            if self.stop_new.is_set() or len(self.payments) >= MAX_PAYMENTS:
                return None
            payment = make_payment(self.customer, len(self.payments))
            self.payments.append(payment)
            return payment

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < self.deadline:
                payment = self._next()
                if payment is None:
                    return
                for connector, event_id, body in payment.webhooks:
                    if self._deliver(client, connector, body):
                        payment.acked.add(event_id)

    def _deliver(self, client: httpx.Client, connector: str, body: bytes) -> bool:
        while time.monotonic() < self.deadline:
            headers = (
                stripe.sign(body, STRIPE_SECRET)
                if connector == "stripe"
                else paddle.sign(body, PADDLE_SECRET)
            )
            with self.lock:
                self.posts += 1
            try:
                answer = client.post(
                    f"{self.url}/webhooks/{connector}", content=body, headers=headers
                )
            except httpx.HTTPError:
                with self.lock:
                    self.errors += 1
                time.sleep(0.02)  # the bridge is down: the PSP tries again later
                continue
            if 200 <= answer.status_code < 300:
                return True
            assert answer.status_code == 503, answer.text  # anything else is a bug
            time.sleep(0.02)
        return False


class BridgeProcess:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                serve_command(self.config, self.port, MODULE_COMMAND),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_answering(f"{self.url}/healthz", self.proc, 30, lambda: self.log.read_text()[-3000:])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def test_sigkill_under_load_loses_and_doubles_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    seed = int(os.environ.get("RELIABILITY_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    database = tmp_path / "bridge.db"
    config = tmp_path / "config.yaml"
    config.write_text(reliability_config(str(database), sandbox.url, timeout=2))
    customer = sandbox.state.add_customer()
    # Deliveries take a little while, so kills also land while adjustments are in flight.
    sandbox.state.inject(delay=0.01, only="adjustments")
    bridge = BridgeProcess(config, free_port(), tmp_path / "bridge.log")
    load = Load(bridge.url, customer)
    try:
        bridge.start()
        load.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.05, 1.2))
            events, rows = _pending_counts(database)  # what the kill interrupts
            bridge.kill()
            COUNTS["crash: SIGKILLs"] += 1
            COUNTS["crash: kills with events being processed"] += int(events > 0)
            COUNTS["crash: kills with adjustments being delivered"] += int(rows > 0)
            bridge.start()
        time.sleep(rng.uniform(0.2, 0.6))
        load.stop_new.set()
        load.join(LOAD_SECONDS_MAX)
        acked = [p for p in load.payments if p.acked]
        acked_tids = {p.tid for p in acked}

        def delivered_all() -> bool:
            seen = {str(a["transaction_id"]) for a in sandbox.state.snapshot()["adjustments"]}
            return acked_tids <= seen and not _pending(database)

        # A row claimed by a killed process waits out its lease (2 x timeout + 5 s).
        wait_until(delivered_all, 60, "every acknowledged payment to be credited")
        assert bridge.stop() == 0
    finally:
        load.stop_new.set()
        if bridge.proc is not None and bridge.proc.poll() is None:
            bridge.proc.kill()
            bridge.proc.wait(10)

    sent_tids = {p.tid for p in load.payments}
    state = sandbox.state.snapshot()
    credited: dict[str, int] = {}
    for adjustment in state["adjustments"]:
        tid = str(adjustment["transaction_id"])
        credited[tid] = credited.get(tid, 0) + 1
    assert state["conflicts"] == []
    assert all(n == 1 for n in credited.values())
    assert acked_tids <= set(credited), "an acknowledged payment was never credited"
    assert set(credited) <= sent_tids, "something that was never sent was credited"
    amounts = {p.tid: p.amount_minor for p in load.payments}
    expected_balance = sum(Decimal(amounts[t]) for t in credited) / 100
    assert sandbox.state.balance(customer, "USD") == expected_balance
    # Durable before the answer: every acknowledged webhook is in the inbox.
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        stored = {r[0] for r in conn.execute("SELECT event_id FROM inbox")}
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM inbox GROUP BY status"))
        outbox = dict(conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status"))
    acked_events = {e for p in load.payments for e in p.acked}
    assert acked_events <= stored, f"{len(acked_events - stored)} acknowledged webhooks were lost"
    assert set(statuses) <= {"processed", "ignored"}, statuses
    assert set(outbox) == {"delivered"}, outbox
    log = (tmp_path / "bridge.log").read_text()
    assert "Traceback" not in log and "event_processing_crashed" not in log

    COUNTS["crash: seed"] = seed
    COUNTS["crash: payments sent"] += len(load.payments)
    COUNTS["crash: webhooks acknowledged 2xx"] += len(acked_events)
    COUNTS["crash: webhook posts (incl. PSP-style retries)"] += load.posts
    COUNTS["crash: posts that hit a dead bridge"] += load.errors
    COUNTS["crash: payments credited exactly once"] += len(credited)
    COUNTS["crash: payments credited twice"] += sum(1 for n in credited.values() if n > 1)
    print(
        f"\ncrash loop seed={seed}: {KILLS} kills, {len(load.payments)} payments, "
        f"{len(acked_events)} webhooks acknowledged, {len(credited)} credited once, "
        f"0 doubled, 0 lost"
    )


def _pending_counts(database: Path) -> tuple[int, int]:
    """(events, adjustments) still pending; (-1, -1) when the file can not be read."""
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as conn:
            events = conn.execute("SELECT COUNT(*) FROM inbox WHERE status = 'pending'").fetchone()
            rows = conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()
    except sqlite3.Error:
        return -1, -1
    return int(events[0]), int(rows[0])


def _pending(database: Path) -> bool:
    return any(n != 0 for n in _pending_counts(database))
