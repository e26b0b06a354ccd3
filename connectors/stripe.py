"""Stripe connector: verify `Stripe-Signature`, read events of every API version.

Signatures are checked with stripe-python's own `WebhookSignature.verify_header`
(HMAC-SHA256 over `"{t}.{body}"`, constant-time compare), once per configured
secret so a secret can be rolled; the timestamp is checked here, so a stale delivery
is told apart from a forged one. We never build `StripeObject`s: the body is parsed
with `json` once.

Payload shapes: before API version 2025-03-31 ("basil") an invoice carries
`subscription`, `subscription_details`, `payment_intent` and `charge`; from basil on
these moved under `invoice.parent.subscription_details` and `invoice_payment`
objects. Every reader below accepts both.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import stripe

from bridge.errors import EventError, MalformedEventError, SignatureError
from bridge.events import Envelope, Ignored, Kind, Normalized, PaymentEvent
from bridge.money import parse_minor, stripe_exponent, to_major

PSP = "stripe"
SIGNATURE_HEADER = "stripe-signature"

Raw = Mapping[str, Any]


class StripeConnector:
    psp = PSP
    signature_header = SIGNATURE_HEADER

    def __init__(
        self,
        *,
        secrets: Sequence[str],
        tolerance: float = 300,
        customer_metadata_key: str = "credyt_customer_id",
        mode: str = "any",
    ) -> None:
        self.secrets = tuple(secrets)
        self.tolerance = tolerance
        self.customer_metadata_key = customer_metadata_key
        self.mode = mode

    # -- verification -------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        header = headers.get(SIGNATURE_HEADER)
        if not header:
            raise SignatureError("missing Stripe-Signature header", reason="missing")
        timestamp = _header_timestamp(header)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignatureError("body is not UTF-8 text", reason="malformed") from exc
        if not any(_verify_with(body, header, secret) for secret in self.secrets):
            raise SignatureError(
                "Stripe-Signature matches none of the connector's secrets", reason="mismatch"
            )
        if self.tolerance and abs(time.time() - timestamp) > self.tolerance:
            raise SignatureError(
                f"Stripe-Signature timestamp {timestamp} is outside the {self.tolerance:g} s "
                "tolerance",
                reason="stale",
            )

    def envelope(self, body: bytes) -> Envelope:
        raw = _parse_json(body)
        if raw.get("object") == "v2.core.event":
            raise MalformedEventError(
                "thin events (v2.core.event) are not supported: point a snapshot event "
                "destination at this endpoint"
            )
        event_id, event_type = raw.get("id"), raw.get("type")
        if raw.get("object") != "event" or not isinstance(event_id, str) or not event_id:
            raise MalformedEventError("body is not a Stripe event (no object=event with an id)")
        if not isinstance(event_type, str) or not event_type:
            raise MalformedEventError(f"event {event_id} has no type")
        livemode = raw.get("livemode")
        return Envelope(event_id, event_type, livemode if isinstance(livemode, bool) else None)

    # -- normalization ------------------------------------------------------------

    def normalize(self, raw: Raw) -> Normalized:
        event_type = str(raw.get("type", ""))
        reader = EVENT_READERS.get(event_type)
        if reader is None:
            return Ignored(f"event type {event_type} is not one the bridge acts on")
        livemode = raw.get("livemode")
        if self.mode == "live" and livemode is not True:
            return Ignored("test-mode event on a connector that accepts live events only")
        if self.mode == "test" and livemode is not False:
            return Ignored("live-mode event on a connector that accepts test events only")
        obj = _data_object(raw)
        return reader(self, raw, obj)

    def _base(self, raw: Raw, obj: Raw, **fields: Any) -> PaymentEvent:
        created = raw.get("created")
        return PaymentEvent(
            psp=PSP,
            event_id=str(raw["id"]),
            event_type=str(raw["type"]),
            occurred_at=(
                datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None
            ),
            livemode=raw.get("livemode") if isinstance(raw.get("livemode"), bool) else None,
            raw=raw,
            **fields,
        )

    def _invoice_paid(self, raw: Raw, invoice: Raw) -> Normalized:
        """invoice.paid / invoice.payment_succeeded: the invoice's amount_paid, keyed by invoice."""
        invoice_id = _required_str(invoice, "id")
        amount_minor = parse_minor(invoice.get("amount_paid"), field="invoice.amount_paid")
        if amount_minor <= 0:
            return Ignored(f"invoice {invoice_id} paid nothing (amount_paid {amount_minor})")
        currency = _required_str(invoice, "currency").upper()
        subscription_details = _subscription_details(invoice)
        lines = _lines(invoice)
        object_ids = {"invoice": invoice_id}
        subscription = _id_of(subscription_details.get("subscription")) or _id_of(
            invoice.get("subscription")
        )
        if subscription:
            object_ids["subscription"] = subscription
        for key in ("payment_intent", "charge"):
            value = _id_of(invoice.get(key))
            if value:
                object_ids[key] = value
        metadata = _str_map(invoice.get("metadata"))
        return self._base(
            raw,
            invoice,
            kind=Kind.PAYMENT,
            payment_key=invoice_id,
            currency=currency,
            amount_minor=amount_minor,
            amount=to_major(amount_minor, stripe_exponent(currency)),
            customer_hint=self._customer_hint(
                metadata, _str_map(subscription_details.get("metadata"))
            ),
            psp_customer_id=_id_of(invoice.get("customer")),
            attributes=_attributes(billing_reason=invoice.get("billing_reason")),
            price_ids=tuple(p for p in (_line_price(line)[0] for line in lines) if p),
            product_ids=tuple(p for p in (_line_price(line)[1] for line in lines) if p),
            quantity=sum(_line_quantity(line) for line in lines) or 1,
            metadata=metadata,
            period_end=_period_end(lines),
            object_ids=object_ids,
        )

    def _customer_hint(self, *metadatas: Mapping[str, str]) -> str | None:
        for metadata in metadatas:
            value = metadata.get(self.customer_metadata_key)
            if value:
                return value
        return None


