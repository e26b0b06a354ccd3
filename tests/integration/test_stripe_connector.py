"""The Stripe connector: the genuine signed delivery, both payload shapes, exact amounts.

Unit tests call `StripeConnector` directly; the HTTP tests send the same bytes to a real
bridge on uvicorn and read the result at the sandbox.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import MalformedEventError, SignatureError
from bridge.events import Ignored, Kind, PaymentEvent
from connectors import stripe
from connectors.stripe import StripeConnector
from tests.conftest import (
    FIXTURES,
    STRIPE_SECRET,
    RunningBridge,
    Sandbox,
    bridge_config,
)

BASIL = FIXTURES / "stripe" / "basil-2025-03-31"
PRE_BASIL = FIXTURES / "stripe" / "pre-basil-2020-08-27"
VECTOR = json.loads((BASIL / "signature-vector.json").read_text())
GENUINE_BODY = (BASIL / VECTOR["body_file"]).read_bytes()
GENUINE_SECRET: str = VECTOR["secret"]
GENUINE_HEADER: str = VECTOR["header"]
GENUINE_CUSTOMER = "cus_SGqVI5XZS5sDjA"
GENUINE_INVOICE = "in_1RMgafCMHTTliF5ilpBkRLZf"

StartBridge = Callable[..., RunningBridge]


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_bytes())
    return data


def flip(text: bytes, position: int) -> bytes:
    """`text` with the byte at `position` changed to another printable byte."""
    old = text[position]
    new = ord("1") if old != ord("1") else ord("2")
    return text[:position] + bytes([new]) + text[position + 1 :]


def header_with_v1_changed(header: str, position: int) -> str:
    parts = header.split(",")
    for i, part in enumerate(parts):
        if part.startswith("v1="):
            digest = part[3:]
            ch = "0" if digest[position] != "0" else "1"
            parts[i] = "v1=" + digest[:position] + ch + digest[position + 1 :]
    return ",".join(parts)


def genuine_connector(tolerance: float = 0) -> StripeConnector:
    return StripeConnector(secrets=[GENUINE_SECRET], tolerance=tolerance)


def stripe_only_config(database: str, api_url: str, secret: str, tolerance: str = "5m") -> str:
    connectors = f"""
  stripe:
    type: stripe
    secrets: ["{secret}"]
    tolerance: {tolerance}
    rules:
      - name: subscription-payment
        on: [invoice.paid, invoice.payment_succeeded]
        credit:
          amount: paid
