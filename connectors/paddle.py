"""Paddle Billing connector: verify `Paddle-Signature`, read transactions and adjustments.

Signatures: `Paddle-Signature: ts=<unix>;h1=<hex>[;h1=<hex>...]`, an HMAC-SHA256 of
`"{ts}:{raw body}"` keyed with the notification destination's secret used verbatim
(`pdl_ntfset_...`). Every `h1` is compared, in constant time, with the digest of every
configured secret and the delivery passes if any pair matches, so a secret can be
rolled (Paddle's Node SDK checks only the last `h1`; we check them all). The HMAC is
checked before the timestamp, so a forged request is reported as a mismatch, never as
stale.

Default tolerance, 300 s: Paddle's SDKs reject timestamps older than 5 s. Paddle signs
every delivery attempt afresh, so a short window would be safe against retries, but a
few seconds of clock skew or of queueing in a proxy would then turn genuine deliveries
into 400s that Paddle retries for days. We use 300 s, as for Stripe; the HMAC already
covers the timestamp, so the window only bounds replays of a captured request. It is
configurable, and 0 or None turns the check off.

Events acted on: `transaction.completed` (credit `details.totals.grand_total`) and
`adjustment.created` / `adjustment.updated` once `approved` (refunds and chargebacks
debit, their reversals credit back). `transaction.paid` comes earlier and may lack
`subscription_id` and `invoice_number`; it is stored and ignored. Amounts are strings
of minor units; JPY and KRW have no decimals.

Adjustment actions (Paddle's `Action` enum): `refund` and `chargeback` debit.
`chargeback_reverse` credits back. `chargeback_warning` and its reverse are ignored:
a warning may be followed by a real `chargeback` under another adjustment id, and
debiting both would take the money twice. `credit` and `credit_reverse` change what
is owed on an unpaid invoice, return no money, and are ignored. Statuses:
`pending_approval` (most refunds start here; the approval arrives as
`adjustment.updated`), `approved`, `rejected`, `reversed`: only `approved` is acted on.

Mode: Paddle payloads carry no live/test flag (sandbox and live are separate accounts
with separate destinations and secrets), so `mode` is accepted for symmetry with
Stripe and not enforced; `livemode` is always None.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.errors import EventError, MalformedEventError, SignatureError
from bridge.events import Envelope, Ignored, Kind, LineItem, Normalized, PaymentEvent
from bridge.money import paddle_exponent, parse_minor, to_major
from connectors import checked_moment

PSP = "paddle"
SIGNATURE_HEADER = "paddle-signature"

Raw = Mapping[str, Any]

# Transaction origins that never carry a payment: a payment-method update is a
# zero-value transaction.
IGNORED_ORIGINS = {
    "subscription_payment_method_change": "is a payment method change, not a payment",
}

# Adjustment actions the bridge acts on once approved, and the kind each becomes.
ADJUSTMENT_KINDS = {
    "refund": Kind.REVERSAL,
    "chargeback": Kind.REVERSAL,
    "chargeback_reverse": Kind.REINSTATEMENT,
}

# Adjustment actions that return no money, and why they are not acted on. Actions in
# neither table are ignored as unknown.
IGNORED_ACTIONS = {
    "credit": "reduces what is owed on an unpaid invoice; no money was returned",
    "credit_reverse": "reverses a credit on an unpaid invoice; no money moved",
    "chargeback_warning": "is a warning; the chargeback itself, if it comes, is debited",
    "chargeback_warning_reverse": "reverses a warning that was never debited",
}

# Adjustment statuses other than `approved`, and why each is not acted on.
ADJUSTMENT_STATUS_REASONS = {
    "pending_approval": "is pending approval; its approval arrives as adjustment.updated",
    "rejected": "was rejected by Paddle; no money moved",
    "reversed": "was reversed by Paddle; a debit already made for it is left as it is",
}


class PaddleConnector:
    psp = PSP
    signature_header = SIGNATURE_HEADER

    def __init__(
        self,
        *,
        secrets: Sequence[str],
        tolerance: float | None = 300,
        customer_metadata_key: str = "credyt_customer_id",
        mode: str = "any",
    ) -> None:
        self.secrets = tuple(secrets)
        self.tolerance = tolerance
        self.customer_metadata_key = customer_metadata_key
        self.mode = mode  # not enforced: Paddle payloads say nothing about live or test

    # -- verification -------------------------------------------------------------

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        header = _header(headers, SIGNATURE_HEADER)
        if not header:
            raise SignatureError("missing Paddle-Signature header", reason="missing")
        ts, signatures = _parse_signature_header(header)
        signed = ts.encode() + b":" + body
        matched = False
        for secret in self.secrets:
            expected = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()
            for candidate in signatures:
                matched |= hmac.compare_digest(expected.encode(), candidate)
        if not matched:
            raise SignatureError(
                "Paddle-Signature matches none of the connector's secrets "
                "(check PADDLE_WEBHOOK_SECRET)",
                reason="mismatch",
            )
        if self.tolerance and abs(time.time() - int(ts)) > self.tolerance:
            raise SignatureError(
                f"Paddle-Signature timestamp {ts} is outside the {self.tolerance:g} s tolerance",
                reason="stale",
            )

    def envelope(self, body: bytes) -> Envelope:
        raw = _parse_json(body)
        event_id, event_type = raw.get("event_id"), raw.get("event_type")
        if not isinstance(event_id, str) or not event_id:
            raise MalformedEventError("body is not a Paddle event (no event_id)")
        if not isinstance(event_type, str) or not event_type:
            raise MalformedEventError(f"event {event_id} has no event_type")
        return Envelope(event_id, event_type, None)

    # -- normalization ------------------------------------------------------------

    def normalize(self, raw: Raw) -> Normalized:
        event_type = str(raw.get("event_type", ""))
        reader = EVENT_READERS.get(event_type)
        if reader is None:
            return Ignored(f"event type {event_type} is not one the bridge acts on")
        obj = _data_object(raw)
        return reader(self, raw, obj)

    def _base(self, raw: Raw, **fields: Any) -> PaymentEvent:
        return PaymentEvent(
            psp=PSP,
            event_id=str(raw["event_id"]),
            event_type=str(raw["event_type"]),
            occurred_at=_checked_time("occurred_at", raw.get("occurred_at")),
            livemode=None,
            # major units derived here, so they always agree with amount_minor
            amount=to_major(fields["amount_minor"], paddle_exponent(fields["currency"])),
            raw=raw,
            **fields,
        )

    def _transaction_completed(self, raw: Raw, txn: Raw) -> Normalized:
        """transaction.completed: the transaction's grand_total, keyed by transaction id."""
        txn_id = _required_str(txn, "id", "transaction")
        origin = txn.get("origin")
        if isinstance(origin, str) and origin in IGNORED_ORIGINS:
            return Ignored(f"transaction {txn_id} {IGNORED_ORIGINS[origin]} (origin {origin})")
        totals = _mapping(_mapping(txn.get("details")).get("totals"))
        grand_total = totals.get("grand_total")
        if grand_total is None:
            raise EventError(f"transaction {txn_id} has no details.totals.grand_total")
        amount_minor = parse_minor(
            grand_total, field=f"transaction {txn_id} details.totals.grand_total"
        )
        # A zero grand_total (a 100% discount) is a payment still: fixed-amount rules
        # grant on it, `amount: paid` rules skip it (bridge.processing.rules).
        if amount_minor < 0:
            raise EventError(f"transaction {txn_id} has a negative grand_total ({amount_minor})")
        currency = _required_str(txn, "currency_code", f"transaction {txn_id}").upper()
        items = _items(txn)
        prices = [_mapping(item.get("price")) for item in items]
        object_ids = {"transaction": txn_id}
        for key, field in (
            ("subscription", "subscription_id"),
            ("customer", "customer_id"),
            ("invoice_number", "invoice_number"),
        ):
            value = txn.get(field)
            if isinstance(value, str) and value:
                object_ids[key] = value
        metadata = _str_map(txn.get("custom_data"))
        return self._base(
            raw,
            kind=Kind.PAYMENT,
            payment_key=txn_id,
            currency=currency,
            amount_minor=amount_minor,
            customer_hint=metadata.get(self.customer_metadata_key) or None,
            psp_customer_id=_optional_str(txn.get("customer_id")),
            attributes=_attributes(
                origin=txn.get("origin"),
                status=txn.get("status"),
                collection_mode=txn.get("collection_mode"),
            ),
            price_ids=tuple(p for p in (_optional_str(p.get("id")) for p in prices) if p),
            product_ids=tuple(p for p in (_optional_str(p.get("product_id")) for p in prices) if p),
            quantity=sum(_item_quantity(item) for item in items) or 1,
            lines=tuple(
                LineItem(
                    _optional_str(price.get("id")),
                    _optional_str(price.get("product_id")),
                    _item_quantity(item),
                )
                for item, price in zip(items, prices, strict=True)
            ),
            metadata=metadata,
            period_end=_checked_time(
                "billing_period.ends_at", _mapping(txn.get("billing_period")).get("ends_at")
            ),
            object_ids=object_ids,
        )

    def _adjustment(self, raw: Raw, adjustment: Raw) -> Normalized:
        """adjustment.created / .updated: an approved refund or chargeback, keyed by its id."""
        adj_id = _required_str(adjustment, "id", "adjustment")
        action = _required_str(adjustment, "action", f"adjustment {adj_id}")
        kind = ADJUSTMENT_KINDS.get(action)
        if kind is None:
            why = IGNORED_ACTIONS.get(action, "is not an action the bridge acts on")
            return Ignored(f"adjustment {adj_id} has action {action}, which {why}")
        status = _required_str(adjustment, "status", f"{action} {adj_id}")
        if status != "approved":
            why = ADJUSTMENT_STATUS_REASONS.get(status, f"has status {status}, not approved")
            return Ignored(f"{action} {adj_id} {why}")
        txn_id = _required_str(adjustment, "transaction_id", f"{action} {adj_id}")
        totals = _mapping(adjustment.get("totals"))
        total = totals.get("total")
        if total is None:
            raise EventError(f"{action} {adj_id} has no totals.total")
        amount_minor = parse_minor(total, field=f"{action} {adj_id} totals.total")
        if amount_minor == 0:
            return Ignored(f"{action} {adj_id} has a zero total")
        if amount_minor < 0:
            raise EventError(f"{action} {adj_id} has a negative total ({amount_minor})")
        currency = _optional_str(adjustment.get("currency_code")) or _optional_str(
            totals.get("currency_code")
        )
        if not currency:
            raise EventError(f"{action} {adj_id} has no currency_code")
        currency = currency.upper()
        object_ids = {"adjustment": adj_id, "transaction": txn_id}
        for key, field in (("subscription", "subscription_id"), ("customer", "customer_id")):
            value = adjustment.get(field)
            if isinstance(value, str) and value:
                object_ids[key] = value
        return self._base(
            raw,
            kind=kind,
            payment_key=txn_id,
            reversal_key=adj_id,
            currency=currency,
            amount_minor=amount_minor,
            psp_customer_id=_optional_str(adjustment.get("customer_id")),
            attributes=_attributes(action=action, status=status),
            object_ids=object_ids,
        )


