"""Payloads nobody here wrote: captured webhooks and published fixtures (tests/fixtures/).

Each test sends one through the real bridge on loopback and checks what Credyt (the
sandbox) received.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from bridge.storage.records import EventStatus
from connectors import paddle, stripe
from tests.conftest import (
    FIXTURES,
    PADDLE_SECRET,
    STRIPE_SECRET,
    RunningBridge,
    Sandbox,
    config_text,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def settled_row(running: RunningBridge, event_id: str) -> Any:
    """The event once it is no longer pending (held events stay pending)."""

    def done() -> bool:
        row = running.bridge.store.get_event(event_id)
        return row is not None and row.status is not EventStatus.PENDING

    wait_until(done, 5.0, f"{event_id} to be processed")
    return running.bridge.store.get_event(event_id)


def test_an_invoice_from_before_amount_paid_credits_its_amount_due(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    """Until 2018 an invoice had no amount_paid: a paid one had paid its amount_due."""
    event = load(FIXTURES / "stripe" / "pre-2018" / "invoice.payment_succeeded.json")
    invoice = event["data"]["object"]
    assert "amount_paid" not in invoice and invoice["paid"] is True
    customer = sandbox.state.add_customer(external_id=invoice["customer"])

    assert running.send_stripe(event).status_code == 200
    row = settled_row(running, event["id"])
    assert row.status is EventStatus.PROCESSED, row.reason
    running.settle()
    assert sandbox.state.balance(customer, "EUR") == Decimal("9.99")


def test_an_unpaid_invoice_without_amount_paid_credits_nothing(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    event = load(FIXTURES / "stripe" / "pre-2018" / "invoice.payment_succeeded.json")
    event["id"] = "evt_unpaid_2016"
    event["data"]["object"]["paid"] = False
    sandbox.state.add_customer(external_id=event["data"]["object"]["customer"])
    assert running.send_stripe(event).status_code == 200
    row = settled_row(running, event["id"])
    assert row.status is not EventStatus.PROCESSED
    assert sandbox.state.adjustments == []


def checkout_config(tmp_path: Path, sandbox_url: str) -> str:
    return config_text(str(tmp_path / "bridge.db"), sandbox_url).replace(
        "        on: [invoice.paid, invoice.payment_succeeded]\n",
        "        on: [invoice.paid, invoice.payment_succeeded, checkout.session.completed]\n",
        1,
    )


def test_guest_checkout_is_failed_not_held(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    running = make_bridge(config=checkout_config(tmp_path, sandbox.url))
    session = load(FIXTURES / "stripe" / "payment-link-guest" / "checkout.session.json")
    event = {
        "id": "evt_guest_plink",
        "object": "event",
        "api_version": "2023-10-16",
        "created": session["created"],
        "livemode": False,
        "type": "checkout.session.completed",
        "data": {"object": session},
    }
    assert running.send_stripe(event).status_code == 200
    row = settled_row(running, event["id"])
    assert row.status is EventStatus.FAILED, row.reason
    assert "no credyt_customer_id in the payment's metadata" in (row.reason or "")
    assert "held" not in (row.reason or "")
    assert sandbox.state.adjustments == []


FIXED = """
  stripe-plan:
    type: stripe
    secrets: ["{secret}"]
    match: all
    rules:
      - name: plan-credits
        on: invoice.paid
        credit: {{amount: "1000", asset: CREDITS}}
      - name: plan-money
        on: invoice.paid
        credit: {{amount: paid}}
  paddle-plan:
    type: paddle
    secrets: ["{paddle_secret}"]
    rules:
      - name: plan-credits
        on: transaction.completed
        credit: {{amount: "1000", asset: CREDITS}}
"""


def test_a_fixed_amount_rule_grants_on_an_invoice_a_coupon_made_free(
    make_bridge: Callable[..., RunningBridge], sandbox: Sandbox, tmp_path: Path
) -> None:
    extra = FIXED.format(secret=STRIPE_SECRET, paddle_secret=PADDLE_SECRET)
    running = make_bridge(config=config_text(str(tmp_path / "bridge.db"), sandbox.url, extra))
    customer = sandbox.state.add_customer()
    free = stripe.sample_event(
        "invoice.paid",
        event_id="evt_free_month",
        object_id="in_free",
        customer=customer,
        amount_minor=0,
    )
    body = json.dumps(free).encode()
    assert running.post("stripe-plan", body, stripe.sign(body, STRIPE_SECRET)).status_code == 200
    renewal = paddle.sample_event(
        "transaction.completed",
        event_id="evt_01free",
        object_id="txn_01free",
        customer=customer,
        amount_minor=0,
        origin="subscription_recurring",
    )
    body = json.dumps(renewal).encode()
    assert running.post("paddle-plan", body, paddle.sign(body, PADDLE_SECRET)).status_code == 200
    running.settle()

    assert sandbox.state.balance(customer, "CREDITS") == Decimal(2000)  # 1,000 each
    assert sandbox.state.balance(customer, "USD") == 0  # `amount: paid` skips the 0.00
    assert len(sandbox.state.adjustments) == 2
    row = running.bridge.store.get_event("evt_free_month")
    assert row is not None and row.status is EventStatus.PROCESSED


def test_an_amount_paid_rule_still_ignores_a_free_invoice(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    customer = sandbox.state.add_customer()
    free = stripe.sample_event(
        "invoice.paid",
        event_id="evt_free",
        object_id="in_free2",
        customer=customer,
        amount_minor=0,
    )
    assert running.send_stripe(free).status_code == 200
    row = settled_row(running, "evt_free")
    assert row.status is EventStatus.IGNORED and "paid nothing" in (row.reason or "")
    assert sandbox.state.requests == ["GET /accounts/self"]  # the key check at start only


def test_the_example_config_has_a_rule_for_every_stripe_event_the_readme_lists() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Stripe events", 1)[1].split("\n## ", 1)[0]
    assert "config.example.yaml" in table.split("|", 1)[0]  # the claim being checked
    listed: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            listed.update(re.findall(r"`([a-z_]+\.[a-z_.]+)`", first))
    listed.discard("invoice_payment.paid")  # the table says it needs no rule
    example = yaml.safe_load((ROOT / "bridge" / "config" / "config.example.yaml").read_text())
    used: set[str] = set()
    for rule in example["connectors"]["stripe"]["rules"]:
        on = rule.get("on", rule.get(True))  # YAML 1.1 reads a bare `on` key as true
        used.update([on] if isinstance(on, str) else on)
    assert len(listed) > 10
    assert listed - used == set()
