"""Paddle Billing end to end: signed webhooks -> the running bridge -> the Credyt sandbox.

Every test posts real signed bodies to `POST /webhooks/paddle` of a bridge served by
uvicorn on 127.0.0.1, with a SQLite file and the sandbox on another loopback port.
Payloads are Paddle's own captures from `tests/fixtures/paddle/` wrapped in
envelopes, or `connectors.paddle.sample_event` where a currency or origin the
fixtures lack is needed.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.storage.records import EventStatus, InboxRow
from connectors import paddle
from tests.conftest import (
    FIXTURES,
    PADDLE_SECRET,
    RunningBridge,
    Sandbox,
    config_text,
    wait_until,
)

PADDLE_FIXTURES = FIXTURES / "paddle"
OCCURRED_AT = "2024-04-12T10:18:49.738971Z"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PADDLE_FIXTURES / name).read_bytes())
    return data


TXN = load("transaction.completed.data.json")
TXN_ID = TXN["id"]  # txn_01hv8wptq8987qeep44cyrewp9, grand_total 65215 USD
PSP_CUSTOMER = TXN["customer_id"]  # ctm_01hv6y1jedq4p1n0yqn5ba3ky4
ADJUSTMENT = load("adjustment.updated.data.json")  # a 100-cent refund, pending_approval


def envelope(
    event_type: str, data: dict[str, Any], event_id: str, notification_id: str | None = None
) -> dict[str, Any]:
    """A Paddle notification around a fixture's `data` object."""
    return {
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": OCCURRED_AT,
        "notification_id": notification_id or f"ntf_{event_id.removeprefix('evt_')}",
        "data": data,
    }


def transaction(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(TXN)
    data.update(changes)
    return data


def adjustment(status: str = "approved", **changes: Any) -> dict[str, Any]:
    """The fixture adjustment, made to adjust the fixture transaction."""
    data = copy.deepcopy(ADJUSTMENT)
    data.update(status=status, transaction_id=TXN_ID)
    data.update(changes)
    return data


def full_amount(adj: dict[str, Any], total: str) -> dict[str, Any]:
    adj["totals"] = {**adj["totals"], "total": total}
    return adj


def accepted(running: RunningBridge, event: dict[str, Any]) -> None:
    response = running.send_paddle(event)
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})


def stored(running: RunningBridge, event_id: str) -> InboxRow:
    row = running.bridge.store.get_event(event_id)
    assert row is not None, f"{event_id} was not stored"
    return row


def wait_for_event(
    running: RunningBridge, event_id: str, condition: Callable[[InboxRow], bool], what: str
) -> InboxRow:
    wait_until(lambda: condition(stored(running, event_id)), what=what)
    return stored(running, event_id)


def credyt_bodies(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [a["body"] for a in sandbox.state.adjustments]


@pytest.fixture
def ctm(sandbox: Sandbox) -> str:
    """The Credyt customer whose external_id is the fixtures' Paddle customer."""
    return sandbox.state.add_customer(external_id=PSP_CUSTOMER)


@pytest.fixture
def credited(running: RunningBridge, sandbox: Sandbox, ctm: str) -> str:
    """The fixture transaction, credited: USD 652.15 to `ctm`."""
    accepted(running, envelope("transaction.completed", transaction(), "evt_fixture_txn"))
    running.settle()
    assert sandbox.state.balance(ctm, "USD") == Decimal("652.15")
    return ctm


# -- Paddle's published signature vector, through the HTTP endpoint -----------------


def test_published_signature_vector_is_accepted_and_tampering_is_refused(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    vector = load("signature-vector.json")
    body = (PADDLE_FIXTURES / vector["body_file"]).read_bytes()
    if vector["strip_trailing_newline"]:
        body = body.removesuffix(b"\n")
    text = config_text(str(tmp_path / "bridge.db"), sandbox.url).replace(
        f'secrets: ["{PADDLE_SECRET}"]',
        f'secrets: ["{vector["secret"]}"]\n    tolerance: 0',
    )
    assert vector["secret"] in text
    running = make_bridge(text)
    headers = {"Paddle-Signature": vector["header"], "Content-Type": "application/json"}

    tampered = body.replace(b"John Doe", b"John Dof")
    refused = running.post("paddle", tampered, headers)
    assert refused.status_code == 400
    assert "PADDLE_WEBHOOK_SECRET" in refused.json()["error"]
    assert running.bridge.store.counts()["events"] == {}

    response = running.post("paddle", body, headers)
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})
    row = wait_for_event(
        running,
        "evt_01hs0tqfme2xwb2hvwv87p8y3w",
        lambda r: r.status is not EventStatus.PENDING,
        "customer.created to be processed",
    )
    assert row.status is EventStatus.IGNORED
    assert row.event_type == "customer.created"
    assert row.reason and "customer.created" in row.reason
    assert row.body == body
    assert sandbox.state.adjustments == []