# The `when:` conditions a rule of this connector can use: Paddle has no livemode flag
# (sandbox and live are separate accounts) and no billing_reason (see `origin`).
CONDITION_KEYS = frozenset({"origin", "currency", "price_ids", "product_ids", "metadata"})

# Paddle event types the bridge acts on, and the reader for each. Every other type is
# stored and marked ignored.
EVENT_READERS: dict[str, Callable[[PaddleConnector, Raw, Raw], Normalized]] = {
    "transaction.completed": PaddleConnector._transaction_completed,
    "adjustment.created": PaddleConnector._adjustment,
    "adjustment.updated": PaddleConnector._adjustment,
}

# -- producing webhooks (send, demo, tests) ------------------------------------------


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Paddle would send with `body`, signed with `secret`."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode("utf-8"), f"{ts}:".encode() + body, hashlib.sha256)
    return {
        "Paddle-Signature": f"ts={ts};h1={digest.hexdigest()}",
        "Content-Type": "application/json",
    }


def sample_event(
    event_type: str,
    *,
    event_id: str,
    object_id: str,
    customer: str | None = None,
    psp_customer: str = "ctm_demo",
    amount_minor: int = 2000,
    currency: str = "USD",
    origin: str = "subscription_recurring",
    price: str = "pri_demo",
    product: str = "pro_demo",
    subscription: str | None = "sub_demo",
    transaction_id: str | None = None,
    action: str = "refund",
    status: str = "approved",
    created: int | None = None,
) -> dict[str, Any]:
    """A realistic Paddle Billing event of `event_type`.

    `object_id` is the transaction id (txn_...) for `transaction.*` samples and the
    adjustment id (adj_...) for `adjustment.*` samples, which also need the
    `transaction_id` they adjust. `created` is a Unix time (default now).
    """
    created = int(time.time()) if created is None else created
    when = datetime.fromtimestamp(created, UTC)
    currency = currency.upper()
    amount = str(amount_minor)
    data: dict[str, Any]
    if event_type in ("transaction.completed", "transaction.paid"):
        data = _sample_transaction(
            event_type,
            object_id=object_id,
            customer=customer,
            psp_customer=psp_customer,
            amount=amount,
            currency=currency,
            origin=origin,
            price=price,
            product=product,
            subscription=subscription,
            when=when,
        )
    elif event_type in ("adjustment.created", "adjustment.updated"):
        if not transaction_id:
            raise ValueError(
                f"an {event_type} sample needs the transaction_id it adjusts "
                "(credyt-bridge send: --payment txn_...)"
            )
        data = {
            "id": object_id,
            "action": action,
            "type": "full",
            "reason": "requested by customer",
            "status": status,
            "transaction_id": transaction_id,
            "subscription_id": subscription,
            "customer_id": psp_customer,
            "currency_code": currency,
            "credit_applied_to_balance": None,
            "items": [
                {
                    "id": f"adjitm_{object_id[4:]}",
                    "item_id": f"txnitm_{transaction_id[4:]}",
                    "type": "full",
                    "amount": amount,
                    "proration": None,
                    "totals": {"subtotal": amount, "tax": "0", "total": amount},
                }
            ],
            "totals": {
                "subtotal": amount,
                "tax": "0",
                "total": amount,
                "fee": "0",
                "earnings": amount,
                "retained_fee": "0",
                "currency_code": currency,
            },
            "payout_totals": None,
            "tax_rates_used": None,
            "created_at": _rfc3339(when),
            "updated_at": _rfc3339(when),
        }
    else:
        raise ValueError(f"no sample for Paddle event type {event_type}")
    return {
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": _rfc3339(when),
        "notification_id": f"ntf_{event_id.removeprefix('evt_')}",
        "data": data,
    }


