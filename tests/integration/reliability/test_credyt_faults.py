"""Credyt misbehaves; every payment is still credited exactly once.

A real bridge (uvicorn on 127.0.0.1, SQLite in tmp_path) delivers to the sandbox, whose
fault switches make it answer 5xx, 429 (with and without Retry-After), answer too late,
answer slowly, refuse connections (nothing listening yet), or apply an adjustment and
drop the connection before answering. The circuit breaker opens after repeated
failures, probes one request at a time without spending the rows' attempts, and closes
on its own when Credyt is back.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from bridge.credyt.sandbox import SandboxState, create_sandbox_app
from bridge.receiving.servers import serve_in_thread
from bridge.storage.records import AdjustmentStatus
from tests.conftest import API_KEY, RunningBridge, Sandbox, wait_until
from tests.helpers.logs import LogBuffer
from tests.integration.reliability.conftest import (
    COUNTS,
    adjustments_by_transaction,
    assert_exactly_once,
    paddle_payment,
    reliability_config,
    stripe_payment,
)

MakeBridge = Callable[..., RunningBridge]
# Retries 2 s apart and a breaker that opens on 2 failures: it opens on the first
# failures of two rows, before either is retried, whatever the machine's load.
SLOW_RETRIES = "backoff_initial: 2\nbackoff_max: 2\nbreaker_threshold: 2\nbreaker_cooldown: 0.05\n"


def start(
    make_bridge: MakeBridge, tmp_path: Path, url: str, *, timeout: float = 5, delivery: str = ""
) -> RunningBridge:
    database = str(tmp_path / "bridge.db")
    return make_bridge(reliability_config(database, url, timeout=timeout, delivery=delivery))


def send_payments(running: RunningBridge, customer: str, count: int) -> set[str]:
    expected: set[str] = set()
    for i in range(count):
        if i % 2:
            event, tid = paddle_payment(customer, 1000 + i)
            answer = running.send_paddle(event)
        else:
            event, tid = stripe_payment(customer, 1000 + i)
            answer = running.send_stripe(event)
        assert answer.status_code == 200, answer.text
        expected.add(tid)
    COUNTS["faults: webhooks sent"] += count
    return expected


def attempts(running: RunningBridge, tid: str) -> list[dict[str, object]]:
    row = running.bridge.store.get_adjustment(tid)
    return [] if row is None else running.bridge.store.attempts_for(row.id)


def breaker_gauge(running: RunningBridge) -> float:
    text = httpx.get(f"{running.url}/metrics").text
    found = re.search(r"^bridge_breaker_open (\S+)$", text, re.M)
    assert found, "bridge_breaker_open is not exported"
    return float(found.group(1))


@pytest.mark.parametrize("status", [500, 502, 503, 408, 425])
def test_transient_errors_are_retried_until_credited_once(
    make_bridge: MakeBridge, sandbox: Sandbox, tmp_path: Path, status: int
) -> None:
    running = start(make_bridge, tmp_path, sandbox.url)
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=3, fail_status=status, only="adjustments")
    expected = send_payments(running, customer, 2)
    running.settle(timeout=30)
    COUNTS[f"faults injected: {status}"] += 3
    assert_exactly_once(sandbox.state, expected)
    assert sandbox.state.balance(customer, "USD") == Decimal("20.01")
    codes = [a["status_code"] for tid in expected for a in attempts(running, tid)]
    assert codes.count(status) == 3


@pytest.mark.parametrize("retry_after", [None, 0.4])
def test_rate_limits_are_honoured(
    make_bridge: MakeBridge, sandbox: Sandbox, tmp_path: Path, retry_after: float | None
) -> None:
    running = start(make_bridge, tmp_path, sandbox.url)
    customer = sandbox.state.add_customer()
    sandbox.state.inject(rate_limit_next=2, retry_after=retry_after, only="adjustments")
    expected = send_payments(running, customer, 1)
    running.settle(timeout=30)
    COUNTS["faults injected: 429"] += 2
    assert_exactly_once(sandbox.state, expected)
    tried = attempts(running, expected.pop())
    assert [a["status_code"] for a in tried] == [429, 429, 201]
    if retry_after is not None:
        # The retry waited at least what Retry-After asked for (a bound, not a timing).
        starts = [float(str(a["started_at"])) for a in tried]
        gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
        assert min(gaps) >= retry_after


def test_timeouts_are_retried_and_credit_once(
    make_bridge: MakeBridge, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Credyt answers after the client gave up (it may still apply the adjustment): the
    retry reuses the transaction id, so Credyt's idempotency keeps it to one credit."""
    running = start(make_bridge, tmp_path, sandbox.url, timeout=0.3)
    customer = sandbox.state.add_customer()
    sandbox.state.inject(delay=1.0, only="adjustments")
    expected = send_payments(running, customer, 2)
    wait_until(
        lambda: all(
            any("did not answer in time" in str(a["response"]) for a in attempts(running, t))
            for t in expected
        ),
        30,
        "a timed-out attempt for each adjustment",
    )
    COUNTS["faults injected: timeout"] += sum(
        1 for t in expected for a in attempts(running, t) if a["status_code"] is None
    )
    sandbox.state.inject()
    running.settle(timeout=30)
    assert_exactly_once(sandbox.state, expected)
    assert sandbox.state.balance(customer, "USD") == Decimal("20.01")