# Stripe event types the bridge acts on, and the reader for each. Every other type is
# stored and marked ignored.
EVENT_READERS: dict[str, Callable[[StripeConnector, Raw, Raw], Normalized]] = {
    "invoice.paid": StripeConnector._invoice_paid,
    "invoice.payment_succeeded": StripeConnector._invoice_paid,
}

# -- producing webhooks (send, demo, tests) ------------------------------------------


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Stripe would send with `body`, signed with `secret`."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={ts},v1={digest}", "Content-Type": "application/json"}


def sample_event(
    event_type: str,
    *,
    event_id: str,
    object_id: str,
    customer: str | None = None,
    psp_customer: str = "cus_demo",
    amount_minor: int = 2000,
    currency: str = "usd",
    api_version: str = "2025-03-31.basil",
    billing_reason: str = "subscription_cycle",
    price: str = "price_demo",
    created: int | None = None,
) -> dict[str, Any]:
    """A realistic Stripe event of `event_type` in the given API version's shape."""
    created = int(time.time()) if created is None else created
    metadata = {"credyt_customer_id": customer} if customer else {}
    if event_type not in ("invoice.paid", "invoice.payment_succeeded"):
        raise ValueError(f"no sample for Stripe event type {event_type}")
    line: dict[str, Any] = {
        "id": f"il_{object_id[3:]}",
        "object": "line_item",
        "amount": amount_minor,
        "currency": currency,
        "quantity": 1,
        "period": {"start": created, "end": created + 30 * 86400},
    }
    invoice: dict[str, Any] = {
        "id": object_id,
        "object": "invoice",
        "amount_paid": amount_minor,
        "amount_due": amount_minor,
        "currency": currency,
        "customer": psp_customer,
        "billing_reason": billing_reason,
        "status": "paid",
        "metadata": {},
        "lines": {"object": "list", "data": [line]},
    }
    if api_version >= "2025-03-31":
        line["pricing"] = {"type": "price_details", "price_details": {"price": price}}
        invoice["parent"] = {
            "type": "subscription_details",
            "subscription_details": {"subscription": "sub_demo", "metadata": metadata},
        }
    else:
        line["price"] = {"id": price, "object": "price", "product": "prod_demo"}
        invoice["subscription"] = "sub_demo"
        invoice["subscription_details"] = {"metadata": metadata}
        invoice["payment_intent"] = f"pi_{object_id[3:]}"
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "livemode": False,
        "type": event_type,
        "data": {"object": invoice},
    }


# -- payload readers ---------------------------------------------------------------


def _verify_with(body: bytes, header: str, secret: str) -> bool:
    try:
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance=None)
    except stripe.SignatureVerificationError:
        return False
    return True


def _header_timestamp(header: str) -> int:
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError:
                break
    raise SignatureError("Stripe-Signature has no valid t= timestamp", reason="malformed")


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedEventError("body is not valid JSON") from exc
    if not isinstance(raw, dict):
        raise MalformedEventError("body is not a JSON object")
    return raw


def _data_object(raw: Raw) -> Raw:
    data = raw.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise EventError("event has no data.object")
    return obj


def _required_str(obj: Raw, key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise EventError(f"{obj.get('object', 'object')} has no {key}")
    return value


def _id_of(value: Any) -> str | None:
    """An id whether the field is a plain id or an expanded object."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if v is not None}


def _attributes(**values: Any) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


def _subscription_details(invoice: Raw) -> Raw:
    """basil on: invoice.parent.subscription_details; before: invoice.subscription_details."""
    parent = invoice.get("parent")
    if isinstance(parent, Mapping):
        details = parent.get("subscription_details")
        if isinstance(details, Mapping):
            return details
    details = invoice.get("subscription_details")
    return details if isinstance(details, Mapping) else {}


def _lines(invoice: Raw) -> list[Raw]:
    lines = invoice.get("lines")
    data = lines.get("data") if isinstance(lines, Mapping) else None
    return [line for line in data if isinstance(line, Mapping)] if isinstance(data, list) else []


def _line_price(line: Raw) -> tuple[str | None, str | None]:
    """(price id, product id) of a line in either shape."""
    pricing = line.get("pricing")
    if isinstance(pricing, Mapping) and isinstance(pricing.get("price_details"), Mapping):
        details = pricing["price_details"]
        return _id_of(details.get("price")), _id_of(details.get("product"))
    price = line.get("price")
    if isinstance(price, Mapping):
        return _id_of(price.get("id")), _id_of(price.get("product"))
    return _id_of(price), None


def _line_quantity(line: Raw) -> int:
    quantity = line.get("quantity")
    return quantity if isinstance(quantity, int) and not isinstance(quantity, bool) else 0


def _period_end(lines: list[Raw]) -> datetime | None:
    ends = [
        line["period"]["end"]
        for line in lines
        if isinstance(line.get("period"), Mapping) and isinstance(line["period"].get("end"), int)
    ]
    return datetime.fromtimestamp(max(ends), UTC) if ends else None
