"""End to end over HTTP: signed Stripe webhooks -> the bridge -> the sandbox, exactly once.

A real bridge on uvicorn with a SQLite file, a real sandbox on another loopback port.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bridge.processing.rules import transaction_id
from bridge.storage.records import AdjustmentStatus, EventFilter, EventStatus
from tests.conftest import RunningBridge, Sandbox, config_text, wait_until
from tests.helpers.samples import invoice_event


def send_together(bridge: RunningBridge, events: list[dict[str, Any]]) -> list[httpx.Response]:
    """Post every event at the same moment, each from its own thread."""
    answers: list[httpx.Response | None] = [None] * len(events)
    barrier = threading.Barrier(len(events))

    def post(index: int) -> None:
        barrier.wait()
        answers[index] = bridge.send_stripe(events[index])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def event_row(bridge: RunningBridge, event_id: str) -> Any:
    row = bridge.bridge.store.get_event(event_id)
    assert row is not None, event_id
    return row


# -- exactly once ------------------------------------------------------------------------


def test_same_event_five_times_at_once_is_one_adjustment(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    event = invoice_event("evt_five", "in_five", customer=customer, amount_minor=4999)
    answers = send_together(running, [event] * 5)
    assert [a.status_code for a in answers] == [200] * 5
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses == ["accepted"] + ["duplicate"] * 4
    running.settle()
    assert len(sandbox.state.adjustments) == 1
    assert sandbox.state.adjustment_requests == 1
    assert sandbox.state.conflicts == []
    assert sandbox.state.balance(customer, "USD") == Decimal("49.99")
    assert len(running.bridge.store.list_events(EventFilter())) == 1


def test_same_invoice_under_another_event_is_still_one_adjustment(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    paid = invoice_event("evt_paid", "in_same", customer=customer)
    succeeded = invoice_event(
        "evt_succeeded", "in_same", customer=customer, event_type="invoice.payment_succeeded"
    )
    assert running.send_stripe(paid).json() == {"status": "accepted"}
    running.settle()
    assert running.send_stripe(succeeded).json() == {"status": "accepted"}
    running.settle()
    assert event_row(running, "evt_paid").status is EventStatus.PROCESSED
    assert event_row(running, "evt_succeeded").status is EventStatus.PROCESSED
    assert len(running.bridge.store.list_adjustments()) == 1
    assert len(sandbox.state.adjustments) == 1
    assert sandbox.state.balance(customer, "USD") == Decimal("25.00")


def test_same_invoice_in_both_shapes_and_both_types_at_once_is_one_adjustment(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    events = [
        invoice_event(
            f"evt_mix_{i}",
            "in_mixed",
            customer=customer,
            event_type=event_type,
            api_version=version,
        )
        for i, (event_type, version) in enumerate(
            [
                ("invoice.paid", "2025-03-31.basil"),
                ("invoice.paid", "2020-08-27"),
                ("invoice.payment_succeeded", "2025-03-31.basil"),
                ("invoice.payment_succeeded", "2020-08-27"),
            ]
        )
    ]
    answers = send_together(running, events)
    assert [a.json()["status"] for a in answers] == ["accepted"] * 4
    running.settle()
    [row] = running.bridge.store.list_adjustments()
    assert row.status is AdjustmentStatus.DELIVERED
    assert row.transaction_id == transaction_id("stripe", "in_mixed", "subscription-payment")
    assert len(sandbox.state.adjustments) == 1
    assert sandbox.state.conflicts == []
    assert sandbox.state.balance(customer, "USD") == Decimal("25.00")


def test_a_wiped_database_does_not_credit_twice(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    customer = sandbox.state.add_customer()
    event = invoice_event("evt_wiped", "in_wiped", customer=customer)
    first = make_bridge()
    assert first.send_stripe(event).status_code == 200
    first.settle()
    fresh_db = str(tmp_path / "fresh.db")
    second = make_bridge(config_text(fresh_db, sandbox.url), database=fresh_db)
    assert second.send_stripe(event).json() == {"status": "accepted"}
    second.settle()
    [row] = second.bridge.store.list_adjustments()
    assert row.status is AdjustmentStatus.DELIVERED
    assert row.last_status == 409  # Credyt already had it: the same transaction id
    assert len(sandbox.state.adjustments) == 1
    assert sandbox.state.balance(customer, "USD") == Decimal("25.00")


def test_different_invoices_are_different_adjustments(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    for i in range(3):
        running.send_stripe(invoice_event(f"evt_n{i}", f"in_n{i}", customer=customer))
    running.settle()
    assert len(sandbox.state.adjustments) == 3
    assert sandbox.state.balance(customer, "USD") == Decimal("75.00")


# -- what the adjustment says ------------------------------------------------------------------


def test_adjustment_body_names_its_origin(running: RunningBridge, sandbox: Sandbox) -> None:
    customer = sandbox.state.add_customer()
    running.send_stripe(
        invoice_event("evt_meta", "in_meta", customer=customer, api_version="2020-08-27")
    )
    running.settle()
    [adjustment] = sandbox.state.adjustments
    body = adjustment["body"]
    assert body["transaction_id"] == transaction_id("stripe", "in_meta", "subscription-payment")
    assert body["reason"] == "external_topup"
    assert body["asset"] == "USD"
    assert body["account_name"] == "default"
    metadata = body["metadata"]
    assert metadata["psp"] == "stripe"
    assert metadata["event_id"] == "evt_meta"
    assert metadata["invoice"] == "in_meta"
    assert metadata["payment_intent"] == "pi_meta"
    assert metadata["rule"] == "subscription-payment"


# -- customers ---------------------------------------------------------------------------------


def test_customer_found_by_external_id_lookup(running: RunningBridge, sandbox: Sandbox) -> None:
    customer = sandbox.state.add_customer(external_id="cus_lookup")
    sandbox.state.add_customer(external_id="cus_other")
    for i in range(3):
        running.send_stripe(invoice_event(f"evt_l{i}", f"in_l{i}", psp_customer="cus_lookup"))
        running.settle()
    assert sandbox.state.balance(customer, "USD") == Decimal("75.00")
    assert {a["customer_id"] for a in sandbox.state.adjustments} == {customer}
    lookups = sum(r.startswith("GET /customers?") for r in sandbox.state.requests)
    assert lookups == 1  # cached after the first
    assert sum(r.startswith("GET /assets/") for r in sandbox.state.requests) == 1
    assert event_row(running, "evt_l0").customer_id == customer


def test_metadata_wins_over_the_lookup(running: RunningBridge, sandbox: Sandbox) -> None:
    named = sandbox.state.add_customer()
    decoy = sandbox.state.add_customer(external_id="cus_decoy")
    running.send_stripe(invoice_event("evt_m", "in_m", customer=named, psp_customer="cus_decoy"))
    running.settle()
    assert sandbox.state.balance(named, "USD") == Decimal("25.00")
    assert sandbox.state.balance(decoy, "USD") == 0


def test_unknown_customer_fails_the_event_and_sends_nothing(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    answer = running.send_stripe(invoice_event("evt_nobody", "in_nobody", psp_customer="cus_ghost"))
    assert answer.status_code == 200
    running.settle()
    row = event_row(running, "evt_nobody")
    assert row.status is EventStatus.FAILED
    assert row.reason is not None
    assert "credyt_customer_id" in row.reason and "cus_ghost" in row.reason
    assert running.bridge.store.list_adjustments() == []
    assert sandbox.state.adjustment_requests == 0


def test_an_unreachable_lookup_is_not_a_verdict(running: RunningBridge, sandbox: Sandbox) -> None:
    """Credyt failing the customer lookup leaves the event pending; it is tried again."""
    customer = sandbox.state.add_customer(external_id="cus_flaky")
    sandbox.state.inject(fail_next=1, fail_status=503, only="customers")
    running.send_stripe(invoice_event("evt_flaky", "in_flaky", psp_customer="cus_flaky"))
    wait_until(lambda: event_row(running, "evt_flaky").attempts >= 1, what="the first try")
    first = event_row(running, "evt_flaky")
    assert first.status is EventStatus.PENDING
    assert "Credyt unavailable" in (first.reason or "")
    running.settle()
    assert event_row(running, "evt_flaky").status is EventStatus.PROCESSED
    assert sandbox.state.balance(customer, "USD") == Decimal("25.00")


def test_a_failed_event_replays_once_the_customer_exists(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    running.send_stripe(invoice_event("evt_later", "in_later", psp_customer="cus_late"))
    running.settle()
    row = event_row(running, "evt_later")
    assert row.status is EventStatus.FAILED
    customer = sandbox.state.add_customer(external_id="cus_late")
    assert asyncio.run(running.bridge.store.reset_events([row.id])) == 1
    wait_until(lambda: event_row(running, "evt_later").status is EventStatus.PROCESSED)
    running.settle()
    assert sandbox.state.balance(customer, "USD") == Decimal("25.00")


# -- what is not credited --------------------------------------------------------------------------


def test_other_event_types_are_stored_and_ignored(running: RunningBridge, sandbox: Sandbox) -> None:
    event = invoice_event("evt_created", "in_created", customer="cust_x")
    event["type"] = "customer.created"
    assert running.send_stripe(event).json() == {"status": "accepted"}
    running.settle()
    row = event_row(running, "evt_created")
    assert row.status is EventStatus.IGNORED and "customer.created" in (row.reason or "")
    assert sandbox.state.requests == ["GET /accounts/self"]  # the key check at start, only


def test_zero_amount_invoice_is_ignored(running: RunningBridge, sandbox: Sandbox) -> None:
    running.send_stripe(invoice_event("evt_zero", "in_zero", customer="cust_x", amount_minor=0))
    running.settle()
    row = event_row(running, "evt_zero")
    assert row.status is EventStatus.IGNORED and "paid nothing" in (row.reason or "")
    assert sandbox.state.requests == ["GET /accounts/self"]  # the key check at start, only


def test_rule_conditions_select_invoices(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    config = config_text(str(tmp_path / "b.db"), sandbox.url).replace(
        "        on: [invoice.paid, invoice.payment_succeeded]\n",
        "        on: [invoice.paid, invoice.payment_succeeded]\n"
        "        when: {billing_reason: [subscription_cycle]}\n",
    )
    assert "billing_reason" in config
    bridge = make_bridge(config)
    customer = sandbox.state.add_customer()
    bridge.send_stripe(invoice_event("evt_cycle", "in_cycle", customer=customer))
    bridge.send_stripe(
        invoice_event("evt_manual", "in_manual", customer=customer, billing_reason="manual")
    )
    bridge.settle()
    assert event_row(bridge, "evt_cycle").status is EventStatus.PROCESSED
    manual = event_row(bridge, "evt_manual")
    assert manual.status is EventStatus.IGNORED and "no rule" in (manual.reason or "")
    assert sandbox.state.balance(customer, "USD") == Decimal("25.00")
