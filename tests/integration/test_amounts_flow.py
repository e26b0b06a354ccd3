"""Amount bases end to end: signed webhooks -> the running bridge -> the Credyt sandbox.

A taxed Paddle transaction is credited on every basis at once (`match: all`, one
account per basis) and half refunded; an Adaptive Pricing Checkout Session is credited
in the integrator's currency and refunded in the customer's; a payment in a currency the
connector does not list fails with the reason. Payloads: tests/fixtures/amounts/.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from bridge.storage.records import EventStatus
from connectors import stripe
from tests.conftest import (
    FIXTURES,
    PADDLE_SECRET,
    STRIPE_SECRET,
    RunningBridge,
    Sandbox,
    bridge_config,
    wait_until,
)
from tests.helpers.operator import run_cli

AMOUNTS = FIXTURES / "amounts"

CONNECTORS = f"""
  paddle:
    type: paddle
    secrets: ["{PADDLE_SECRET}"]
    match: all
    currencies: [EUR]
    rules:
      - name: paid
        on: transaction.completed
        credit: {{amount: paid}}
      - name: net
        on: transaction.completed
        credit: {{amount: net, account: net}}
      - name: subtotal
        on: transaction.completed
        credit: {{amount: subtotal, account: subtotal}}
      - name: refund
        on: [adjustment.created, adjustment.updated]
        reverse: {{}}
  stripe:
    type: stripe
    secrets: ["{STRIPE_SECRET}"]
    currencies: [USD]
    rules:
      - name: topup
        on: checkout.session.completed
        credit: {{amount: net}}
      - name: refund
        on: [refund.created, refund.updated]
        reverse: {{}}
"""


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((AMOUNTS / name).read_text())
    return data


def paddle_envelope(event_type: str, data: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": "2024-04-12T10:18:49.738971Z",
        "notification_id": f"ntf_{event_id}",
        "data": data,
    }


def start(make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp: Path) -> RunningBridge:
    text = bridge_config(str(tmp / "bridge.db"), sandbox.url, CONNECTORS)
    (tmp / "config.yaml").write_text(text, encoding="utf-8")  # for the CLI
    return make_bridge(text)


def accepted(response: Any) -> None:
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})


def test_half_refund_of_a_taxed_payment_reverses_half_of_every_basis(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    customer = sandbox.state.add_customer(external_id="ctm_amounts")
    txn = load("paddle-discount-50.json")  # subtotal 10.00, discount 5.00, tax 1.00
    txn["custom_data"] = {"credyt_customer_id": customer}
    accepted(running.send_paddle(paddle_envelope("transaction.completed", txn, "evt_txn")))
    running.settle()
    balances = {
        account: sandbox.state.balance(customer, "EUR", account)
        for account in ("default", "net", "subtotal")
    }
    assert balances == {
        "default": Decimal("6.00"),
        "net": Decimal("5.00"),
        "subtotal": Decimal("10.00"),
    }

    refund = json.loads((FIXTURES / "paddle" / "adjustment.updated.data.json").read_text())
    refund.update(status="approved", transaction_id=txn["id"], currency_code="EUR")
    refund["totals"] = {**refund["totals"], "subtotal": "250", "tax": "50", "total": "300"}
    refund["totals"]["currency_code"] = "EUR"
    accepted(running.send_paddle(paddle_envelope("adjustment.updated", refund, "evt_refund")))
    running.settle()
    assert {account: sandbox.state.balance(customer, "EUR", account) for account in balances} == {
        account: amount / 2 for account, amount in balances.items()
    }
    # `events show` prints every amount the payment had beside the one each rule credited
    shown = run_cli(tmp_path / "config.yaml", "events", "show", "evt_txn").stdout
    assert "amounts (in EUR, what the credit rules choose from):" in shown
    for line in ("paid      6.00 EUR", "tax       1.00 EUR", "net       5.00 EUR"):
        assert line in shown, shown
    assert "subtotal  10.00 EUR" in shown and "discount  5.00 EUR" in shown
    assert shown.count("credited    amount net") == 1
    assert shown.count("credited    amount subtotal") == 1
    refund_shown = run_cli(tmp_path / "config.yaml", "events", "show", "evt_refund").stdout
    assert "amounts (in EUR, the PSP's own split):" in refund_shown
    assert "paid      3.00 EUR" in refund_shown and "net       2.50 EUR" in refund_shown
    # `check` prints each rule's basis
    checked = run_cli(tmp_path / "config.yaml", "check").stdout
    assert "credit net (currency)" in checked and "credit subtotal (currency)" in checked
    # the same refund again takes nothing more
    accepted(running.send_paddle(paddle_envelope("adjustment.updated", refund, "evt_refund_again")))
    running.settle()
    assert sandbox.state.balance(customer, "EUR", "net") == Decimal("2.50")


def test_adaptive_pricing_credits_usd_and_a_euro_refund_reverses_its_share(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    for name, refund_currency, refund_minor, event_suffix in (
        ("stripe-checkout-adaptive-currency-conversion.json", "eur", 1150, "old"),
        ("stripe-checkout-adaptive-presentment-details.json", "usd", 1250, "new"),
    ):
        customer = sandbox.state.add_customer(external_id=f"cus_adaptive_{event_suffix}")
        event = load(name)
        session = event["data"]["object"]
        session["metadata"] = {"credyt_customer_id": customer}
        intent = f"pi_adaptive_{event_suffix}"
        session["payment_intent"] = intent
        event["id"] = f"evt_session_{event_suffix}"
        accepted(running.send_stripe(event))
        running.settle()
        assert sandbox.state.balance(customer, "USD") == Decimal("25.00")
        assert sandbox.state.balance(customer, "EUR") == Decimal(0)

        refund = stripe.sample_event(
            "refund.created",
            event_id=f"evt_refund_{event_suffix}",
            object_id=f"re_adaptive_{event_suffix}",
            amount_minor=refund_minor,
            currency=refund_currency,
            payment=intent,
        )
        refund_object: Any = refund["data"]
        refund_object["object"]["payment_intent"] = intent
        accepted(running.send_stripe(refund))
        running.settle()
        assert sandbox.state.balance(customer, "USD") == Decimal("12.50")


def test_a_payment_in_an_unlisted_currency_fails_with_the_reason(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = start(make_bridge, sandbox, tmp_path)
    customer = sandbox.state.add_customer(external_id="ctm_amounts")
    txn = copy.deepcopy(load("paddle-tax-exclusive.json"))
    txn["custom_data"] = {"credyt_customer_id": customer}
    txn["currency_code"] = "GBP"
    accepted(running.send_paddle(paddle_envelope("transaction.completed", txn, "evt_gbp")))

    def finished() -> bool:
        row = running.bridge.store.get_event("evt_gbp")
        return row is not None and row.status is not EventStatus.PENDING

    wait_until(finished, what="the GBP transaction to be decided")
    row = running.bridge.store.get_event("evt_gbp")
    assert row is not None and row.status is EventStatus.FAILED
    assert row.reason is not None
    assert "is in GBP, which connector paddle does not credit (currencies: EUR)" in row.reason
    assert sandbox.state.adjustments == []