# -- the fixtures' transaction and adjustments ---------------------------------------


@pytest.mark.parametrize("found_by", ["external_id", "custom_data"])
def test_fixture_transaction_credits_grand_total_to_the_right_customer(
    running: RunningBridge, sandbox: Sandbox, found_by: str
) -> None:
    sandbox.state.add_customer(external_id="ctm_someone_else")
    if found_by == "external_id":
        customer = sandbox.state.add_customer(external_id=PSP_CUSTOMER)
        data = transaction()
    else:
        customer = sandbox.state.add_customer()
        data = transaction(custom_data={"credyt_customer_id": customer, "plan": "pro"})

    accepted(running, envelope("transaction.completed", data, "evt_fixture_txn"))
    running.settle()

    assert stored(running, "evt_fixture_txn").status is EventStatus.PROCESSED
    [body] = credyt_bodies(sandbox)
    [record] = sandbox.state.adjustments
    assert record["customer_id"] == customer
    assert (body["amount"], body["asset"], body["reason"]) == (
        Decimal("652.15"),
        "USD",
        "external_topup",
    )
    assert body["metadata"]["psp"] == "paddle"
    assert body["metadata"]["event_id"] == "evt_fixture_txn"
    assert body["metadata"]["transaction"] == TXN_ID
    assert body["metadata"]["subscription"] == TXN["subscription_id"]
    assert sandbox.state.balance(customer, "USD") == Decimal("652.15")
    # The credit expires at the billing period's end only when a rule asks; this one does not.
    assert "expires_at" not in body


def test_approved_fixture_adjustment_debits_in_proportion(
    running: RunningBridge, sandbox: Sandbox, credited: str
) -> None:
    accepted(running, envelope("adjustment.updated", adjustment(), "evt_fixture_adj"))
    running.settle()

    assert stored(running, "evt_fixture_adj").status is EventStatus.PROCESSED
    credit, debit = credyt_bodies(sandbox)
    # 100 of 65215 cents refunded: 652.15 * 100 / 65215 = 1.00
    assert (debit["amount"], debit["asset"], debit["reason"]) == (
        Decimal("-1.00"),
        "USD",
        "external_refund",
    )
    assert debit["metadata"]["adjustment"] == ADJUSTMENT["id"]
    assert debit["metadata"]["transaction"] == TXN_ID
    assert debit["metadata"]["original_transaction_id"] == credit["transaction_id"]
    assert debit["transaction_id"] != credit["transaction_id"]
    assert sandbox.state.adjustments[1]["customer_id"] == credited
    assert sandbox.state.balance(credited, "USD") == Decimal("651.15")


def test_replayed_notification_produces_nothing_new(
    running: RunningBridge, sandbox: Sandbox, credited: str
) -> None:
    accepted(running, envelope("adjustment.updated", adjustment(), "evt_fixture_adj"))
    running.settle()
    before = running.bridge.store.counts()

    # Paddle's replay: a new notification_id, the same event_id.
    for event_type, data, event_id in (
        ("transaction.completed", transaction(), "evt_fixture_txn"),
        ("adjustment.updated", adjustment(), "evt_fixture_adj"),
    ):
        replay = envelope(event_type, data, event_id, notification_id="ntf_replayed_01")
        response = running.send_paddle(replay)
        assert (response.status_code, response.json()) == (200, {"status": "duplicate"})
    running.settle()

    assert running.bridge.store.counts() == before
    assert len(sandbox.state.adjustments) == 2
    assert sandbox.state.adjustment_requests == 2
    assert sandbox.state.balance(credited, "USD") == Decimal("651.15")


