"""Unit tests of the Paddle connector: signatures, envelopes and normalization.

Payloads are Paddle's own: the `data` objects the paddle-python-sdk tests use, wrapped
in an envelope here, and the SDK's published signature vector (see
tests/fixtures/SOURCES.md).
"""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import EventError, MalformedEventError, SignatureError
from bridge.events import Envelope, Ignored, Kind, PaymentEvent
from connectors.paddle import (
    EVENT_READERS,
    PSP,
    SIGNATURE_HEADER,
    PaddleConnector,
    sample_event,
    sign,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "paddle"
SECRET = "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_testsecret"
OTHER_SECRET = "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_rotatedsecret"
OCCURRED_AT = "2024-04-12T10:18:49.738971Z"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_bytes())
    return data


def wrap(
    event_type: str, data: dict[str, Any], event_id: str = "evt_01hv8x2a0b0c0d0e0f0g0h0j0k"
) -> dict[str, Any]:
    """A Paddle envelope around a fixture's `data` object."""
    return {
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": OCCURRED_AT,
        "notification_id": "ntf_01hv8x2a0b0c0d0e0f0g0h0j0k",
        "data": data,
    }


def connector(**kwargs: Any) -> PaddleConnector:
    kwargs.setdefault("secrets", [SECRET])
    kwargs.setdefault("tolerance", 300)
    return PaddleConnector(**kwargs)


def payment(result: object) -> PaymentEvent:
    assert isinstance(result, PaymentEvent), result
    return result


def reason(result: object) -> str:
    assert isinstance(result, Ignored), result
    return result.reason


def header_with(ts: int, *digests: str) -> dict[str, str]:
    return {"Paddle-Signature": ";".join([f"ts={ts}", *(f"h1={d}" for d in digests)])}


def digest(body: bytes, secret: str, ts: int) -> str:
    return sign(body, secret, ts)["Paddle-Signature"].split(";h1=")[1]


# -- the contract ---------------------------------------------------------------------


def test_module_shape_matches_the_stripe_sibling() -> None:
    assert PSP == "paddle"
    assert SIGNATURE_HEADER == "paddle-signature"
    conn = connector()
    assert conn.psp == PSP and conn.signature_header == SIGNATURE_HEADER
    assert set(EVENT_READERS) == {
        "transaction.completed",
        "adjustment.created",
        "adjustment.updated",
    }


# -- signatures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vector() -> tuple[str, str, bytes]:
    """(secret, header, body) of Paddle's published signature vector."""
    spec = load("signature-vector.json")
    body = (FIXTURES / spec["body_file"]).read_bytes()
    if spec["strip_trailing_newline"]:
        assert body.endswith(b"\n")
        body = body.removesuffix(b"\n")
    return spec["secret"], spec["header"], body


def test_published_vector_verifies_with_the_timestamp_check_off(
    vector: tuple[str, str, bytes],
) -> None:
    secret, header, body = vector
    connector(secrets=[secret], tolerance=0).verify({"paddle-signature": header}, body)
    connector(secrets=[secret], tolerance=None).verify({"paddle-signature": header}, body)


def test_published_vector_is_stale_with_the_default_tolerance(
    vector: tuple[str, str, bytes],
) -> None:
    secret, header, body = vector
    with pytest.raises(SignatureError) as err:
        PaddleConnector(secrets=[secret]).verify({"paddle-signature": header}, body)
    assert err.value.reason == "stale"


def test_published_vector_with_its_trailing_newline_fails(vector: tuple[str, str, bytes]) -> None:
    secret, header, body = vector
    with pytest.raises(SignatureError) as err:
        connector(secrets=[secret], tolerance=0).verify({"paddle-signature": header}, body + b"\n")
    assert err.value.reason == "mismatch"


@pytest.mark.parametrize("position", [0, 100, -2, -1])
def test_one_byte_change_to_the_body_fails(vector: tuple[str, str, bytes], position: int) -> None:
    secret, header, body = vector
    changed = bytearray(body)
    changed[position] ^= 0x01
    with pytest.raises(SignatureError) as err:
        connector(secrets=[secret], tolerance=0).verify(
            {"paddle-signature": header}, bytes(changed)
        )
    assert err.value.reason == "mismatch"


