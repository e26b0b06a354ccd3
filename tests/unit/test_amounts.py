"""Which amount a credit names: paid (tax included), net (excluding tax), subtotal.

The payloads are the real captures of tests/fixtures/ given tax, discounts, balances
and Adaptive Pricing (tests/fixtures/amounts/, sources in tests/fixtures/SOURCES.md).
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from bridge.config.loading import parse_config
from bridge.config.schema import Rule
from bridge.errors import ConfigError
from bridge.events import PaymentEvent
from bridge.operating.tables import rules_table
from bridge.processing.rules import credit_amount, credit_asset, matching_rules
from connectors.paddle import PaddleConnector
from connectors.stripe import StripeConnector
from tests.conftest import FIXTURES

AMOUNTS = FIXTURES / "amounts"
SECRET = "whsec_test_secret_abcdefghijklmnop"

CONFIG = """\
credyt: {{api_key: k}}
connectors:
  {name}:
    type: {name}
    secrets: [{secret}]
    match: all
    rules:
      - name: paid
        on: [{on}]
        credit: {{amount: paid}}
      - name: net
        on: [{on}]
        credit: {{amount: net, account: net}}
      - name: subtotal
        on: [{on}]
        credit: {{amount: subtotal, account: subtotal}}
"""


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((AMOUNTS / name).read_text())
    return data


def paddle_event(name: str) -> PaymentEvent:
    envelope = {
        "event_id": f"evt_{name}",
        "event_type": "transaction.completed",
        "occurred_at": "2024-04-12T10:18:49.738971Z",
        "notification_id": f"ntf_{name}",
        "data": load(name),
    }
    event = PaddleConnector(secrets=["s"], tolerance=0).normalize(envelope)
    assert isinstance(event, PaymentEvent)
    return event


def stripe_event(name: str) -> PaymentEvent:
    event = StripeConnector(secrets=["s"], tolerance=0).normalize(load(name))
    assert isinstance(event, PaymentEvent), event
    return event


def credits(event: PaymentEvent) -> dict[str, tuple[str, Decimal]]:
    """What each basis credits of `event`: rule name -> (asset, amount)."""
    secret = "pdl_ntfset_test_abcdefghijklmnop" if event.psp == "paddle" else SECRET
    config = parse_config(CONFIG.format(name=event.psp, secret=secret, on=event.event_type))
    rules: list[Rule] = matching_rules(event, config.connectors[event.psp])
    return {rule.name: (credit_asset(rule, event), credit_amount(rule, event)) for rule in rules}


# -- 1. Paddle: tax-exclusive, tax-inclusive, discounted, partly paid by a credit ------------


def test_paddle_tax_exclusive_credits_10_net_and_12_paid() -> None:
    event = paddle_event("paddle-tax-exclusive.json")
    assert credits(event) == {
        "paid": ("EUR", Decimal("12.00")),
        "net": ("EUR", Decimal("10.00")),
        "subtotal": ("EUR", Decimal("10.00")),
    }
    assert event.amounts is not None and event.amounts.tax == Decimal("2.00")


def test_paddle_tax_inclusive_credits_the_net_of_its_tax() -> None:
    data = load("paddle-tax-inclusive.json")
    assert data["items"][0]["price"]["tax_mode"] == "internal"
    assert data["items"][0]["price"]["unit_price"]["amount"] == "1200"  # tax included
    assert credits(paddle_event("paddle-tax-inclusive.json")) == {
        "paid": ("EUR", Decimal("12.00")),
        "net": ("EUR", Decimal("10.00")),
        "subtotal": ("EUR", Decimal("10.00")),
    }


def test_paddle_50_percent_discount_shows_in_net_and_not_in_subtotal() -> None:
    event = paddle_event("paddle-discount-50.json")
    assert credits(event) == {
        "paid": ("EUR", Decimal("6.00")),
        "net": ("EUR", Decimal("5.00")),
        "subtotal": ("EUR", Decimal("10.00")),
    }
    assert event.amounts is not None and event.amounts.discount == Decimal("5.00")


def test_paddle_credit_applied_credits_the_share_paid_on_every_basis() -> None:
    # total 12.00, a 6.00 customer credit, grand_total 6.00, no grand_total_tax yet
    event = paddle_event("paddle-credit-applied.json")
    assert credits(event) == {
        "paid": ("EUR", Decimal("6.00")),
        "net": ("EUR", Decimal("5.00")),
        "subtotal": ("EUR", Decimal("5.00")),
    }


def test_paddle_sdk_fixture_net_is_total_less_grand_total_tax() -> None:
    data = json.loads((FIXTURES / "paddle" / "transaction.completed.data.json").read_text())
    envelope = {
        "event_id": "evt_sdk",
        "event_type": "transaction.completed",
        "occurred_at": "2024-04-12T10:18:49.738971Z",
        "data": data,
    }
    event = PaddleConnector(secrets=["s"], tolerance=0).normalize(envelope)
    assert isinstance(event, PaymentEvent) and event.amounts is not None
    assert (event.amounts.paid, event.amounts.net, event.amounts.tax) == (
        Decimal("652.15"),
        Decimal("599.00"),
        Decimal("53.15"),
    )


# -- 2. Stripe invoices in both shapes and a Checkout Session ------------------------------


@pytest.mark.parametrize(
    "name", ["stripe-invoice-pre-basil-taxed.json", "stripe-invoice-basil-taxed.json"]
)
def test_stripe_taxed_invoice_credits_net_and_paid_in_both_shapes(name: str) -> None:
    event = stripe_event(name)
    currency = event.currency
    assert credits(event) == {
        "paid": (currency, Decimal("12.00")),
        "net": (currency, Decimal("10.00")),
        "subtotal": (currency, Decimal("10.00")),
    }


def test_pre_basil_invoice_has_no_total_excluding_tax_and_basil_no_tax_field() -> None:
    # the two shapes really differ: net comes from `tax` in one, total_taxes in the other
    pre = load("stripe-invoice-pre-basil-taxed.json")["data"]["object"]
    basil = load("stripe-invoice-basil-taxed.json")["data"]["object"]
    assert "total_excluding_tax" not in pre and pre["tax"] == 200
    assert "tax" not in basil and basil["total_taxes"][0]["amount"] == 200
    del basil["total_excluding_tax"], basil["subtotal_excluding_tax"]
    event = StripeConnector(secrets=["s"], tolerance=0).normalize(
        {**load("stripe-invoice-basil-taxed.json"), "data": {"object": basil}}
    )
    assert isinstance(event, PaymentEvent) and event.amounts is not None
    assert event.amounts.net == Decimal("10.00")


def test_invoice_paid_in_part_by_a_balance_credits_the_paid_share() -> None:
    # subtotal 10.00, 50% coupon, tax 1.00: total 6.00, of which the balance paid 3.00
    event = stripe_event("stripe-invoice-basil-discount-balance.json")
    assert event.amounts is not None
    assert event.amounts.tax == Decimal("0.50")
    assert event.amounts.discount == Decimal("2.50")
    assert credits(event) == {
        "paid": ("EUR", Decimal("3.00")),
        "net": ("EUR", Decimal("2.50")),
        "subtotal": ("EUR", Decimal("5.00")),
    }


def test_checkout_session_net_is_amount_total_less_total_details_amount_tax() -> None:
    assert credits(stripe_event("stripe-checkout-taxed.json")) == {
        "paid": ("USD", Decimal("12.00")),
        "net": ("USD", Decimal("10.00")),
        "subtotal": ("USD", Decimal("10.00")),
    }


# -- 5. Adaptive Pricing: the integrator's currency in both shapes ---------------------------


@pytest.mark.parametrize(
    "name",
    [
        "stripe-checkout-adaptive-currency-conversion.json",
        "stripe-checkout-adaptive-presentment-details.json",
    ],
)
def test_adaptive_pricing_credits_the_integrators_currency_and_amount(name: str) -> None:
    event = stripe_event(name)
    assert credits(event) == {
        "paid": ("USD", Decimal("25.00")),
        "net": ("USD", Decimal("25.00")),
        "subtotal": ("USD", Decimal("25.00")),
    }
    assert event.amounts is not None
    assert (event.amounts.presentment_currency, event.amounts.presentment_amount) == (
        "EUR",
        Decimal("23.00"),
    )


def test_adaptive_pricing_before_2025_03_30_keeps_refund_units_in_the_charged_currency() -> None:
    # Refunds of the charge are in EUR minor units: proportions need the EUR amount.
    event = stripe_event("stripe-checkout-adaptive-currency-conversion.json")
    assert (event.currency, event.amount_minor) == ("EUR", 2300)


def test_adaptive_pricing_tax_is_converted_into_the_integrators_currency() -> None:
    data = load("stripe-checkout-adaptive-currency-conversion.json")
    data["data"]["object"]["total_details"]["amount_tax"] = 460  # of 23.00 EUR
    event = StripeConnector(secrets=["s"], tolerance=0).normalize(data)
    assert isinstance(event, PaymentEvent) and event.amounts is not None
    assert (event.amounts.tax, event.amounts.net) == (Decimal("5.00"), Decimal("20.00"))


# -- 4. net on payment_intent.succeeded is refused at load, with file and line ----------------


@pytest.mark.parametrize("basis", ["net", "subtotal"])
def test_net_on_payment_intent_succeeded_is_refused_with_file_line_and_reason(basis: str) -> None:
    text = f"""\