def test_pending_approval_then_approved_debits_once(
    running: RunningBridge, sandbox: Sandbox, credited: str
) -> None:
    pending = load("adjustment.created.data.json")
    pending["transaction_id"] = TXN_ID
    assert pending["status"] == "pending_approval"
    accepted(running, envelope("adjustment.created", pending, "evt_adj_created"))
    running.settle()
    row = stored(running, "evt_adj_created")
    assert row.status is EventStatus.IGNORED
    assert row.reason and "pending approval" in row.reason
    assert len(sandbox.state.adjustments) == 1

    accepted(running, envelope("adjustment.updated", adjustment(), "evt_adj_approved"))
    # A later update of the same approved adjustment (another event) names the same debit.
    accepted(running, envelope("adjustment.updated", adjustment(), "evt_adj_approved_again"))
    running.settle()

    assert stored(running, "evt_adj_approved").status is EventStatus.PROCESSED
    debits = [b for b in credyt_bodies(sandbox) if b["amount"] < 0]
    assert [d["amount"] for d in debits] == [Decimal("-1.00")]
    assert len(running.bridge.store.list_adjustments()) == 2
    assert sandbox.state.balance(credited, "USD") == Decimal("651.15")


def test_rejected_adjustment_does_nothing(
    running: RunningBridge, sandbox: Sandbox, credited: str
) -> None:
    accepted(
        running, envelope("adjustment.created", adjustment("pending_approval"), "evt_adj_pending")
    )
    accepted(running, envelope("adjustment.updated", adjustment("rejected"), "evt_adj_rejected"))
    running.settle()

    row = stored(running, "evt_adj_rejected")
    assert row.status is EventStatus.IGNORED
    assert row.reason and "rejected" in row.reason
    assert len(sandbox.state.adjustments) == 1
    assert sandbox.state.balance(credited, "USD") == Decimal("652.15")


def test_chargeback_then_chargeback_reverse_nets_to_zero(
    running: RunningBridge, sandbox: Sandbox, credited: str
) -> None:
    chargeback = full_amount(
        adjustment(id="adj_01hvgf2s84dr6reszzgchargeb", action="chargeback"), "65215"
    )
    accepted(running, envelope("adjustment.created", chargeback, "evt_chargeback"))
    running.settle()
    assert sandbox.state.balance(credited, "USD") == Decimal("0.00")

    reverse = full_amount(
        adjustment(id="adj_01hvgf2s84dr6reszzgcbrever", action="chargeback_reverse"), "65215"
    )
    accepted(running, envelope("adjustment.created", reverse, "evt_chargeback_reverse"))
    running.settle()

    _, taken, given_back = credyt_bodies(sandbox)
    assert (taken["amount"], given_back["amount"]) == (Decimal("-652.15"), Decimal("652.15"))
    assert taken["amount"] + given_back["amount"] == 0
    assert given_back["metadata"]["adjustment"] == "adj_01hvgf2s84dr6reszzgcbrever"
    assert sandbox.state.balance(credited, "USD") == Decimal("652.15")


def test_chargeback_warning_is_stored_and_ignored(
    running: RunningBridge, sandbox: Sandbox, credited: str
) -> None:
    warning = adjustment(id="adj_01hvgf2s84dr6reszzgwarning", action="chargeback_warning")
    accepted(running, envelope("adjustment.created", warning, "evt_chargeback_warning"))
    running.settle()

    row = stored(running, "evt_chargeback_warning")
    assert row.status is EventStatus.IGNORED
    assert row.reason and "chargeback_warning" in row.reason
    assert len(sandbox.state.adjustments) == 1


# -- currencies, zero-value transactions, order -------------------------------------


@pytest.mark.parametrize(
    ("currency", "paid", "refunded", "left"),
    [("JPY", 1500, 500, Decimal("1000")), ("KRW", 25000, 25000, Decimal("0"))],
)
def test_zero_decimal_currencies_are_exact_whole_units(
    running: RunningBridge,
    sandbox: Sandbox,
    currency: str,
    paid: int,
    refunded: int,
    left: Decimal,
) -> None:
    customer = sandbox.state.add_customer()
    txn_id = f"txn_01hv8wptq8987qeep44cyre{currency.lower()}"
    payment = paddle.sample_event(
        "transaction.completed",
        event_id=f"evt_{currency.lower()}_txn",
        object_id=txn_id,
        customer=customer,
        amount_minor=paid,
        currency=currency,
        origin="web",
    )
    refund = paddle.sample_event(
        "adjustment.updated",
        event_id=f"evt_{currency.lower()}_refund",
        object_id=f"adj_01hvgf2s84dr6reszzg29z{currency.lower()}",
        transaction_id=txn_id,
        amount_minor=refunded,
        currency=currency,
    )
    accepted(running, payment)
    running.settle()
    accepted(running, refund)
    running.settle()

    credit, debit = credyt_bodies(sandbox)
    # Whole units as JSON integers: Paddle's "1500" JPY is 1500 yen, not 15.00.
    assert (credit["amount"], credit["asset"]) == (paid, currency)
    assert isinstance(credit["amount"], int) and isinstance(debit["amount"], int)
    assert debit["amount"] == -refunded
    assert sandbox.state.balance(customer, currency) == left
    assert [a.amount for a in running.bridge.store.list_adjustments()] == [
        str(-refunded),
        str(paid),
    ]