@pytest.mark.parametrize("position", [0, 31, -1])
def test_one_character_change_to_h1_fails(vector: tuple[str, str, bytes], position: int) -> None:
    secret, header, body = vector
    ts_part, h1 = header.split(";h1=")
    chars = list(h1)
    chars[position] = "0" if chars[position] != "0" else "1"
    forged = f"{ts_part};h1={''.join(chars)}"
    with pytest.raises(SignatureError) as err:
        connector(secrets=[secret], tolerance=0).verify({"paddle-signature": forged}, body)
    assert err.value.reason == "mismatch"


def test_changed_timestamp_fails(vector: tuple[str, str, bytes]) -> None:
    secret, header, body = vector
    forged = header.replace("ts=1710498758", "ts=1710498759")
    with pytest.raises(SignatureError) as err:
        connector(secrets=[secret], tolerance=0).verify({"paddle-signature": forged}, body)
    assert err.value.reason == "mismatch"


@pytest.mark.parametrize(
    "headers", [{}, {"paddle-signature": ""}, {"stripe-signature": "t=1,v1=ab"}]
)
def test_missing_header(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError) as err:
        connector().verify(headers, b"{}")
    assert err.value.reason == "missing"


@pytest.mark.parametrize(
    "header",
    [
        "h1=" + "a" * 64,  # no ts
        "ts=1710498758",  # no h1
        "ts=1710498758;h1=",  # empty h1
        "ts=;h1=" + "a" * 64,  # empty ts
        "ts=abc;h1=" + "a" * 64,  # ts not a number
        "ts=-5;h1=" + "a" * 64,
        "ts=1;ts=2;h1=" + "a" * 64,  # two timestamps
        "t=1710498758,v1=" + "a" * 64,  # a Stripe header
        "garbage",
    ],
)
def test_malformed_header(header: str) -> None:
    with pytest.raises(SignatureError) as err:
        connector().verify({"paddle-signature": header}, b"{}")
    assert err.value.reason == "malformed"


def test_sign_round_trips_and_header_case_does_not_matter() -> None:
    body = json.dumps(
        sample_event("transaction.completed", event_id="evt_1", object_id="txn_1")
    ).encode()
    headers = sign(body, SECRET)
    assert headers["Content-Type"] == "application/json"
    assert headers["Paddle-Signature"].startswith("ts=")
    connector().verify(headers, body)
    connector().verify({k.lower(): v for k, v in headers.items()}, body)
    connector().verify({k.upper(): v for k, v in headers.items()}, body)


def test_sign_is_paddles_algorithm(vector: tuple[str, str, bytes]) -> None:
    secret, header, body = vector
    assert sign(body, secret, 1710498758)["Paddle-Signature"] == header


def test_unknown_header_keys_are_skipped() -> None:
    body = b'{"event_id":"evt_1"}'
    ts = int(time.time())
    headers = {"paddle-signature": f"ts={ts};h2=future;h1={digest(body, SECRET, ts)}"}
    connector().verify(headers, body)


@pytest.mark.parametrize("age", [-1000, 301, 100_000])
def test_stale_timestamp(age: int) -> None:
    body = b'{"event_id":"evt_1"}'
    headers = sign(body, SECRET, int(time.time()) - age)
    with pytest.raises(SignatureError) as err:
        connector(tolerance=300).verify(headers, body)
    assert err.value.reason == "stale"
    connector(tolerance=0).verify(headers, body)


@pytest.mark.parametrize("age", [0, 5, 290, -290])
def test_timestamp_within_tolerance_passes(age: int) -> None:
    body = b'{"event_id":"evt_1"}'
    connector(tolerance=300).verify(sign(body, SECRET, int(time.time()) - age), body)


def test_forged_old_request_is_a_mismatch_not_stale() -> None:
    body = b'{"event_id":"evt_1"}'
    headers = sign(body, "pdl_ntfset_not_ours", int(time.time()) - 100_000)
    with pytest.raises(SignatureError) as err:
        connector(tolerance=300).verify(headers, body)
    assert err.value.reason == "mismatch"


@pytest.mark.parametrize(
    ("signed_with", "configured"),
    [
        ([SECRET, OTHER_SECRET], [SECRET]),
        ([SECRET, OTHER_SECRET], [OTHER_SECRET]),
        ([OTHER_SECRET, SECRET], [SECRET]),
        ([SECRET], [OTHER_SECRET, SECRET]),
        ([SECRET], [SECRET, OTHER_SECRET]),
        ([OTHER_SECRET], [SECRET, OTHER_SECRET]),
        ([SECRET, OTHER_SECRET], [OTHER_SECRET, SECRET]),
        (["pdl_ntfset_unknown", SECRET], ["pdl_ntfset_else", SECRET]),
    ],
)
def test_rotation_any_h1_matching_any_secret_passes(
    signed_with: list[str], configured: list[str]
) -> None:
    body = b'{"event_id":"evt_1","event_type":"transaction.completed"}'
    ts = int(time.time())
    headers = header_with(ts, *(digest(body, secret, ts) for secret in signed_with))
    connector(secrets=configured).verify(headers, body)