def _sample_transaction(
    event_type: str,
    *,
    object_id: str,
    customer: str | None,
    psp_customer: str,
    amount: str,
    currency: str,
    origin: str,
    price: str,
    product: str,
    subscription: str | None,
    when: datetime,
) -> dict[str, Any]:
    completed = event_type == "transaction.completed"
    totals = {
        "subtotal": amount,
        "discount": "0",
        "tax": "0",
        "total": amount,
        "credit": "0",
        "credit_to_balance": "0",
        "balance": "0",
        "grand_total": amount,
        "grand_total_tax": "0",
        "fee": "0" if completed else None,
        "earnings": amount if completed else None,
        "currency_code": currency,
    }
    return {
        "id": object_id,
        "status": "completed" if completed else "paid",
        "customer_id": psp_customer,
        "address_id": "add_demo",
        "business_id": None,
        "custom_data": {"credyt_customer_id": customer} if customer else None,
        "currency_code": currency,
        "origin": origin,
        "subscription_id": subscription if completed else None,
        "invoice_id": f"inv_{object_id[4:]}" if completed else None,
        "invoice_number": f"{object_id[-8:]}" if completed else None,
        "collection_mode": "automatic",
        "discount_id": None,
        "billing_details": None,
        "billing_period": (
            {"starts_at": _rfc3339(when), "ends_at": _rfc3339(when + timedelta(days=30))}
            if completed and subscription
            else None
        ),
        "items": [
            {
                "price": {
                    "id": price,
                    "product_id": product,
                    "type": "standard",
                    "status": "active",
                    "unit_price": {"amount": amount, "currency_code": currency},
                    "billing_cycle": (
                        {"interval": "month", "frequency": 1} if subscription else None
                    ),
                    "custom_data": None,
                },
                "quantity": 1,
                "proration": None,
            }
        ],
        "details": {
            "totals": totals,
            "line_items": [
                {
                    "id": f"txnitm_{object_id[4:]}",
                    "price_id": price,
                    "quantity": 1,
                    "tax_rate": "0",
                    "totals": {"subtotal": amount, "discount": "0", "tax": "0", "total": amount},
                    "product": {"id": product, "name": "Demo credits", "status": "active"},
                }
            ],
        },
        "payments": [
            {
                "amount": amount,
                "status": "captured",
                "created_at": _rfc3339(when),
                "captured_at": _rfc3339(when),
                "error_code": None,
                "method_details": {"type": "card", "card": {"type": "visa", "last4": "4242"}},
            }
        ],
        "created_at": _rfc3339(when),
        "updated_at": _rfc3339(when),
        "billed_at": _rfc3339(when),
    }


