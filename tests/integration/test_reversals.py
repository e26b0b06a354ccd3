"""Refunds and disputes against the credit they reverse, through the real bridge.

Each test runs the bridge on uvicorn on loopback with a real SQLite file and the Credyt
sandbox on another loopback port, and sends signed Stripe webhooks over HTTP.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from bridge.events import Kind
from bridge.storage.records import EventFilter, EventStatus, InboxRow, OutboxRow
from connectors import stripe
from tests.conftest import STRIPE_SECRET, RunningBridge, Sandbox, bridge_config, wait_until

CONNECTORS = """
  stripe:
    type: stripe
    secrets: ["{secret}"]
    match: {match}
    rules:
      - name: subscription-payment
        on: [invoice.paid, invoice.payment_succeeded, invoice_payment.paid]
        when: {payment_when}
        credit: {{amount: paid}}
      - name: tokens
        on: [invoice.paid, invoice.payment_succeeded, invoice_payment.paid]
        when: {{price_ids: [price_tok]}}
        credit: {{amount: "1000000", per_unit: true, asset: TOK}}
      - name: topup
        on: payment_intent.succeeded
        when: {{metadata: {{credyt_topup: "true"}}}}
        credit: {{amount: paid}}
      - name: refund
        on: {refund_on}
        reverse: {{reason: external_refund, unknown_original: {unknown}}}
      - name: dispute
        on: [charge.dispute.created, charge.dispute.funds_withdrawn,
             charge.dispute.funds_reinstated, charge.dispute.closed]
        reverse: {{}}