@pytest.mark.parametrize(
    ("signed_with", "configured"),
    [
        ([SECRET, OTHER_SECRET], ["pdl_ntfset_else"]),
        ([SECRET], [OTHER_SECRET]),
        ([SECRET], []),
    ],
)
def test_rotation_no_match_fails(signed_with: list[str], configured: list[str]) -> None:
    body = b'{"event_id":"evt_1"}'
    ts = int(time.time())
    headers = header_with(ts, *(digest(body, secret, ts) for secret in signed_with))
    with pytest.raises(SignatureError) as err:
        connector(secrets=configured).verify(headers, body)
    assert err.value.reason == "mismatch"
    assert "PADDLE_WEBHOOK_SECRET" in str(err.value)


def test_non_ascii_h1_is_a_mismatch_not_a_crash() -> None:
    body = b"{}"
    with pytest.raises(SignatureError) as err:
        connector().verify(header_with(int(time.time()), "\u00e9" * 64), body)
    assert err.value.reason == "mismatch"


# -- envelopes ------------------------------------------------------------------------


def test_envelope_of_a_real_delivery() -> None:
    body = (FIXTURES / "customer.created.envelope.json").read_bytes()
    assert connector().envelope(body) == Envelope(
        "evt_01hs0tqfme2xwb2hvwv87p8y3w", "customer.created", None
    )


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        b'"evt_1"',
        b'{"event_type": "transaction.completed"}',
        b'{"event_id": "", "event_type": "transaction.completed"}',
        b'{"event_id": "evt_1"}',
        b'{"event_id": "evt_1", "event_type": 5}',
    ],
)
def test_malformed_envelope(body: bytes) -> None:
    with pytest.raises(MalformedEventError):
        connector().envelope(body)


# -- transaction.completed -------------------------------------------------------------


def test_transaction_completed_fixture() -> None:
    data = load("transaction.completed.data.json")
    raw = wrap("transaction.completed", data)
    event = payment(connector().normalize(raw))
    assert event.psp == "paddle"
    assert event.kind is Kind.PAYMENT
    assert event.event_id == "evt_01hv8x2a0b0c0d0e0f0g0h0j0k"
    assert event.event_type == "transaction.completed"
    assert event.payment_key == "txn_01hv8wptq8987qeep44cyrewp9"
    assert event.reversal_key is None
    assert event.currency == "USD"
    assert data["details"]["totals"]["grand_total"] == "65215"
    assert event.amount_minor == 65215
    assert event.amount == Decimal("652.15")
    assert event.psp_customer_id == "ctm_01hv6y1jedq4p1n0yqn5ba3ky4"
    assert event.customer_hint is None  # custom_data is null
    assert event.metadata == {}
    assert event.attributes == {
        "origin": "web",
        "status": "completed",
        "collection_mode": "automatic",
    }
    assert event.price_ids == (
        "pri_01gsz8x8sawmvhz1pv30nge1ke",
        "pri_01h1vjfevh5etwq3rb416a23h2",
        "pri_01gsz98e27ak2tyhexptwc58yk",
    )
    assert event.product_ids == (
        "pro_01gsz4t5hdjse780zja8vvr7jg",
        "pro_01h1vjes1y163xfj1rh1tkfb65",
        "pro_01gsz97mq9pa4fkyy0wqenepkz",
    )
    assert event.quantity == 12  # 10 seats + 1 + 1
    assert event.period_end == datetime(2024, 5, 12, 10, 18, 47, 635628, tzinfo=UTC)
    assert event.occurred_at == datetime(2024, 4, 12, 10, 18, 49, 738971, tzinfo=UTC)
    assert event.livemode is None
    assert event.object_ids == {
        "transaction": "txn_01hv8wptq8987qeep44cyrewp9",
        "subscription": "sub_01hv8x29kz0t586xy6zn1a62ny",
        "customer": "ctm_01hv6y1jedq4p1n0yqn5ba3ky4",
        "invoice_number": "325-10566",
    }
    assert event.raw is raw