# -- payload readers ---------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever its case (plain dicts as well as Starlette's Headers)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _parse_signature_header(header: str) -> tuple[str, list[bytes]]:
    """(ts, [h1, ...]) from `ts=...;h1=...[;h1=...]`; unknown keys are skipped.

    ts stays text: the signed string uses it exactly as Paddle sent it.
    """
    timestamps: list[str] = []
    signatures: list[bytes] = []
    for item in header.split(";"):
        key, _, value = item.strip().partition("=")
        value = value.strip()
        if key == "ts":
            timestamps.append(value)
        elif key == "h1" and value:
            signatures.append(value.encode("utf-8", "replace"))
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise SignatureError("Paddle-Signature has no valid ts= timestamp", reason="malformed")
    if not signatures:
        raise SignatureError("Paddle-Signature has no h1= signature", reason="malformed")
    return timestamps[0], signatures


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
    if not isinstance(data, Mapping):
        raise EventError(f"{raw.get('event_type', 'event')} event has no data object")
    return data


def _mapping(value: Any) -> Raw:
    return value if isinstance(value, Mapping) else {}


def _required_str(obj: Raw, key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise EventError(f"{what} has no {key}")
    return value


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _str_map(value: Any) -> dict[str, str]:
    """custom_data as str -> str: strings as they are, anything else as compact JSON."""
    if not isinstance(value, Mapping):
        return {}
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), sort_keys=True)
        for k, v in value.items()
        if v is not None
    }


def _attributes(**values: Any) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


def _items(txn: Raw) -> list[Raw]:
    items = txn.get("items")
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def _item_quantity(item: Raw) -> int:
    quantity = item.get("quantity")
    return quantity if isinstance(quantity, int) and not isinstance(quantity, bool) else 0


def _parse_time(value: Any) -> datetime | None:
    """An aware datetime from an RFC 3339 string (naive ones are taken as UTC)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _checked_time(what: str, value: Any) -> datetime | None:
    """`_parse_time`, refusing a moment no real payment has (year 9999): EventError."""
    return checked_moment(what, value, _parse_time(value))


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