credyt: {{api_key: k}}
connectors:
  stripe:
    type: stripe
    secrets: [{SECRET}]
    rules:
      - name: topup
        on: payment_intent.succeeded
        when: {{metadata: {{credyt_topup: "true"}}}}
        credit:
          amount: {basis}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "bridge.yaml")
    message = str(caught.value)
    assert message.startswith("bridge.yaml:11: connectors.stripe.rules[0].credit.amount:")
    assert f"amount {basis} is not known for payment_intent.succeeded" in message
    assert "no tax information" in message


def test_paid_and_fixed_amounts_on_payment_intent_succeeded_still_load() -> None:
    for amount, expected in (("paid", None), ('"100"', Decimal(100))):
        config = parse_config(
            f"""\
credyt: {{api_key: k}}
connectors:
  stripe:
    type: stripe
    secrets: [{SECRET}]
    rules:
      - name: topup
        on: payment_intent.succeeded
        when: {{metadata: {{credyt_topup: "true"}}}}
        credit: {{amount: {amount}, asset: USD}}
"""
        )
        credit = config.connectors["stripe"].rules[0].credit
        assert credit is not None and credit.amount == expected and credit.basis == "paid"


def test_unknown_basis_is_a_config_error() -> None:
    text = CONFIG.format(name="paddle", secret="pdl_ntfset_test_abcdefghijklmnop", on="x")
    with pytest.raises(ConfigError, match="amount"):
        parse_config(text.replace("amount: subtotal", "amount: gross"))