def test_customer_hint_and_metadata_from_custom_data() -> None:
    data = load("transaction.completed.data.json")
    data["custom_data"] = {
        "credyt_customer_id": "cust_42",
        "plan": "pro",
        "seats": 10,
        "gone": None,
    }
    event = payment(connector().normalize(wrap("transaction.completed", data)))
    assert event.customer_hint == "cust_42"
    assert event.metadata == {"credyt_customer_id": "cust_42", "plan": "pro", "seats": "10"}
    other = connector(customer_metadata_key="account").normalize(
        wrap("transaction.completed", data)
    )
    assert payment(other).customer_hint is None


def test_transaction_paid_is_ignored() -> None:
    raw = wrap("transaction.paid", load("transaction.paid.data.json"))
    assert reason(connector().normalize(raw)) == (
        "event type transaction.paid is not one the bridge acts on"
    )


def test_paid_stage_payload_without_subscription_or_invoice_still_reads() -> None:
    """transaction.paid's data lacks subscription_id, invoice_number and billing_period."""
    completed = payment(
        connector().normalize(
            wrap("transaction.completed", load("transaction.completed.data.json"))
        )
    )
    early = payment(
        connector().normalize(wrap("transaction.completed", load("transaction.paid.data.json")))
    )
    assert early.payment_key == completed.payment_key
    assert (early.amount_minor, early.amount, early.currency) == (65215, Decimal("652.15"), "USD")
    assert early.object_ids == {
        "transaction": "txn_01hv8wptq8987qeep44cyrewp9",
        "customer": "ctm_01hv6y1jedq4p1n0yqn5ba3ky4",
    }
    assert early.period_end is None
    assert early.attributes["status"] == "paid"


@pytest.mark.parametrize(
    ("currency", "amount"),
    [
        ("JPY", Decimal("65215")),
        ("KRW", Decimal("65215")),
        ("jpy", Decimal("65215")),
        ("EUR", Decimal("652.15")),
    ],
)
def test_zero_decimal_currencies_are_whole_units(currency: str, amount: Decimal) -> None:
    data = load("transaction.completed.data.json")
    data["currency_code"] = currency
    event = payment(connector().normalize(wrap("transaction.completed", data)))
    assert event.currency == currency.upper()
    assert event.amount_minor == 65215
    assert event.amount == amount


def test_zero_grand_total_is_a_payment_of_nothing() -> None:
    # A 100% discount: fixed-amount rules still grant on it (`amount: paid` rules skip it).
    data = load("transaction.completed.data.json")
    data["details"]["totals"]["grand_total"] = "0"
    event = connector().normalize(wrap("transaction.completed", data))
    assert isinstance(event, PaymentEvent) and event.amount_minor == 0


def test_payment_method_change_is_ignored() -> None:
    data = load("transaction.completed.data.json")
    data["origin"] = "subscription_payment_method_change"
    why = reason(connector().normalize(wrap("transaction.completed", data)))
    assert "txn_01hv8wptq8987qeep44cyrewp9" in why
    assert "subscription_payment_method_change" in why


def _broken(change: str) -> dict[str, Any]:
    data = load("transaction.completed.data.json")
    if change == "no id":
        del data["id"]
    elif change == "text total":
        data["details"]["totals"]["grand_total"] = "652.15"
    elif change == "no total":
        del data["details"]["totals"]["grand_total"]
    elif change == "no details":
        data["details"] = None
    elif change == "no currency":
        data["currency_code"] = None
    elif change == "negative total":
        data["details"]["totals"]["grand_total"] = "-5"
    return wrap("transaction.completed", data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no id", "transaction has no id"),
        (
            "text total",
            "details.totals.grand_total is not an integer amount of minor units: '652.15'",
        ),
        ("no total", "has no details.totals.grand_total"),
        ("no details", "has no details.totals.grand_total"),
        ("no currency", "transaction txn_01hv8wptq8987qeep44cyrewp9 has no currency_code"),
        ("negative total", "negative grand_total"),
    ],
)
def test_broken_transaction_is_an_event_error(change: str, message: str) -> None:
    with pytest.raises(EventError, match=message.replace("(", r"\(").replace(".", r"\.")):
        connector().normalize(_broken(change))


def test_acted_on_event_without_data_is_an_event_error() -> None:
    raw = {"event_id": "evt_1", "event_type": "transaction.completed", "data": None}
    with pytest.raises(EventError, match="no data object"):
        connector().normalize(raw)


