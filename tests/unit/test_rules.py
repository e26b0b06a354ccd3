"""Rules: units per price, and conditions a PSP can never satisfy."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from bridge.config.loading import parse_config
from bridge.errors import ConfigError
from bridge.events import PaymentEvent
from bridge.processing.rules import credit_amount, matching_rules
from connectors.paddle import PaddleConnector
from tests.conftest import FIXTURES

CONFIG = """
credyt: {{api_key: k}}
connectors:
  paddle:
    type: paddle
    secrets: [pdl_ntfset_test_abcdefghijklmnop]
    match: all
    rules:
{rules}
"""


def paddle_transaction() -> PaymentEvent:
    data = json.loads((FIXTURES / "paddle" / "transaction.completed.data.json").read_text())
    envelope = {
        "event_id": "evt_rules_1",
        "event_type": "transaction.completed",
        "occurred_at": "2024-04-12T10:18:49.738971Z",
        "notification_id": "ntf_rules_1",
        "data": data,
    }
    event = PaddleConnector(secrets=["s"], tolerance=0).normalize(envelope)
    assert isinstance(event, PaymentEvent)
    return event


def test_per_unit_counts_only_the_units_of_the_rules_price() -> None:
    event = paddle_transaction()
    assert len(event.lines) >= 2, "the fixture has several items"
    first = event.lines[0]
    assert first.price_id is not None
    rules = f"""
      - name: seats
        on: transaction.completed
        when: {{price_ids: [{first.price_id}]}}
        credit: {{amount: "100", per_unit: true, asset: TOK}}
      - name: everything
        on: transaction.completed
        credit: {{amount: "1", per_unit: true, asset: TOK}}
"""
    config = parse_config(CONFIG.format(rules=rules))
    seats, everything = matching_rules(event, config.connectors["paddle"])
    same_price = sum(line.quantity for line in event.lines if line.price_id == first.price_id)
    assert credit_amount(seats, event) == Decimal(100) * same_price
    assert same_price < event.quantity  # so the test tells the two apart
    assert credit_amount(everything, event) == Decimal(event.quantity)


@pytest.mark.parametrize("condition", ["livemode: true", "billing_reason: [manual]"])
def test_a_condition_paddle_events_never_carry_is_a_config_error(condition: str) -> None:
    rules = f"""
      - name: never
        on: transaction.completed
        when: {{{condition}}}
        credit: {{amount: paid}}
"""
    with pytest.raises(ConfigError) as raised:
        parse_config(CONFIG.format(rules=rules), "bridge.yaml")
    key = condition.split(":")[0]
    assert f"connectors.paddle.rules[0].when.{key}: paddle events have no {key}" in str(
        raised.value
    )
    assert str(raised.value).startswith("bridge.yaml:")