def test_slow_answers_within_the_timeout_are_fine(
    make_bridge: MakeBridge, sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, tmp_path, sandbox.url, timeout=5)
    customer = sandbox.state.add_customer()
    sandbox.state.inject(delay=0.3)
    expected = send_payments(running, customer, 6)
    running.settle(timeout=30)
    COUNTS["faults injected: slow answer"] += sandbox.state.request_count
    assert_exactly_once(sandbox.state, expected)
    assert all(len(attempts(running, t)) == 1 for t in expected)


def test_a_dropped_connection_after_credyt_applied_it_credits_once(
    make_bridge: MakeBridge, sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, tmp_path, sandbox.url)
    customer = sandbox.state.add_customer()
    sandbox.state.inject(drop_next=3, only="adjustments")
    expected = send_payments(running, customer, 3)
    running.settle(timeout=30)
    COUNTS["faults injected: dropped connection"] += 3
    assert_exactly_once(sandbox.state, expected)
    assert sandbox.state.balance(customer, "USD") == Decimal("30.03")
    # Each was applied, its answer lost (perhaps more than once), then re-sent and
    # recognised as a duplicate.
    assert sandbox.state.adjustment_requests == 6
    lost = 0
    for tid in expected:
        row = running.bridge.store.get_adjustment(tid)
        assert row is not None and row.status is AdjustmentStatus.DELIVERED
        codes = [a["status_code"] for a in attempts(running, tid)]
        assert set(codes[:-1]) <= {None}, codes  # only dropped answers before the last
        assert codes[-1] == (409 if len(codes) > 1 else 201), codes
        lost += len(codes) - 1
    assert lost == 3


def test_connection_refused_until_credyt_comes_up(
    make_bridge: MakeBridge, tmp_path: Path, logs: LogBuffer
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    # USD's precision from the config: with Credyt refusing from the start, the events
    # would otherwise wait for it (never guessed) and no delivery would be attempted.
    config = reliability_config(str(tmp_path / "bridge.db"), url, delivery=SLOW_RETRIES)
    running = make_bridge(config.replace("credyt:\n", "credyt:\n  assets: {USD: 2}\n", 1))
    state = SandboxState()
    customer = state.add_customer(customer_id="cust_refused_1")
    expected = send_payments(running, customer, 3)
    wait_until(
        lambda: sum(len(attempts(running, t)) for t in expected) >= 4,
        30,
        "refused attempts",
    )
    refused = sum(len(attempts(running, t)) for t in expected)
    COUNTS["faults injected: connection refused"] += refused
    assert all(
        "could not be reached" in str(a["response"]) for t in expected for a in attempts(running, t)
    )
    with serve_in_thread(create_sandbox_app(state, api_key=API_KEY), port=port):
        running.settle(timeout=60)
        assert_exactly_once(state, expected)
    assert "breaker_opened" in logs.names() and "breaker_closed" in logs.names()
    # Refused while open: probes, recorded but not held against max_attempts.
    rows = [running.bridge.store.get_adjustment(t) for t in expected]
    counted = sum(r.attempts for r in rows if r is not None)
    made = [a for t in expected for a in attempts(running, t)]
    assert any(str(a["response"]).startswith("breaker probe") for a in made)
    assert counted < len(made)


def test_breaker_opens_probes_without_spending_attempts_and_closes(
    make_bridge: MakeBridge, sandbox: Sandbox, tmp_path: Path, logs: LogBuffer
) -> None:
    """max_attempts 2 and Credyt down for many more requests than 2 rows x 2 attempts:
    with the breaker open the rows stay pending, and all are credited once it is back."""
    running = start(
        make_bridge,
        tmp_path,
        sandbox.url,
        delivery=SLOW_RETRIES + "max_attempts: 2\n",
    )
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=10_000, fail_status=503, only="adjustments")
    expected = send_payments(running, customer, 2)
    wait_until(lambda: sandbox.state.adjustment_requests >= 8, 30, "probes while open")
    failed = sandbox.state.adjustment_requests
    COUNTS["faults injected: 503 (breaker)"] += failed
    assert breaker_gauge(running) == 1
    rows = [running.bridge.store.get_adjustment(t) for t in expected]
    assert all(r is not None and r.status is AdjustmentStatus.PENDING for r in rows)
    assert all(r is not None and r.attempts < 2 for r in rows)
    # One probe at a time: no two requests were ever in flight while open.
    probes = [e for e in logs.events() if e["event"] == "breaker_probing"]
    assert len(probes) >= failed - 2 - 1
    sandbox.state.inject()
    running.settle(timeout=60)
    assert_exactly_once(sandbox.state, expected)
    assert breaker_gauge(running) == 0
    names = logs.names()
    assert names.count("breaker_opened") == 1 and names.count("breaker_closed") == 1
    assert names.index("breaker_opened") < names.index("breaker_closed")
    assert "delivery_dead" not in names
    assert adjustments_by_transaction(sandbox.state) == {t: 1 for t in expected}