def test_other_event_types_are_ignored() -> None:
    raw = load("customer.created.envelope.json")
    assert reason(connector().normalize(raw)) == (
        "event type customer.created is not one the bridge acts on"
    )


def test_mode_is_not_enforced() -> None:
    raw = wrap("transaction.completed", load("transaction.completed.data.json"))
    for mode in ("any", "live", "test"):
        assert payment(connector(mode=mode).normalize(raw)).livemode is None


# -- adjustments ----------------------------------------------------------------------

ADJ_ID = "adj_01hvgf2s84dr6reszzg29zbvcm"
ADJ_TXN = "txn_01hvcc93znj3mpqt1tenkjb04y"


@pytest.mark.parametrize("event_type", ["adjustment.created", "adjustment.updated"])
def test_pending_approval_fixture_is_ignored(event_type: str) -> None:
    data = load(f"{event_type}.data.json")
    assert data["status"] == "pending_approval"
    assert reason(connector().normalize(wrap(event_type, data))) == (
        f"refund {ADJ_ID} is pending approval; its approval arrives as adjustment.updated"
    )


@pytest.mark.parametrize("event_type", ["adjustment.created", "adjustment.updated"])
def test_approved_refund_debits(event_type: str) -> None:
    data = load(f"{event_type}.data.json")
    data["status"] = "approved"
    raw = wrap(event_type, data)
    event = payment(connector().normalize(raw))
    assert event.kind is Kind.REVERSAL
    assert event.event_type == event_type
    assert event.reversal_key == ADJ_ID
    assert event.payment_key == ADJ_TXN
    assert data["totals"]["total"] == "100"
    assert event.amount_minor == 100
    assert event.amount == Decimal("1.00")
    assert event.currency == "USD"
    assert event.cumulative is False
    assert event.psp_customer_id == "ctm_01hv6y1jedq4p1n0yqn5ba3ky4"
    assert event.customer_hint is None
    assert event.attributes == {"action": "refund", "status": "approved"}
    assert event.object_ids == {
        "adjustment": ADJ_ID,
        "transaction": ADJ_TXN,
        "subscription": "sub_01hvccbx32q2gb40sqx7n42430",
        "customer": "ctm_01hv6y1jedq4p1n0yqn5ba3ky4",
    }
    assert event.occurred_at == datetime(2024, 4, 12, 10, 18, 49, 738971, tzinfo=UTC)
    assert event.raw is raw


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("refund", Kind.REVERSAL),
        ("chargeback", Kind.REVERSAL),
        ("chargeback_reverse", Kind.REINSTATEMENT),
    ],
)
def test_approved_adjustment_kinds(action: str, kind: Kind) -> None:
    data = load("adjustment.updated.data.json")
    data.update(action=action, status="approved")
    event = payment(connector().normalize(wrap("adjustment.updated", data)))
    assert event.kind is kind
    assert (event.reversal_key, event.payment_key) == (ADJ_ID, ADJ_TXN)
    assert event.attributes["action"] == action


@pytest.mark.parametrize(
    "action",
    [
        "credit",
        "credit_reverse",
        "chargeback_warning",
        "chargeback_warning_reverse",
        "something_new",
    ],
)
def test_adjustments_that_return_no_money_are_ignored(action: str) -> None:
    data = load("adjustment.updated.data.json")
    data.update(action=action, status="approved")
    why = reason(connector().normalize(wrap("adjustment.updated", data)))
    assert ADJ_ID in why and action in why


@pytest.mark.parametrize(
    ("status", "words"),
    [("rejected", "was rejected"), ("reversed", "was reversed"), ("on_hold", "has status on_hold")],
)
def test_unapproved_adjustments_are_ignored(status: str, words: str) -> None:
    data = load("adjustment.updated.data.json")
    data["status"] = status
    why = reason(connector().normalize(wrap("adjustment.updated", data)))
    assert why.startswith(f"refund {ADJ_ID} ") and words in why