def test_check_prints_each_rules_basis() -> None:
    config = parse_config(
        CONFIG.format(
            name="paddle", secret="pdl_ntfset_test_abcdefghijklmnop", on="transaction.completed"
        )
    )
    table = rules_table(config)
    # one table per connector: its title, the header and rule, then each rule's rows
    # (the first row names the rule; the rest of its cells continue below)
    lines = {line.split()[0]: line for line in table.splitlines()[3:] if line[:1].strip()}
    assert "credit paid " in lines["paid"]
    assert "credit net " in lines["net"]
    assert "credit subtotal " in lines["subtotal"]


# -- the currency allowlist ------------------------------------------------------------------


def test_currencies_are_iso_codes() -> None:
    text = CONFIG.format(
        name="paddle", secret="pdl_ntfset_test_abcdefghijklmnop", on="transaction.completed"
    ).replace("    match: all\n", "    match: all\n    currencies: [usd, EURO]\n")
    with pytest.raises(ConfigError, match=r"currencies\[1\]: not an ISO 4217 currency code"):
        parse_config(text)
    config = parse_config(text.replace("EURO", "eur"))
    assert config.connectors["paddle"].currencies == ("USD", "EUR")


# -- the sample builders (send, the demo) produce taxed payments -----------------------------


@pytest.mark.parametrize(
    ("event_type", "api_version"),
    [
        ("invoice.paid", "2025-03-31.basil"),
        ("invoice.paid", "2020-08-27"),
        ("checkout.session.completed", "2025-03-31.basil"),
    ],
)
def test_stripe_samples_with_tax_read_back_as_net(event_type: str, api_version: str) -> None:
    from connectors.stripe import sample_event

    raw = sample_event(
        event_type,
        event_id="evt_sample",
        object_id="cs_sample" if event_type.startswith("checkout") else "in_sample",
        customer="cust_1",
        amount_minor=1200,
        tax_minor=200,
        currency="eur",
        api_version=api_version,
    )
    event = StripeConnector(secrets=["s"], tolerance=0).normalize(raw)
    assert isinstance(event, PaymentEvent) and event.amounts is not None
    assert (event.amounts.paid, event.amounts.net, event.amounts.subtotal) == (
        Decimal("12.00"),
        Decimal("10.00"),
        Decimal("10.00"),
    )