"""

REFUND_EVENTS = "[refund.created, refund.updated, charge.refunded]"


def start(
    make_bridge: Callable[..., RunningBridge],
    sandbox: Sandbox,
    tmp_path: Path,
    *,
    match: str = "first",
    refund_on: str = REFUND_EVENTS,
    unknown: str = "hold",
    payment_when: str = "{price_ids: [price_usd]}",
    name: str = "bridge.db",
) -> RunningBridge:
    connectors = CONNECTORS.format(
        secret=STRIPE_SECRET,
        match=match,
        refund_on=refund_on,
        unknown=unknown,
        payment_when=payment_when,
    )
    return make_bridge(bridge_config(tmp_path / name, sandbox.url, connectors))


class Sender:
    """Signed Stripe samples for one payment, with fresh event ids."""

    def __init__(self, running: RunningBridge, customer: str) -> None:
        self.running = running
        self.customer = customer
        self.count = 0

    def send(self, event_type: str, object_id: str, **kwargs: Any) -> dict[str, Any]:
        self.count += 1
        event = stripe.sample_event(
            event_type,
            event_id=f"evt_{object_id}_{self.count}",
            object_id=object_id,
            customer=self.customer,
            **kwargs,
        )
        response = self.running.send_stripe(event)
        assert response.json() == {"status": "accepted"}, response.text
        return event


def event_row(running: RunningBridge, event: dict[str, Any]) -> InboxRow:
    row = running.bridge.store.get_event(event["id"])
    assert row is not None
    return row


def adjustments(running: RunningBridge) -> list[OutboxRow]:
    return list(reversed(running.bridge.store.list_adjustments()))


def body(row: OutboxRow) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(row.body)
    return data


def replay_everything(running: RunningBridge) -> None:
    """Re-run every stored event (invariant 6: a replay changes nothing)."""
    store = running.bridge.store
    ids = [row.id for row in store.list_events(EventFilter(limit=1000))]
    asyncio.run(store.reset_events(ids))
    running.bridge.processor.wake()
    running.settle()


# -- held until the credit exists ---------------------------------------------------------------


def test_a_refund_before_its_payment_is_held_then_applied_never_lost_nor_a_credit(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    customer = sandbox.state.add_customer(external_id="user_held")
    sender = Sender(running, customer)
    refund = sender.send("refund.created", "re_held", payment="pi_held", amount_minor=500)

    def held() -> bool:
        row = event_row(running, refund)
        return row.status is EventStatus.PENDING and (row.reason or "").startswith("held")

    wait_until(held, what="the refund to be held")
    assert "no credit for payment pi_held" in (event_row(running, refund).reason or "")
    assert adjustments(running) == []  # held: nothing debited, nothing credited
    assert sandbox.state.balance(customer, "USD") == 0

    sender.send(
        "payment_intent.succeeded",
        "pi_held",
        amount_minor=2000,
        metadata={"credyt_topup": "true"},
    )
    running.settle()
    assert event_row(running, refund).status is EventStatus.PROCESSED
    credit, debit = adjustments(running)
    assert (credit.kind, credit.amount, debit.kind, debit.amount) == (
        Kind.PAYMENT.value,
        "20",
        Kind.REVERSAL.value,
        "-5",
    )
    assert (debit.customer_id, debit.asset, debit.account) == (customer, "USD", "default")
    assert body(debit)["reason"] == "external_refund"
    assert body(debit)["metadata"]["original_transaction_id"] == credit.transaction_id
    assert sandbox.state.balance(customer, "USD") == Decimal("15.00")


def test_a_basil_invoice_refund_waits_for_invoice_payment_to_name_its_payment_intent(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    customer = sandbox.state.add_customer(external_id="user_basil")
    sender = Sender(running, customer)
    sender.send("invoice.paid", "in_basil", amount_minor=2000, price="price_usd")
    refund = sender.send("refund.created", "re_basil", payment="pi_basil", amount_minor=1000)
    # a basil invoice does not name its PaymentIntent: the refund can not find it yet
    wait_until(lambda: (event_row(running, refund).reason or "").startswith("held"))
    assert sandbox.state.balance(customer, "USD") == Decimal("20.00")
    sender.send("invoice_payment.paid", "inpay_basil", payment="in_basil", amount_minor=2000)
    running.settle()
    assert sandbox.state.balance(customer, "USD") == Decimal("10.00")
    assert len(sandbox.state.adjustments) == 2  # invoice_payment.paid credited nothing again


def test_invoice_payment_first_waits_for_the_invoice_to_name_the_customer(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    # invoice_payment objects have no lines: only an unconditioned rule matches them
    running = start(make_bridge, sandbox, tmp_path, payment_when="{}")
    customer = sandbox.state.add_customer(external_id="user_ip")
    sender = Sender(running, customer)
    first = sender.send("invoice_payment.paid", "inpay_ip", payment="in_ip", amount_minor=700)
    wait_until(lambda: (event_row(running, first).reason or "").startswith("held"))
    assert "names no customer" in (event_row(running, first).reason or "")
    sender.send("invoice.paid", "in_ip", amount_minor=700, price="price_usd")
    running.settle()
    assert event_row(running, first).status is EventStatus.PROCESSED
    assert sandbox.state.balance(customer, "USD") == Decimal("7.00")
    assert len(sandbox.state.adjustments) == 1


# -- proportion, asset, account -----------------------------------------------------------------


def test_half_refund_of_a_payment_that_bought_a_million_tokens_debits_half_of_each_credit(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path, match="all")
    customer = sandbox.state.add_customer(external_id="user_tok")
    sender = Sender(running, customer)
    sender.send(
        "invoice.paid",
        "in_tok",
        amount_minor=2000,
        price="price_tok",
        api_version="2020-08-27",  # names its PaymentIntent and Charge
    )
    running.settle()
    assert sandbox.state.balance(customer, "TOK") == Decimal(1_000_000)
    sender.send("refund.created", "re_tok", payment="pi_tok", amount_minor=1000)
    running.settle()
    assert sandbox.state.balance(customer, "TOK") == Decimal(500_000)
    debit = adjustments(running)[-1]
    assert (debit.asset, debit.amount, debit.customer_id) == ("TOK", "-500000", customer)
    assert body(debit)["reason"] == "external_refund"
    assert body(debit)["metadata"]["refund"] == "re_tok"


# -- refund events and charge.refunded ----------------------------------------------------------


def test_pending_refund_is_ignored_with_why_and_debited_when_it_succeeds(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    customer = sandbox.state.add_customer(external_id="user_pending")
    sender = Sender(running, customer)
    sender.send("payment_intent.succeeded", "pi_pend", metadata={"credyt_topup": "true"})
    pending = sender.send(
        "refund.created", "re_pend", payment="pi_pend", amount_minor=300, status="pending"
    )
    failed = sender.send(
        "refund.updated", "re_fail", payment="pi_pend", amount_minor=900, status="failed"
    )
    sender.send("refund.updated", "re_pend", payment="pi_pend", amount_minor=300)
    charge = sender.send(
        "charge.refunded", "ch_pend", payment="pi_pend", amount_minor=300, payment_amount_minor=2000
    )
    running.settle()
    assert sandbox.state.balance(customer, "USD") == Decimal("17.00")
    assert "refund.updated follows" in (event_row(running, pending).reason or "")
    assert "returned no money" in (event_row(running, failed).reason or "")
    # the refund is debited per refund id; the cumulative charge.refunded is not again
    assert event_row(running, charge).status is EventStatus.IGNORED
    assert "not applied twice" in (event_row(running, charge).reason or "")
    replay_everything(running)
    assert sandbox.state.balance(customer, "USD") == Decimal("17.00")


def test_charge_refunded_alone_debits_only_the_newly_refunded_part_in_any_order(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path, refund_on="[charge.refunded]")
    customer = sandbox.state.add_customer(external_id="user_cumulative")
    sender = Sender(running, customer)
    sender.send("payment_intent.succeeded", "pi_cum", metadata={"credyt_topup": "true"})
    running.settle()
    for cumulative in (1500, 500, 1500, 500):  # the later state first, then the earlier
        sender.send(
            "charge.refunded",
            "ch_cum",
            payment="pi_cum",
            amount_minor=cumulative,
            payment_amount_minor=2000,
        )
        running.settle()
    assert sandbox.state.balance(customer, "USD") == Decimal("5.00")
    assert [row.amount for row in adjustments(running)] == ["20", "-15"]
    sender.send(
        "charge.refunded", "ch_cum", payment="pi_cum", amount_minor=2000, payment_amount_minor=2000
    )
    running.settle()
    assert sandbox.state.balance(customer, "USD") == 0
    replay_everything(running)
    assert sandbox.state.balance(customer, "USD") == 0
    assert sandbox.state.conflicts == []


# -- disputes -----------------------------------------------------------------------------------


def test_a_dispute_debits_once_and_a_won_dispute_credits_back_once(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    customer = sandbox.state.add_customer(external_id="user_dispute")
    sender = Sender(running, customer)
    sender.send("payment_intent.succeeded", "pi_dp", metadata={"credyt_topup": "true"})
    dispute = {"payment": "pi_dp", "amount_minor": 2000}
    sender.send("charge.dispute.created", "dp_1", **dispute)
    sender.send("charge.dispute.funds_withdrawn", "dp_1", **dispute)
    running.settle()
    assert sandbox.state.balance(customer, "USD") == 0
    sender.send("charge.dispute.funds_reinstated", "dp_1", **dispute)
    sender.send("charge.dispute.closed", "dp_1", **dispute)  # status won
    running.settle()
    assert sandbox.state.balance(customer, "USD") == Decimal("20.00")
    kinds = [row.kind for row in adjustments(running)]
    assert kinds == [Kind.PAYMENT.value, Kind.REVERSAL.value, Kind.REINSTATEMENT.value]
    lost = sender.send("charge.dispute.closed", "dp_2", status="lost", **dispute)
    running.settle()
    assert "debit stands" in (event_row(running, lost).reason or "")


# -- unknown originals: the rule decides, and the event says so -------------------------------


def test_unknown_original_skip_ignores_and_says_so(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path, unknown="skip")
    customer = sandbox.state.add_customer(external_id="user_skip")
    refund = Sender(running, customer).send(
        "refund.created", "re_skip", payment="pi_before_deploy", amount_minor=500
    )
    running.settle()
    row = event_row(running, refund)
    assert row.status is EventStatus.IGNORED
    assert "no credit for payment pi_before_deploy" in (row.reason or "")
    assert "skips" in (row.reason or "")
    assert adjustments(running) == []


def test_unknown_original_debit_debits_the_refund_and_says_so(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path, unknown="debit")
    customer = sandbox.state.add_customer(external_id="user_debit")
    refund = Sender(running, customer).send(
        "refund.created",
        "re_debit",
        payment="pi_before_deploy",
        amount_minor=500,
        metadata={"credyt_customer_id": customer},
    )
    running.settle()
    row = event_row(running, refund)
    assert row.status is EventStatus.PROCESSED
    assert "unknown_original: debit" in (row.reason or "")
    assert sandbox.state.balance(customer, "USD") == Decimal("-5.00")