"""
    return bridge_config(database, api_url, connectors, timeout=None)


def payment(result: object) -> PaymentEvent:
    assert isinstance(result, PaymentEvent), result
    return result


# -- the genuine Stripe-signed delivery ----------------------------------------------


def test_genuine_delivery_verifies_with_the_timestamp_check_off() -> None:
    assert not GENUINE_BODY.endswith(b"\n")
    genuine_connector().verify({"stripe-signature": GENUINE_HEADER}, GENUINE_BODY)


@pytest.mark.parametrize("name", ["Stripe-Signature", "stripe-signature", "STRIPE-SIGNATURE"])
def test_header_name_case_does_not_matter(name: str) -> None:
    genuine_connector().verify({name: GENUINE_HEADER}, GENUINE_BODY)


def test_genuine_delivery_is_stale_with_the_default_tolerance() -> None:
    with pytest.raises(SignatureError) as caught:
        genuine_connector(tolerance=300).verify({"stripe-signature": GENUINE_HEADER}, GENUINE_BODY)
    assert caught.value.reason == "stale"


@pytest.mark.parametrize("position", [0, 1, 100, len(GENUINE_BODY) // 2, len(GENUINE_BODY) - 2])
def test_one_byte_change_to_the_body_is_rejected(position: int) -> None:
    with pytest.raises(SignatureError) as caught:
        genuine_connector().verify(
            {"stripe-signature": GENUINE_HEADER}, flip(GENUINE_BODY, position)
        )
    assert caught.value.reason == "mismatch"


def test_a_trailing_newline_is_a_change_too() -> None:
    with pytest.raises(SignatureError):
        genuine_connector().verify({"stripe-signature": GENUINE_HEADER}, GENUINE_BODY + b"\n")


@pytest.mark.parametrize("position", [0, 31, 63])
def test_one_character_change_to_v1_is_rejected(position: int) -> None:
    header = header_with_v1_changed(GENUINE_HEADER, position)
    assert header != GENUINE_HEADER
    with pytest.raises(SignatureError) as caught:
        genuine_connector().verify({"stripe-signature": header}, GENUINE_BODY)
    assert caught.value.reason == "mismatch"


def test_changed_timestamp_is_rejected() -> None:
    header = GENUINE_HEADER.replace("t=1746757390", "t=1746757391")
    with pytest.raises(SignatureError):
        genuine_connector().verify({"stripe-signature": header}, GENUINE_BODY)


def test_v0_alone_does_not_count() -> None:
    header = ",".join(p for p in GENUINE_HEADER.split(",") if not p.startswith("v1="))
    with pytest.raises(SignatureError):
        genuine_connector().verify({"stripe-signature": header}, GENUINE_BODY)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(SignatureError):
        StripeConnector(secrets=[STRIPE_SECRET], tolerance=0).verify(
            {"stripe-signature": GENUINE_HEADER}, GENUINE_BODY
        )


def test_genuine_envelope() -> None:
    envelope = genuine_connector().envelope(GENUINE_BODY)
    assert envelope.event_id == "evt_1RMgagCMHTTliF5iVoysIuMJ"
    assert envelope.event_type == "invoice.payment_succeeded"
    assert envelope.livemode is False


def test_genuine_delivery_over_http_is_credited(
    make_bridge: StartBridge, sandbox: Sandbox, tmp_path: Path
) -> None:
    customer = sandbox.state.add_customer(external_id=GENUINE_CUSTOMER)
    bridge = make_bridge(
        stripe_only_config(str(tmp_path / "bridge.db"), sandbox.url, GENUINE_SECRET, tolerance="0")
    )
    answer = bridge.post(
        "stripe",
        GENUINE_BODY,
        {"Stripe-Signature": GENUINE_HEADER, "Content-Type": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "accepted"}
    bridge.settle()
    assert sandbox.state.balance(customer, "CAD") == Decimal("49.99")
    [adjustment] = sandbox.state.adjustments
    assert adjustment["customer_id"] == customer
    assert adjustment["body"]["amount"] == Decimal("49.99")
    assert adjustment["body"]["asset"] == "CAD"
    assert adjustment["body"]["metadata"]["invoice"] == GENUINE_INVOICE
    assert adjustment["body"]["metadata"]["event_id"] == "evt_1RMgagCMHTTliF5iVoysIuMJ"
    stored = bridge.bridge.store.get_event("evt_1RMgagCMHTTliF5iVoysIuMJ")
    assert stored is not None and stored.body == GENUINE_BODY


@pytest.mark.parametrize("change", ["body", "v1"])
def test_one_byte_change_over_http_is_400_and_nothing_stored(
    make_bridge: StartBridge, sandbox: Sandbox, tmp_path: Path, change: str
) -> None:
    bridge = make_bridge(
        stripe_only_config(str(tmp_path / "bridge.db"), sandbox.url, GENUINE_SECRET, tolerance="0")
    )
    body, header = GENUINE_BODY, GENUINE_HEADER
    if change == "body":
        body = flip(body, len(body) // 3)
    else:
        header = header_with_v1_changed(header, 10)
    answer = bridge.post(
        "stripe", body, {"Stripe-Signature": header, "Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert "signature" in answer.json()["error"].lower()
    assert bridge.bridge.store.counts() == {"events": {}, "adjustments": {}}
    assert sandbox.state.adjustment_requests == 0


# -- both payload shapes over HTTP ---------------------------------------------------


def test_pre_basil_invoice_paid_fixture_credits_the_looked_up_customer(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    event = load(PRE_BASIL / "invoice.paid.json")
    event["id"] = "evt_prebasil_lookup"
    customer = sandbox.state.add_customer(external_id=event["data"]["object"]["customer"])
    other = sandbox.state.add_customer(external_id="cus_someone_else")
    assert running.send_stripe(event).status_code == 200
    running.settle()
    assert sandbox.state.balance(customer, "USD") == Decimal("20.00")
    assert sandbox.state.balance(other, "USD") == 0
    [adjustment] = sandbox.state.adjustments
    assert adjustment["body"]["amount"] == Decimal("20")
    assert adjustment["body"]["metadata"]["invoice"] == "in_000000000000000000000000"
    assert adjustment["body"]["metadata"]["payment_intent"] == "pi_000000000000000000000000"


def test_pre_basil_fixture_with_subscription_metadata_credits_that_customer(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    event = load(PRE_BASIL / "invoice.paid.json")
    named = sandbox.state.add_customer()
    decoy = sandbox.state.add_customer(external_id=event["data"]["object"]["customer"])
    event["data"]["object"]["subscription_details"] = {"metadata": {"credyt_customer_id": named}}
    assert running.send_stripe(event).status_code == 200
    running.settle()
    assert sandbox.state.balance(named, "USD") == Decimal("20.00")
    assert sandbox.state.balance(decoy, "USD") == 0


def test_basil_shape_credits_the_customer_in_parent_metadata(
    running: RunningBridge, sandbox: Sandbox
) -> None:
    event = load(BASIL / VECTOR["body_file"])
    event["id"] = "evt_basil_metadata"
    event["type"] = "invoice.paid"
    named = sandbox.state.add_customer()
    decoy = sandbox.state.add_customer(external_id=GENUINE_CUSTOMER)
    invoice = event["data"]["object"]
    invoice["parent"]["subscription_details"]["metadata"] = {"credyt_customer_id": named}
    assert running.send_stripe(event).status_code == 200
    running.settle()
    assert sandbox.state.balance(named, "CAD") == Decimal("49.99")
    assert sandbox.state.balance(decoy, "CAD") == 0


@pytest.mark.parametrize(
    ("currency", "minor", "major"),
    [
        ("jpy", 1500, Decimal("1500")),
        ("kwd", 12345, Decimal("12.345")),
        ("bhd", 1, Decimal("0.001")),
        ("usd", 1, Decimal("0.01")),
        ("huf", 12345, Decimal("123.45")),
    ],
)
@pytest.mark.parametrize("api_version", ["2025-03-31.basil", "2020-08-27"])
def test_currency_exponents_are_exact_end_to_end(
    running: RunningBridge,
    sandbox: Sandbox,
    currency: str,
    minor: int,
    major: Decimal,
    api_version: str,
) -> None:
    customer = sandbox.state.add_customer()
    event = stripe.sample_event(
        "invoice.paid",
        event_id=f"evt_{currency}",
        object_id=f"in_{currency}",
        customer=customer,
        amount_minor=minor,
        currency=currency,
        api_version=api_version,
    )
    assert running.send_stripe(event).status_code == 200
    running.settle()
    assert sandbox.state.balance(customer, currency.upper()) == major
    [adjustment] = sandbox.state.adjustments
    amount = adjustment["body"]["amount"]
    assert not isinstance(amount, float) and Decimal(amount) == major
    [row] = running.bridge.store.list_adjustments()
    assert Decimal(row.amount) == major
    assert f'"amount":{major}' in row.body  # the exact literal Credyt receives


def test_thin_event_is_400_with_a_clear_message(running: RunningBridge) -> None:
    thin = {
        "id": "evt_test_65R",
        "object": "v2.core.event",
        "type": "v1.billing.meter.error_report_triggered",
        "created": "2024-09-17T06:20:52.246Z",
        "related_object": {"id": "mtr_test_1", "type": "billing.meter", "url": "/v1/x"},
    }
    answer = running.send_stripe(thin)
    assert answer.status_code == 400
    assert "thin event" in answer.json()["error"]
    assert running.bridge.store.counts()["events"] == {}


def test_thin_event_envelope_error() -> None:
    body = json.dumps({"id": "evt_1", "object": "v2.core.event", "type": "x"}).encode()
    with pytest.raises(MalformedEventError, match="v2.core.event"):
        genuine_connector().envelope(body)


# -- normalize(): both shapes ----------------------------------------------------------


def test_normalize_the_genuine_basil_invoice() -> None:
    event = payment(genuine_connector().normalize(json.loads(GENUINE_BODY)))
    assert event.kind is Kind.PAYMENT
    assert event.psp == "stripe"
    assert event.event_type == "invoice.payment_succeeded"
    assert event.payment_key == GENUINE_INVOICE
    assert (event.currency, event.amount_minor, event.amount) == ("CAD", 4999, Decimal("49.99"))
    assert event.customer_hint is None
    assert event.psp_customer_id == GENUINE_CUSTOMER
    assert event.price_ids == ("price_1RCV6tCMHTTliF5iuMgrQbyE",)
    assert event.product_ids == ("prod_S6iXedXCQhbo7o",)
    assert event.period_end == datetime.fromtimestamp(1749435787, UTC)
    assert event.attributes["billing_reason"] == "subscription_create"
    assert event.object_ids["subscription"] == "sub_1RMgafCMHTTliF5imBKfvfyV"
    assert event.occurred_at == datetime.fromtimestamp(1746757389, UTC)
    assert event.raw["id"] == "evt_1RMgagCMHTTliF5iVoysIuMJ"


def test_normalize_the_pre_basil_invoice() -> None:
    event = payment(genuine_connector().normalize(load(PRE_BASIL / "invoice.paid.json")))
    assert event.payment_key == "in_000000000000000000000000"
    assert (event.currency, event.amount) == ("USD", Decimal("20.00"))
    assert event.psp_customer_id == "cus_00000000000000"
    assert event.price_ids == ("price_000000000000000000000000",)
    assert event.product_ids == ("prod_00000000000000",)
    assert event.period_end == datetime.fromtimestamp(1648320011, UTC)
    assert event.object_ids == {
        "invoice": "in_000000000000000000000000",
        "payment_intent": "pi_000000000000000000000000",
        "charge": "ch_000000000000000000000000",
    }


def test_customer_hint_from_basil_parent_subscription_details() -> None:
    raw = json.loads(GENUINE_BODY)
    raw["data"]["object"]["parent"]["subscription_details"]["metadata"] = {
        "credyt_customer_id": "cust_basil"
    }
    assert payment(genuine_connector().normalize(raw)).customer_hint == "cust_basil"


def test_customer_hint_from_older_subscription_details() -> None:
    raw = load(PRE_BASIL / "invoice.paid.json")
    raw["data"]["object"]["subscription_details"] = {"metadata": {"credyt_customer_id": "cust_old"}}
    assert payment(genuine_connector().normalize(raw)).customer_hint == "cust_old"


def test_customer_hint_from_the_invoice_metadata_first() -> None:
    raw = json.loads(GENUINE_BODY)
    invoice = raw["data"]["object"]
    invoice["metadata"] = {"credyt_customer_id": "cust_invoice"}
    invoice["parent"]["subscription_details"]["metadata"] = {"credyt_customer_id": "cust_sub"}
    assert payment(genuine_connector().normalize(raw)).customer_hint == "cust_invoice"


def test_custom_customer_metadata_key() -> None:
    raw = load(PRE_BASIL / "invoice.paid.json")
    raw["data"]["object"]["metadata"] = {"credyt_customer_id": "wrong", "wallet": "cust_right"}
    connector = StripeConnector(secrets=["x"], customer_metadata_key="wallet")
    assert payment(connector.normalize(raw)).customer_hint == "cust_right"


def test_sample_events_of_both_shapes_normalize_alike() -> None:
    events = [
        payment(
            genuine_connector().normalize(
                stripe.sample_event(
                    "invoice.paid",
                    event_id="evt_1",
                    object_id="in_1",
                    customer="cust_1",
                    amount_minor=4999,
                    api_version=version,
                    price="price_x",
                    created=1_700_000_000,
                )
            )
        )
        for version in ("2025-03-31.basil", "2020-08-27")
    ]
    basil, old = events
    assert "parent" in basil.raw["data"]["object"]
    assert "subscription_details" in old.raw["data"]["object"]
    for event in events:
        assert event.customer_hint == "cust_1"
        assert event.price_ids == ("price_x",)
        assert event.amount == Decimal("49.99")
        assert event.payment_key == "in_1"
        assert event.period_end == datetime.fromtimestamp(1_700_000_000 + 30 * 86400, UTC)


def test_period_end_is_the_latest_line_end() -> None:
    raw = load(PRE_BASIL / "invoice.paid.json")
    lines = raw["data"]["object"]["lines"]["data"]
    second = copy.deepcopy(lines[0])
    second["period"] = {"start": 1, "end": 1900000000}
    second["quantity"] = 3
    lines.append(second)
    event = payment(genuine_connector().normalize(raw))
    assert event.period_end == datetime.fromtimestamp(1900000000, UTC)
    assert event.quantity == 4


def test_zero_amount_invoice_is_a_payment_of_nothing() -> None:
    # A 100% coupon: fixed-amount rules still grant on it (`amount: paid` rules skip it).
    raw = load(PRE_BASIL / "invoice.paid.json")
    raw["data"]["object"]["amount_paid"] = 0
    event = payment(genuine_connector().normalize(raw))
    assert (event.amount_minor, event.amount) == (0, Decimal(0))


def test_negative_amount_invoice_is_ignored() -> None:
    raw = load(PRE_BASIL / "invoice.paid.json")
    raw["data"]["object"]["amount_paid"] = -1
    result = genuine_connector().normalize(raw)
    assert isinstance(result, Ignored) and "paid nothing" in result.reason


def test_other_event_types_are_ignored_with_why() -> None:
    raw = load(PRE_BASIL / "invoice.paid.json")
    raw["type"] = "customer.created"
    result = genuine_connector().normalize(raw)
    assert isinstance(result, Ignored) and "customer.created" in result.reason


@pytest.mark.parametrize("mode", ["live", "test"])
def test_mode_filters(mode: str) -> None:
    raw = load(PRE_BASIL / "invoice.paid.json")  # livemode false
    result = StripeConnector(secrets=["x"], mode=mode).normalize(raw)
    assert isinstance(result, Ignored) is (mode == "live")