def test_zero_value_payment_method_change_never_credits(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    # Even a connector whose only rule grants a fixed amount for every completed
    # transaction must not credit a payment method change.
    fixed = f"""
  paddle-fixed:
    type: paddle
    secrets: ["{PADDLE_SECRET}"]
    rules:
      - name: every-transaction
        on: transaction.completed
        credit:
          amount: "5"
          asset: CREDITS
"""
    running = make_bridge(config_text(str(tmp_path / "bridge.db"), sandbox.url, fixed))
    customer = sandbox.state.add_customer()
    for connector, event_id in (("paddle", "evt_pmc_1"), ("paddle-fixed", "evt_pmc_2")):
        event = paddle.sample_event(
            "transaction.completed",
            event_id=event_id,
            object_id=f"txn_01hv8wptq8987qeep44cyre{event_id[-1]}",
            customer=customer,
            amount_minor=0,
            origin="subscription_payment_method_change",
        )
        body = json.dumps(event).encode()
        response = running.post(connector, body, paddle.sign(body, PADDLE_SECRET))
        assert (response.status_code, response.json()) == (200, {"status": "accepted"})
    running.settle()

    for event_id in ("evt_pmc_1", "evt_pmc_2"):
        row = stored(running, event_id)
        assert row.status is EventStatus.IGNORED
        assert row.reason and "payment method change" in row.reason
    assert running.bridge.store.list_adjustments() == []
    assert sandbox.state.adjustments == []


def test_refund_before_its_transaction_is_held_then_applied(
    running: RunningBridge, sandbox: Sandbox, ctm: str
) -> None:
    accepted(running, envelope("adjustment.updated", adjustment(), "evt_early_refund"))
    held = wait_for_event(
        running,
        "evt_early_refund",
        lambda r: r.reason is not None,
        "the early refund to be held",
    )
    assert held.status is EventStatus.PENDING
    assert held.reason is not None and held.reason.startswith("held:")
    assert TXN_ID in held.reason
    assert held.payment_key == TXN_ID
    assert sandbox.state.adjustments == []

    accepted(running, envelope("transaction.completed", transaction(), "evt_late_txn"))
    running.settle(timeout=30)  # a hang guard: the held refund is woken by the credit

    row = stored(running, "evt_early_refund")
    assert (row.status, row.reason) == (EventStatus.PROCESSED, None)
    assert [b["amount"] for b in credyt_bodies(sandbox)] == [Decimal("652.15"), Decimal("-1.00")]
    assert sandbox.state.balance(ctm, "USD") == Decimal("651.15")


def test_reversal_applied_before_its_credit_is_not_applied_again(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path, ctm: str
) -> None:
    # unknown_original: debit applies a chargeback that arrives before its transaction
    # at once. The same adjustment in a later event, or a replay of the first, comes
    # after the credit is known: it must not be applied a second time under another key.
    text = config_text(str(tmp_path / "bridge.db"), sandbox.url).replace(
        "reverse: {}", "reverse: {unknown_original: debit}"
    )
    running = make_bridge(text)
    chargeback = adjustment(id="adj_01hvgf2s84dr6reszzgearlycb", action="chargeback")
    accepted(running, envelope("adjustment.created", chargeback, "evt_early_cb"))
    running.settle()
    assert sandbox.state.balance(ctm, "USD") == Decimal("-1.00")

    accepted(running, envelope("transaction.completed", transaction(), "evt_txn"))
    running.settle()
    accepted(running, envelope("adjustment.updated", chargeback, "evt_early_cb_updated"))
    running.settle()
    row = stored(running, "evt_early_cb_updated")
    assert row.status is EventStatus.IGNORED
    assert row.reason and "already applied" in row.reason

    first = stored(running, "evt_early_cb")
    assert asyncio.run(running.bridge.store.reset_events([first.id])) == 1  # a replay
    running.settle()
    assert stored(running, "evt_early_cb").status is EventStatus.IGNORED
    assert [b["amount"] for b in credyt_bodies(sandbox)] == [Decimal("-1.00"), Decimal("652.15")]
    assert sandbox.state.balance(ctm, "USD") == Decimal("651.15")
