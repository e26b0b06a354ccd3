"""A 409 is confirmed by reading the transaction back, never assumed.

Real bridge on loopback, real sandbox; the sandbox's fault switches produce a 409 with
nothing behind it (`fail_status=409`), a lost answer whose resend meets a 409 for the
same adjustment (`drop_next`), and a transaction id already holding another amount.
"""

from __future__ import annotations

from decimal import Decimal

from bridge.credyt.sandbox import validate_adjustment
from bridge.storage.records import AdjustmentStatus
from connectors import stripe
from tests.conftest import RunningBridge, Sandbox, wait_until


def invoice(customer: str, suffix: str) -> dict[str, object]:
    return stripe.sample_event(
        "invoice.paid", event_id=f"evt_{suffix}", object_id=f"in_{suffix}", customer=customer
    )


def read_backs(sandbox: Sandbox, customer: str, transaction_id: str) -> int:
    wanted = f"GET /customers/{customer}/wallet/transactions/{transaction_id}"
    return sandbox.state.requests.count(wanted)


def test_a_409_with_no_stored_transaction_is_retried_until_credited_once(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=1, fail_status=409, only="adjustments")
    running.send_stripe(invoice(customer, "c409none"))
    running.settle()
    (row,) = running.bridge.store.list_adjustments()
    assert row.status is AdjustmentStatus.DELIVERED
    assert (row.attempts, row.last_status) == (2, 201)
    assert read_backs(sandbox, customer, row.transaction_id) == 1
    assert len(sandbox.state.adjustments) == 1
    assert sandbox.state.balance(customer, "USD") == Decimal("20.00")
    assert running.bridge.metrics.adjustment_conflicts._value.get() == 0


def test_a_409_for_the_same_adjustment_is_delivered_already_existed(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(drop_next=1)  # applied, answer lost: the resend meets a 409
    running.send_stripe(invoice(customer, "c409same"))
    running.settle()
    (row,) = running.bridge.store.list_adjustments()
    assert (row.status, row.last_status) == (AdjustmentStatus.DELIVERED, 409)
    assert read_backs(sandbox, customer, row.transaction_id) == 1
    assert sandbox.state.balance(customer, "USD") == Decimal("20.00")


def test_a_409_whose_stored_transaction_differs_goes_dead_with_both_versions(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    sandbox.state.inject(fail_next=10_000, fail_status=503, only="adjustments")
    running.send_stripe(invoice(customer, "c409diff"))
    wait_until(lambda: len(running.bridge.store.list_adjustments()) == 1, what="the row")
    (queued,) = running.bridge.store.list_adjustments()
    # Another writer used the bridge's transaction id for a different amount.
    other = {
        "transaction_id": queued.transaction_id,
        "asset": "USD",
        "amount": Decimal("999"),
        "reason": "gift",
    }
    sandbox.state.apply_adjustment(customer, validate_adjustment(other), other)
    sandbox.state.inject()
    running.bridge.deliverer.wake()
    running.settle()
    (row,) = running.bridge.store.list_adjustments()
    assert row.status is AdjustmentStatus.DEAD
    assert row.last_status == 409
    error = row.last_error or ""
    assert "different adjustment" in error
    assert "Credyt has USD 999" in error and "the bridge meant USD 20" in error
    assert running.bridge.metrics.adjustment_conflicts._value.get() == 1
    assert sandbox.state.balance(customer, "USD") == Decimal("999")  # nothing counted twice
    scraped = running.bridge.metrics.registry.get_sample_value("bridge_adjustment_conflicts_total")
    assert scraped == 1
