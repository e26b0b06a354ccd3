"""What each credit records for its reversals (`basis_minor`): the payment's net in the
PSP minor units its refunds are written in for net and subtotal credits, nothing (the
gross) for paid and fixed ones and where the refunds are in another currency."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bridge.config.loading import parse_config
from bridge.events import PaymentEvent
from bridge.processing.rules import build_credit, matching_rules, minor_units
from tests.unit.test_amounts import paddle_event, stripe_event

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
      - name: fixed
        on: [{on}]
        credit: {{amount: "100", asset: CREDITS, account: fixed}}
"""


def recorded(event: PaymentEvent) -> dict[str, int | None]:
    secret = (
        "pdl_ntfset_test_abcdefghijklmnop"
        if event.psp == "paddle"
        else "whsec_test_secret_abcdefghijklmnop"
    )
    config = parse_config(CONFIG.format(name=event.psp, secret=secret, on=event.event_type))
    connector = config.connectors[event.psp]
    return {
        rule.name: build_credit(rule, event, connector, "cust_1").basis_minor
        for rule in matching_rules(event, connector)
    }


@pytest.mark.parametrize(
    ("event", "net"),
    [
        (paddle_event("paddle-tax-exclusive.json"), 1000),  # 12.00 paid, 2.00 VAT
        (paddle_event("paddle-discount-50.json"), 500),  # 6.00 paid, 1.00 VAT
        (stripe_event("stripe-checkout-taxed.json"), 1000),  # 12.00 paid, 2.00 tax
    ],
    ids=["paddle-exclusive", "paddle-discount", "stripe-checkout"],
)
def test_net_and_subtotal_credits_record_the_payments_net(event: PaymentEvent, net: int) -> None:
    assert recorded(event) == {"paid": None, "net": net, "subtotal": net, "fixed": None}


def test_adaptive_pricing_refunds_in_the_customers_currency_are_measured_by_the_gross() -> None:
    # credited in USD, charged (and refunded) in EUR: a USD net is no measure of them
    event = stripe_event("stripe-checkout-adaptive-currency-conversion.json")
    assert recorded(event) == dict.fromkeys(("paid", "net", "subtotal", "fixed"), None)


def test_minor_units_keep_the_currencys_places_and_refuse_fractions() -> None:
    assert minor_units(Decimal("10.00"), Decimal("12.00")) == 1000
    assert minor_units(Decimal("1500"), Decimal("1800")) == 1500  # JPY: no decimals
    assert minor_units(Decimal("10.005"), Decimal("12.00")) is None
