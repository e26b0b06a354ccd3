"""Delivery to Credyt through failures: 5xx, 422, 404, 429 with Retry-After, broken answers,
retries running out, and an outbox picked up again after a restart.

The sandbox's fault switches make Credyt fail; the bridge's own attempt log
(`store.attempts_for`) shows what it did about it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from bridge.config.loading import parse_config
from bridge.receiving.servers import serve_in_thread
from bridge.service import Bridge
from bridge.storage.records import AdjustmentStatus, OutboxRow
from connectors import stripe
from tests.conftest import RunningBridge, Sandbox, config_text, wait_until


def invoice(event_id: str, customer: str, amount_minor: int = 1000) -> dict[str, Any]:
    return stripe.sample_event(
        "invoice.paid",
        event_id=event_id,
        object_id=f"in_{event_id}",
        customer=customer,
        amount_minor=amount_minor,
    )


def only_row(bridge: RunningBridge) -> OutboxRow:
    [row] = bridge.bridge.store.list_adjustments()
    return row


def finished(bridge: RunningBridge) -> Callable[[], bool]:
    def check() -> bool:
        rows = bridge.bridge.store.list_adjustments()
        return bool(rows) and all(r.status is not AdjustmentStatus.PENDING for r in rows)

    return check


def test_three_500s_then_delivered_with_every_attempt_recorded(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=3, only="adjustments")
    assert running.send_stripe(invoice("evt_500", customer, 4999)).status_code == 200
    running.settle()
    row = only_row(running)
    assert row.status is AdjustmentStatus.DELIVERED
    assert row.attempts == 4
    attempts = running.bridge.store.attempts_for(row.id)
    assert [(a["status_code"], a["outcome"]) for a in attempts] == [
        (500, "pending"),
        (500, "pending"),
        (500, "pending"),
        (201, "delivered"),
    ]
    assert "500" in attempts[0]["response"]
    starts = [a["started_at"] for a in attempts]
    assert starts == sorted(starts)
    assert sandbox.state.adjustment_requests == 4
    assert len(sandbox.state.adjustments) == 1
    assert sandbox.state.balance(customer, "USD") == Decimal("49.99")


def test_422_is_dead_with_the_sandbox_message(running: RunningBridge, sandbox: Sandbox) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=1, fail_status=422, only="adjustments")
    running.send_stripe(invoice("evt_422", customer))
    running.settle()
    row = only_row(running)
    assert row.status is AdjustmentStatus.DEAD
    assert row.last_status == 422
    assert row.last_error is not None
    assert "422" in row.last_error and "sandbox fault: fail_next" in row.last_error
    assert row.attempts == 1  # a refusal is not retried
    [attempt] = running.bridge.store.attempts_for(row.id)
    assert attempt["outcome"] == "dead" and "Injected failure" in attempt["response"]
    assert sandbox.state.balance(customer, "USD") == 0


def test_customer_unknown_to_credyt_is_dead_with_its_answer(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    running.send_stripe(invoice("evt_404", "cust_doesnotexist"))
    running.settle()
    row = only_row(running)
    assert row.status is AdjustmentStatus.DEAD
    assert row.last_status == 404
    assert "cust_doesnotexist" in (row.last_error or "")
    assert sandbox.state.adjustments == []


def test_dead_adjustment_retried_by_the_operator_is_delivered(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=1, fail_status=422, only="adjustments")
    running.send_stripe(invoice("evt_retry", customer))
    running.settle()
    row = only_row(running)
    assert row.status is AdjustmentStatus.DEAD
    assert asyncio.run(running.bridge.store.retry_adjustments([row.id])) == 1
    wait_until(lambda: only_row(running).status is AdjustmentStatus.DELIVERED)
    assert sandbox.state.balance(customer, "USD") == Decimal("10.00")


def test_429_retry_after_is_honoured(running: RunningBridge, sandbox: Sandbox) -> None:
    customer = sandbox.state.add_customer()
    # Retry-After 1 s: longer than the configured backoff cap (0.5 s), so only the
    # header can explain the wait.
    sandbox.state.inject(rate_limit_next=1, retry_after=1, only="adjustments")
    running.send_stripe(invoice("evt_429", customer))
    running.settle()
    row = only_row(running)
    assert row.status is AdjustmentStatus.DELIVERED
    first, second = running.bridge.store.attempts_for(row.id)
    assert (first["status_code"], second["status_code"]) == (429, 201)
    assert second["started_at"] >= first["started_at"] + 1.0 - 1e-3
    assert sandbox.state.balance(customer, "USD") == Decimal("10.00")


def test_429_without_retry_after_backs_off_and_delivers(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(rate_limit_next=2, only="adjustments")
    running.send_stripe(invoice("evt_429b", customer))
    running.settle()
    row = only_row(running)
    assert row.status is AdjustmentStatus.DELIVERED
    codes = [a["status_code"] for a in running.bridge.store.attempts_for(row.id)]
    assert codes == [429, 429, 201]


def test_a_lost_answer_is_retried_and_not_credited_twice(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    """Credyt applied the adjustment but the answer broke: the retry meets 409."""
    customer = sandbox.state.add_customer()
    sandbox.state.inject(drop_next=1, only="adjustments")
    running.send_stripe(invoice("evt_drop", customer, 777))
    running.settle()
    row = only_row(running)
    assert row.status is AdjustmentStatus.DELIVERED
    codes = [a["status_code"] for a in running.bridge.store.attempts_for(row.id)]
    assert codes[-1] == 409 and len(codes) >= 2
    assert len(sandbox.state.adjustments) == 1
    assert sandbox.state.balance(customer, "USD") == Decimal("7.77")


def test_retries_run_out_and_the_row_is_dead(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    config = config_text(str(tmp_path / "b.db"), sandbox.url).replace(
        "  backoff_initial: 0.05\n", "  backoff_initial: 0.05\n  max_attempts: 3\n"
    )
    bridge = make_bridge(config)
    assert bridge.config.delivery.max_attempts == 3
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=10, fail_status=503, only="adjustments")
    bridge.send_stripe(invoice("evt_giveup", customer))
    bridge.settle()
    row = only_row(bridge)
    assert row.status is AdjustmentStatus.DEAD
    assert row.attempts == 3
    assert row.last_error is not None and "gave up after 3 attempts" in row.last_error
    assert sandbox.state.adjustment_requests == 3


def test_outbox_left_at_shutdown_is_delivered_after_a_restart(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    database = str(tmp_path / "restart.db")
    text = config_text(database, sandbox.url)
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=10_000, fail_status=503, only="adjustments")
    first = Bridge(parse_config(text, str(tmp_path / "c.yaml")))
    with serve_in_thread(first.app) as url:
        running = RunningBridge(url, first, first.config)
        assert running.send_stripe(invoice("evt_restart", customer)).status_code == 200
        wait_until(lambda: sandbox.state.adjustment_requests >= 2, what="a few failed attempts")
    sandbox.state.inject()  # Credyt is back
    second = Bridge(parse_config(text, str(tmp_path / "c.yaml")))
    with serve_in_thread(second.app) as url:
        running = RunningBridge(url, second, second.config)
        wait_until(finished(running), what="the outbox to drain")
        row = only_row(running)
    assert row.status is AdjustmentStatus.DELIVERED
    assert len(sandbox.state.adjustments) == 1
    assert sandbox.state.balance(customer, "USD") == Decimal("10.00")


def test_many_payments_under_failures_are_each_delivered_once(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    # Fewer failures than open the circuit breaker (5 in a row by default).
    sandbox.state.inject(fail_next=4, fail_status=502, only="adjustments")
    for i in range(30):
        assert running.send_stripe(invoice(f"evt_many{i}", customer, 100 + i)).status_code == 200
    running.settle(timeout=30)
    rows = running.bridge.store.list_adjustments()
    assert len(rows) == 30
    assert all(r.status is AdjustmentStatus.DELIVERED for r in rows)
    assert len(sandbox.state.adjustments) == 30
    assert sandbox.state.adjustment_requests == 34
    assert sandbox.state.balance(customer, "USD") == sum(
        (Decimal(100 + i) / 100 for i in range(30)), Decimal(0)
    )