def test_paddle_sample_with_tax_reads_back_as_net_and_its_refund_has_the_split() -> None:
    from connectors.paddle import sample_event

    raw = sample_event(
        "transaction.completed",
        event_id="evt_sample",
        object_id="txn_sample",
        amount_minor=1200,
        tax_minor=200,
        currency="EUR",
    )
    event = PaddleConnector(secrets=["s"], tolerance=0).normalize(raw)
    assert isinstance(event, PaymentEvent) and event.amounts is not None
    assert (event.amounts.paid, event.amounts.net) == (Decimal("12.00"), Decimal("10.00"))
    refund: Any = sample_event(
        "adjustment.updated",
        event_id="evt_refund",
        object_id="adj_sample",
        transaction_id="txn_sample",
        amount_minor=600,
        tax_minor=100,
        currency="EUR",
    )
    assert refund["data"]["totals"]["subtotal"] == "500"
    assert refund["data"]["totals"]["tax"] == "100"


def test_send_refuses_more_tax_than_the_amount() -> None:
    from bridge.errors import BridgeError
    from bridge.operating.sending import SendRequest, build_webhook

    request = SendRequest(
        psp="paddle", event_type="transaction.completed", url="http://127.0.0.1:1", secret="s"
    )
    body, _ = build_webhook(replace(request, amount="12.00", tax="2.00", currency="EUR"))
    assert json.loads(body)["data"]["details"]["totals"]["tax"] == "200"
    with pytest.raises(BridgeError, match=r"--tax 13.00 is more than --amount 12.00"):
        build_webhook(replace(request, amount="12.00", tax="13.00"))


# -- what an invoice without tax fields gives ---------------------------------------------


def test_a_2016_invoice_with_tax_null_credits_net_as_paid() -> None:
    raw = json.loads(
        (FIXTURES / "stripe" / "pre-2018" / "invoice.payment_succeeded.json").read_text()
    )
    assert raw["data"]["object"]["tax"] is None
    event = StripeConnector(secrets=["s"], tolerance=0).normalize(raw)
    assert isinstance(event, PaymentEvent) and event.amounts is not None
    assert event.amounts.net == event.amounts.paid == event.amount


def test_an_invoice_that_says_nothing_of_tax_fails_a_net_rule_with_the_reason() -> None:
    from bridge.errors import EventError

    raw = json.loads(
        (FIXTURES / "stripe" / "pre-2018" / "invoice.payment_succeeded.json").read_text()
    )
    del raw["data"]["object"]["tax"]
    event = StripeConnector(secrets=["s"], tolerance=0).normalize(raw)
    assert isinstance(event, PaymentEvent) and event.amounts is not None
    assert event.amounts.net is None
    config = parse_config(CONFIG.format(name="stripe", secret=SECRET, on=event.event_type))
    net = next(r for r in config.connectors["stripe"].rules if r.name == "net")
    with pytest.raises(EventError, match="does not say its net amount"):
        credit_amount(net, event)
    paid = next(r for r in config.connectors["stripe"].rules if r.name == "paid")
    assert credit_amount(paid, event) == event.amount


def test_a_currency_condition_matches_the_integrators_currency() -> None:
    event = stripe_event("stripe-checkout-adaptive-currency-conversion.json")
    text = CONFIG.format(name="stripe", secret=SECRET, on=event.event_type)
    for currency, matches in (("USD", True), ("EUR", False)):
        config = parse_config(
            text.replace(
                "credit: {amount: paid}",
                f"when: {{currency: [{currency}]}}\n        credit: {{amount: paid}}",
            )
        )
        names = [r.name for r in matching_rules(event, config.connectors["stripe"])]
        assert ("paid" in names) is matches