def test_zero_decimal_refund() -> None:
    data = load("adjustment.updated.data.json")
    data.update(status="approved", currency_code="KRW")
    data["totals"]["total"] = "15000"
    event = payment(connector().normalize(wrap("adjustment.updated", data)))
    assert (event.currency, event.amount) == ("KRW", Decimal("15000"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("transaction_id", None, f"refund {ADJ_ID} has no transaction_id"),
        ("totals", {"total": "1.00"}, "totals.total is not an integer amount of minor units"),
        ("totals", {}, f"refund {ADJ_ID} has no totals.total"),
        ("id", None, "adjustment has no id"),
        ("currency_code", None, None),
    ],
)
def test_broken_approved_adjustment(field: str, value: Any, message: str | None) -> None:
    data = load("adjustment.updated.data.json")
    data.update(status="approved")
    data[field] = value
    if message is None:  # currency falls back to totals.currency_code
        assert payment(connector().normalize(wrap("adjustment.updated", data))).currency == "USD"
        data["totals"]["currency_code"] = None
        message = f"refund {ADJ_ID} has no currency_code"
    with pytest.raises(EventError, match=message.replace(".", r"\.")):
        connector().normalize(wrap("adjustment.updated", data))


# -- samples --------------------------------------------------------------------------


def _through_the_wire(event: dict[str, Any]) -> object:
    """Sign, verify, envelope and normalize a sample as the receiver and processor do."""
    conn = connector()
    body = json.dumps(event).encode()
    conn.verify(sign(body, SECRET), body)
    envelope = conn.envelope(body)
    assert (envelope.event_id, envelope.event_type) == (event["event_id"], event["event_type"])
    return conn.normalize(json.loads(body))


def test_sample_transaction_completed() -> None:
    created = 1_712_917_128
    event = sample_event(
        "transaction.completed",
        event_id="evt_demo1",
        object_id="txn_demo1",
        customer="cust_7",
        amount_minor=4999,
        created=created,
    )
    assert event["occurred_at"] == "2024-04-12T10:18:48.000000Z"
    result = payment(_through_the_wire(event))
    assert result.kind is Kind.PAYMENT
    assert (result.payment_key, result.amount_minor, result.amount) == (
        "txn_demo1",
        4999,
        Decimal("49.99"),
    )
    assert result.currency == "USD"
    assert result.customer_hint == "cust_7"
    assert result.psp_customer_id == "ctm_demo"
    assert result.price_ids == ("pri_demo",) and result.product_ids == ("pro_demo",)
    assert result.attributes["origin"] == "subscription_recurring"
    assert result.object_ids["subscription"] == "sub_demo"
    assert result.occurred_at == datetime.fromtimestamp(created, UTC)
    assert result.period_end is not None and result.period_end > result.occurred_at


def test_sample_in_yen_and_lower_case_currency() -> None:
    event = sample_event(
        "transaction.completed",
        event_id="evt_2",
        object_id="txn_2",
        amount_minor=1500,
        currency="jpy",
    )
    result = payment(_through_the_wire(event))
    assert (result.currency, result.amount) == ("JPY", Decimal("1500"))


def test_sample_transaction_paid_is_ignored() -> None:
    event = sample_event("transaction.paid", event_id="evt_3", object_id="txn_3")
    assert "transaction.paid" in reason(_through_the_wire(event))


@pytest.mark.parametrize("event_type", ["adjustment.created", "adjustment.updated"])
def test_sample_adjustments(event_type: str) -> None:
    approved = sample_event(
        event_type, event_id="evt_4", object_id="adj_4", transaction_id="txn_1", amount_minor=700
    )
    result = payment(_through_the_wire(approved))
    assert result.kind is Kind.REVERSAL
    assert (result.reversal_key, result.payment_key, result.amount) == (
        "adj_4",
        "txn_1",
        Decimal("7.00"),
    )
    pending = sample_event(
        event_type,
        event_id="evt_5",
        object_id="adj_5",
        transaction_id="txn_1",
        status="pending_approval",
    )
    assert "pending approval" in reason(_through_the_wire(pending))
    won = sample_event(
        event_type,
        event_id="evt_6",
        object_id="adj_6",
        transaction_id="txn_1",
        action="chargeback_reverse",
    )
    assert payment(_through_the_wire(won)).kind is Kind.REINSTATEMENT


def test_sample_errors() -> None:
    with pytest.raises(ValueError, match="transaction_id"):
        sample_event("adjustment.created", event_id="evt_7", object_id="adj_7")
    with pytest.raises(ValueError, match="no sample"):
        sample_event("subscription.created", event_id="evt_8", object_id="sub_8")


def test_samples_do_not_share_state() -> None:
    first = sample_event("transaction.completed", event_id="evt_9", object_id="txn_9")
    snapshot = copy.deepcopy(first)
    sample_event("transaction.completed", event_id="evt_10", object_id="txn_10", amount_minor=1)
    assert first == snapshot
