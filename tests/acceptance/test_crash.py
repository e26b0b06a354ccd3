"""Crash test: the bridge as a subprocess, SIGKILLed mid-stream and restarted.

Senders post unique signed `invoice.paid` webhooks without pause. The bridge is killed
with SIGKILL while they do, restarted on the same database, and fed more. Once it has
settled, every webhook that got a 200 is credited exactly once at the sandbox;
webhooks that got no answer may or may not be credited, but never twice.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO

import httpx
import pytest

from bridge.credyt.sandbox import SandboxState, create_sandbox_app
from bridge.receiving.servers import serve_in_thread
from connectors import stripe
from tests.conftest import API_KEY, STRIPE_SECRET, config_text, wait_until
from tests.helpers.processes import free_port, serve_command, wait_answering

SENDERS = 2
BEFORE_KILL = 120  # 200s to collect before the kill
AFTER_RESTART = 120  # and after the restart


class BridgeProcess:
    def __init__(self, config: Path, log: IO[bytes]) -> None:
        self.config = config
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            serve_command(self.config, self.port), stdout=self.log, stderr=subprocess.STDOUT
        )
        wait_answering(f"{self.url}/healthz", self.process, 20)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class Ledger:
    """What the senders sent and what the bridge answered."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    amounts: dict[str, int] = field(default_factory=dict)  # invoice -> minor units
    answered: set[str] = field(default_factory=set)  # got a 200
    unanswered: set[str] = field(default_factory=set)  # no answer, or not a 200
    stop: threading.Event = field(default_factory=threading.Event)

    def count_answered(self) -> int:
        with self.lock:
            return len(self.answered)


def sender(index: int, url: str, customer: str, ledger: Ledger) -> None:
    number = 0
    with httpx.Client(timeout=5) as client:
        while not ledger.stop.is_set():
            number += 1
            invoice = f"in_crash_{index}_{number}"
            amount = 100 + (number * 7 + index) % 900
            event = stripe.sample_event(
                "invoice.paid",
                event_id=f"evt_crash_{index}_{number}",
                object_id=invoice,
                customer=customer,
                amount_minor=amount,
            )
            body = json.dumps(event).encode()
            with ledger.lock:
                ledger.amounts[invoice] = amount
            try:
                answer = client.post(
                    f"{url}/webhooks/stripe", content=body, headers=stripe.sign(body, STRIPE_SECRET)
                )
                ok = answer.status_code == 200
            except httpx.HTTPError:
                ok = False
            with ledger.lock:
                (ledger.answered if ok else ledger.unanswered).add(invoice)
            if not ok:
                time.sleep(0.01)  # the bridge is down: do not spin


def outstanding(database: Path) -> int:
    """Events and adjustments not finished yet, read straight from the SQLite file."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        events = conn.execute("SELECT COUNT(*) FROM inbox WHERE status = 'pending'").fetchone()[0]
        adjustments = conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending'"
        ).fetchone()[0]
        return int(events) + int(adjustments)
    finally:
        conn.close()


@pytest.fixture
def sandbox_url() -> Iterator[tuple[SandboxState, str]]:
    state = SandboxState()
    with serve_in_thread(create_sandbox_app(state, api_key=API_KEY)) as url:
        yield state, url


@pytest.mark.slow
def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, sandbox_url: tuple[SandboxState, str]
) -> None:
    state, api_url = sandbox_url
    customer = state.add_customer()
    # Slow Credyt answers a little, so deliveries are in flight when the kill lands.
    state.inject(delay=0.02, only="adjustments")
    database = tmp_path / "crash.db"
    config = tmp_path / "bridge.yaml"
    # A short Credyt timeout keeps the lease of rows the killed process had claimed short.
    text = config_text(str(database), api_url)
    assert "  timeout: 5\n" in text
    config.write_text(text.replace("  timeout: 5\n", "  timeout: 1\n"))

    ledger = Ledger()
    with open(tmp_path / "bridge.log", "wb") as log:
        bridge = BridgeProcess(config, log)
        bridge.start()
        threads = [
            threading.Thread(target=sender, args=(i, bridge.url, customer, ledger), daemon=True)
            for i in range(SENDERS)
        ]
        try:
            for thread in threads:
                thread.start()
            wait_until(lambda: ledger.count_answered() >= BEFORE_KILL, 30, "webhooks to flow")
            bridge.kill()  # mid-stream: the senders are still posting
            answered_before_restart = ledger.count_answered()
            time.sleep(0.2)
            bridge.start()  # same database, same port
            wait_until(
                lambda: ledger.count_answered() >= answered_before_restart + AFTER_RESTART,
                30,
                "webhooks after the restart",
            )
            ledger.stop.set()
            for thread in threads:
                thread.join(10)
            wait_until(lambda: outstanding(database) == 0, 30, "the restarted bridge to settle")
        finally:
            ledger.stop.set()
            bridge.stop()

    with ledger.lock:
        answered, amounts = set(ledger.answered), dict(ledger.amounts)
    assert len(answered) >= BEFORE_KILL + AFTER_RESTART

    credited = Counter(a["body"]["metadata"]["invoice"] for a in state.adjustments)
    twice = {invoice: n for invoice, n in credited.items() if n > 1}
    assert not twice, f"credited more than once: {twice}"
    missing = answered - set(credited)
    assert not missing, f"{len(missing)} webhooks answered 200 were never credited: {missing}"
    assert set(credited) <= set(amounts)
    assert state.conflicts == []
    transaction_ids = [a["transaction_id"] for a in state.adjustments]
    assert len(transaction_ids) == len(set(transaction_ids))
    expected = sum((Decimal(amounts[invoice]) / 100 for invoice in credited), Decimal(0))
    assert state.balance(customer, "USD") == expected

    conn = sqlite3.connect(database)
    try:
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status"))
        stored = {r[0] for r in conn.execute("SELECT event_id FROM inbox")}
    finally:
        conn.close()
    assert statuses == {"delivered": len(credited)}
    # Every 200 was durable: its event survived the SIGKILL.
    assert {f"evt_{invoice[3:]}" for invoice in answered} <= stored
    # Secrets and keys never reach the logs.
    log_text = (tmp_path / "bridge.log").read_text(errors="replace")
    assert "bridge_started" in log_text
    assert STRIPE_SECRET not in log_text and API_KEY not in log_text
