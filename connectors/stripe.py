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
from datetime import datetime
from typing import Any

import stripe

from bridge.errors import EventError, MalformedEventError, SignatureError
from bridge.events import Envelope, Ignored, Kind, LineItem, Normalized, PaymentEvent
from bridge.money import parse_minor, stripe_exponent, to_major
from connectors import moment_of_unix

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
        header = headers.get(SIGNATURE_HEADER) or next(
            (v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), None
        )  # Starlette's headers ignore case; a plain mapping (tests, backfill) may not
        if not header:
            raise SignatureError("missing Stripe-Signature header", reason="missing")
        if not header.isascii():  # stripe's compare_digest raises TypeError on non-ASCII
            raise SignatureError("Stripe-Signature is not ASCII", reason="malformed")
        timestamp = _header_timestamp(header)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SignatureError("body is not UTF-8 text", reason="malformed") from exc
        if not any(_verify_with(body, header, secret) for secret in self.secrets):
            raise SignatureError(
                "Stripe-Signature matches none of the connector's secrets "
                "(check STRIPE_WEBHOOK_SECRET)",
                reason="mismatch",
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
                moment_of_unix("the event's created time", created)
                if isinstance(created, int) and not isinstance(created, bool)
                else None
            ),
            livemode=raw.get("livemode") if isinstance(raw.get("livemode"), bool) else None,
            # major units derived here, so they always agree with amount_minor
            amount=to_major(fields["amount_minor"], stripe_exponent(fields["currency"])),
            raw=raw,
            **fields,
        )

    def _invoice_paid(self, raw: Raw, invoice: Raw) -> Normalized:
        """invoice.paid / invoice.payment_succeeded: the invoice's amount_paid, keyed by invoice."""
        invoice_id = _required_str(invoice, "id")
        status = invoice.get("status")
        if isinstance(status, str) and status != "paid":
            return Ignored(f"invoice {invoice_id} has status {status}: it paid nothing yet")
        if "amount_paid" not in invoice and invoice.get("paid") is True:
            # Before amount_paid existed (API versions until 2018) a paid invoice had
            # paid its amount_due, as the API itself reported it then.
            amount_minor = parse_minor(invoice.get("amount_due"), field="invoice.amount_due")
        else:
            amount_minor = parse_minor(invoice.get("amount_paid"), field="invoice.amount_paid")
        if amount_minor < 0:
            return Ignored(f"invoice {invoice_id} paid nothing (amount_paid {amount_minor})")
        # 0.00 (a 100% coupon) is a payment still: fixed-amount rules grant on it, and
        # `amount: paid` rules skip it (bridge.processing.rules).
        currency = _required_str(invoice, "currency").upper()
        subscription_details = _subscription_details(invoice)
        object_ids = {"invoice": invoice_id}
        subscription = _id_of(subscription_details.get("subscription")) or _id_of(
            invoice.get("subscription")
        )
        if subscription:
            object_ids["subscription"] = subscription
        for key in ("payment_intent", "charge"):  # before basil only
            value = _id_of(invoice.get(key))
            if value:
                object_ids[key] = value
        return self._base(
            raw,
            invoice,
            kind=Kind.PAYMENT,
            payment_key=invoice_id,
            payment_ids=_ids(object_ids.get("payment_intent"), object_ids.get("charge")),
            currency=currency,
            amount_minor=amount_minor,
            object_ids=object_ids,
            **self._invoice_fields(invoice),
        )

    def _invoice_fields(self, invoice: Raw) -> dict[str, Any]:
        """What an invoice tells about its payment: customer, reason, lines, period."""
        lines = _lines(invoice)
        metadata = _str_map(invoice.get("metadata"))
        subscription_metadata = _str_map(_subscription_details(invoice).get("metadata"))
        return {
            "customer_hint": self._customer_hint(metadata, subscription_metadata),
            "psp_customer_id": _id_of(invoice.get("customer")),
            "attributes": _attributes(billing_reason=invoice.get("billing_reason")),
            "price_ids": tuple(p for p in (_line_price(line)[0] for line in lines) if p),
            "product_ids": tuple(p for p in (_line_price(line)[1] for line in lines) if p),
            "quantity": sum(_line_quantity(line) for line in lines) or 1,
            "lines": tuple(LineItem(*_line_price(line), _line_quantity(line)) for line in lines),
            "metadata": {**subscription_metadata, **metadata},
            "period_end": _period_end(lines),
        }

    def _invoice_payment_paid(self, raw: Raw, payment: Raw) -> Normalized:
        """invoice_payment.paid (basil on): one payment of an invoice, keyed by the invoice.

        It links the invoice to its PaymentIntent (basil invoices no longer name it), so
        a refund or dispute, which names the PaymentIntent, finds the invoice's credit.
        It names no customer and no metadata: unless its invoice is expanded, the
        processor takes the customer of the invoice's credit (from invoice.paid), or
        holds the event until that credit exists. Keyed by the invoice, it never credits
        an invoice that invoice.paid already credited.
        """
        payment_id = _required_str(payment, "id")
        status = payment.get("status")
        if status is not None and status != "paid":
            return Ignored(f"invoice payment {payment_id} has status {status}, not paid")
        invoice_ref = payment.get("invoice")
        invoice_id = _id_of(invoice_ref)
        if not invoice_id:
            raise EventError(f"invoice_payment {payment_id} has no invoice")
        amount_minor = parse_minor(payment.get("amount_paid") or 0, field="amount_paid")
        if amount_minor <= 0:
            return Ignored(f"invoice payment {payment_id} paid nothing ({amount_minor})")
        currency = _required_str(payment, "currency").upper()
        details = _mapping(payment.get("payment"))
        object_ids = {"invoice": invoice_id, "invoice_payment": payment_id}
        for key in ("payment_intent", "charge"):
            value = _id_of(details.get(key))
            if value:
                object_ids[key] = value
        return self._base(
            raw,
            payment,
            kind=Kind.PAYMENT,
            payment_key=invoice_id,
            payment_ids=_ids(object_ids.get("payment_intent"), object_ids.get("charge")),
            currency=currency,
            amount_minor=amount_minor,
            object_ids=object_ids,
            # Only an expanded invoice says these; a plain id gives empty values.
            **self._invoice_fields(_mapping(invoice_ref)),
        )

    def _checkout_session(self, raw: Raw, session: Raw) -> Normalized:
        """checkout.session.completed / .async_payment_succeeded: a paid payment-mode
        session's amount_total, keyed by its invoice if it made one, else its PaymentIntent."""
        session_id = _required_str(session, "id")
        mode = session.get("mode")
        if mode != "payment":
            why = CHECKOUT_MODES.get(str(mode), "is not a one-off payment")
            return Ignored(f"checkout session {session_id} has mode {mode}, which {why}")
        status = session.get("payment_status")
        if status != "paid":
            why = CHECKOUT_PAYMENT_STATUSES.get(str(status), "is not paid")
            return Ignored(f"checkout session {session_id} is {status}, which {why}")
        amount_minor = parse_minor(session.get("amount_total"), field="amount_total")
        if amount_minor <= 0:
            return Ignored(f"checkout session {session_id} paid nothing ({amount_minor})")
        currency = _required_str(session, "currency").upper()
        invoice_id = _id_of(session.get("invoice"))
        intent_id = _id_of(session.get("payment_intent"))
        object_ids = {"checkout_session": session_id}
        if invoice_id:
            object_ids["invoice"] = invoice_id
        if intent_id:
            object_ids["payment_intent"] = intent_id
        metadata = _str_map(session.get("metadata"))
        return self._base(
            raw,
            session,
            kind=Kind.PAYMENT,
            payment_key=invoice_id or intent_id or session_id,
            payment_ids=_ids(intent_id, session_id),
            currency=currency,
            amount_minor=amount_minor,
            customer_hint=self._customer_hint(metadata),
            psp_customer_id=_id_of(session.get("customer")),
            # A guest checkout (a Payment Link without customer creation) names no
            # customer and no invoice: no later event of the payment will name one.
            customer_later=bool(invoice_id),
            attributes=_attributes(mode=mode, payment_status=status),
            metadata=metadata,
            object_ids=object_ids,
        )

    def _payment_intent_succeeded(self, raw: Raw, intent: Raw) -> Normalized:
        """payment_intent.succeeded: amount_received, keyed by the PaymentIntent (before
        basil, by its invoice when it paid one: the same key as invoice.paid)."""
        intent_id = _required_str(intent, "id")
        status = intent.get("status")
        if status is not None and status != "succeeded":
            return Ignored(f"payment intent {intent_id} has status {status}, not succeeded")
        amount_minor = parse_minor(intent.get("amount_received"), field="amount_received")
        if amount_minor <= 0:
            return Ignored(f"payment intent {intent_id} received nothing ({amount_minor})")
        currency = _required_str(intent, "currency").upper()
        invoice_id = _id_of(intent.get("invoice"))  # before basil only
        charge_id = _id_of(intent.get("latest_charge")) or _first_charge(intent)
        object_ids = {"payment_intent": intent_id}
        if invoice_id:
            object_ids["invoice"] = invoice_id
        if charge_id:
            object_ids["charge"] = charge_id
        metadata = _str_map(intent.get("metadata"))
        return self._base(
            raw,
            intent,
            kind=Kind.PAYMENT,
            payment_key=invoice_id or intent_id,
            payment_ids=_ids(intent_id, charge_id),
            currency=currency,
            amount_minor=amount_minor,
            customer_hint=self._customer_hint(metadata),
            psp_customer_id=_id_of(intent.get("customer")),
            metadata=metadata,
            object_ids=object_ids,
        )

    def _refund(self, raw: Raw, refund: Raw) -> Normalized:
        """refund.created / refund.updated: a succeeded refund debits, keyed by its id."""
        refund_id = _required_str(refund, "id")
        status = _required_str(refund, "status")
        if status != "succeeded":
            why = REFUND_STATUSES.get(status, "is not succeeded")
            return Ignored(f"refund {refund_id} has status {status}, which {why}")
        return self._reversal(raw, refund, Kind.REVERSAL, refund_id, refund.get("amount"))

    def _charge_refunded(self, raw: Raw, charge: Raw) -> Normalized:
        """charge.refunded: the charge's cumulative amount_refunded; the processor debits
        only what earlier charge.refunded events of this charge did not, and not at all
        when a rule debits refund.created / refund.updated one by one."""
        charge_id = _required_str(charge, "id")
        return self._reversal(
            raw,
            charge,
            Kind.REVERSAL,
            charge_id,
            charge.get("amount_refunded"),
            charge_id=charge_id,
            cumulative=True,
            covered_by=("refund.created", "refund.updated"),
        )

    def _dispute(self, raw: Raw, dispute: Raw) -> Normalized:
        """charge.dispute.*: funds withdrawn debit, won back credit back, keyed by the dispute."""
        dispute_id = _required_str(dispute, "id")
        event_type = str(raw["type"])
        status = str(dispute.get("status"))
        if status.startswith("warning_"):
            return Ignored(
                f"dispute {dispute_id} is an inquiry (status {status}): no funds were withdrawn"
            )
        if event_type == "charge.dispute.closed" and status != "won":
            why = "its debit stands" if status == "lost" else "nothing to credit back"
            return Ignored(f"dispute {dispute_id} closed with status {status}: {why}")
        kind = DISPUTE_KINDS[event_type]
        # The reinstatement has its own key: both its events (funds_reinstated, closed
        # as won) name it, and it never collides with the debit's key.
        key = dispute_id if kind is Kind.REVERSAL else f"{dispute_id}:reinstated"
        return self._reversal(raw, dispute, kind, key, dispute.get("amount"))

    def _reversal(
        self,
        raw: Raw,
        obj: Raw,
        kind: Kind,
        reversal_key: str,
        amount: Any,
        *,
        charge_id: str | None = None,
        cumulative: bool = False,
        covered_by: tuple[str, ...] = (),
    ) -> Normalized:
        """A refund, charge or dispute, keyed to its payment by PaymentIntent or Charge."""
        object_id = _required_str(obj, "id")
        what = str(obj.get("object") or "object")
        amount_minor = parse_minor(amount, field=f"{what} {object_id} amount")
        if amount_minor <= 0:
            return Ignored(f"{what} {object_id} reverses nothing (amount {amount_minor})")
        currency = _required_str(obj, "currency").upper()
        intent_id = _id_of(obj.get("payment_intent"))
        charge_id = charge_id or _id_of(obj.get("charge"))
        invoice_id = _id_of(obj.get("invoice"))  # charges before basil
        payment_key = intent_id or charge_id
        if not payment_key:
            raise EventError(f"{what} {object_id} names no payment_intent and no charge")
        object_ids = {what: object_id}
        for key, value in (
            ("payment_intent", intent_id),
            ("charge", charge_id),
            ("invoice", invoice_id),
        ):
            if value:
                object_ids[key] = value
        metadata = _str_map(obj.get("metadata"))
        return self._base(
            raw,
            obj,
            kind=kind,
            payment_key=payment_key,
            payment_ids=_ids(intent_id, charge_id, invoice_id),
            reversal_key=reversal_key,
            cumulative=cumulative,
            covered_by=covered_by,
            currency=currency,
            amount_minor=amount_minor,
            customer_hint=self._customer_hint(metadata),
            psp_customer_id=_id_of(obj.get("customer")),
            attributes=_attributes(status=obj.get("status"), reason=obj.get("reason")),
            metadata=metadata,
            object_ids=object_ids,
        )

    def _customer_hint(self, *metadatas: Mapping[str, str]) -> str | None:
        for metadata in metadatas:
            value = metadata.get(self.customer_metadata_key)
            if value:
                return value
        return None


# The `when:` conditions a rule of this connector can use: Stripe events carry these.
CONDITION_KEYS = frozenset(
    {"billing_reason", "currency", "price_ids", "product_ids", "livemode", "metadata"}
)

# Stripe event types the bridge acts on, and the reader for each. Every other type is
# stored and marked ignored.
EVENT_READERS: dict[str, Callable[[StripeConnector, Raw, Raw], Normalized]] = {
    # payments: credit
    "invoice.paid": StripeConnector._invoice_paid,
    "invoice.payment_succeeded": StripeConnector._invoice_paid,
    "invoice_payment.paid": StripeConnector._invoice_payment_paid,
    "checkout.session.completed": StripeConnector._checkout_session,
    "checkout.session.async_payment_succeeded": StripeConnector._checkout_session,
    "payment_intent.succeeded": StripeConnector._payment_intent_succeeded,
    # reversals: debit (and credit back a dispute that was won)
    "refund.created": StripeConnector._refund,
    "refund.updated": StripeConnector._refund,
    "charge.refunded": StripeConnector._charge_refunded,
    "charge.dispute.created": StripeConnector._dispute,
    "charge.dispute.funds_withdrawn": StripeConnector._dispute,
    "charge.dispute.funds_reinstated": StripeConnector._dispute,
    "charge.dispute.closed": StripeConnector._dispute,
}

# Dispute events and what each becomes (charge.dispute.closed only when won).
DISPUTE_KINDS = {
    "charge.dispute.created": Kind.REVERSAL,
    "charge.dispute.funds_withdrawn": Kind.REVERSAL,
    "charge.dispute.funds_reinstated": Kind.REINSTATEMENT,
    "charge.dispute.closed": Kind.REINSTATEMENT,
}

# Refund statuses other than `succeeded`, and why each is not debited.
REFUND_STATUSES = {
    "pending": "is not final yet; refund.updated follows when it succeeds",
    "requires_action": "is not final yet; refund.updated follows when it succeeds",
    "failed": "returned no money",
    "canceled": "returned no money",
}

# Checkout Session modes other than `payment`, and why each is not credited here.
CHECKOUT_MODES = {
    "subscription": "is credited through its invoice (invoice.paid)",
    "setup": "saves a payment method and takes no money",
}

# Checkout Session payment statuses other than `paid`, and why each is not credited.
CHECKOUT_PAYMENT_STATUSES = {
    "unpaid": "waits for a delayed payment (checkout.session.async_payment_succeeded)",
    "no_payment_required": "took no money",
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
    product: str = "prod_demo",
    quantity: int = 1,
    created: int | None = None,
    payment: str | None = None,
    invoice: str | None = None,
    status: str | None = None,
    metadata: Mapping[str, str] | None = None,
    payment_amount_minor: int | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    """A realistic Stripe event of `event_type` in the given API version's shape.

    `object_id` is the id of the event's object (in_, inpay_, cs_, pi_, re_, ch_, dp_).
    The ids of one payment share their suffix: invoice `in_X` was paid by PaymentIntent
    `pi_X` through charge `ch_X`, and session `cs_X` made `pi_X`. Reversals, and
    invoice_payment.paid, name the payment they belong to with `payment` (any of its
    ids); `amount_minor` is then the refunded, disputed or (charge.refunded) cumulative
    refunded amount. `status` overrides the object's status (refund `pending`, session
    `unpaid`, dispute `lost`...); `invoice` makes a session or a pre-basil PaymentIntent
    belong to an invoice; `metadata` is the object's own metadata.
    """
    created = int(time.time()) if created is None else created
    basil = api_version >= "2025-03-31"
    own = dict(metadata or {})
    if customer:
        own.setdefault("credyt_customer_id", customer)
    obj: dict[str, Any]
    if event_type in ("invoice.paid", "invoice.payment_succeeded"):
        obj = _sample_invoice(
            object_id,
            customer,
            psp_customer,
            amount_minor,
            currency,
            basil,
            billing_reason,
            price,
            product,
            quantity,
            created,
            dict(metadata or {}),
        )
    elif event_type == "invoice_payment.paid":
        named = payment or invoice or object_id
        invoice_id = invoice or (named if named.startswith("in_") else f"in_{_suffix(named)}")
        obj = {
            "id": object_id,
            "object": "invoice_payment",
            "amount_paid": amount_minor,
            "amount_requested": amount_minor,
            "created": created,
            "currency": currency,
            "invoice": invoice_id,
            "is_default": True,
            "livemode": livemode,
            "payment": {"type": "payment_intent", "payment_intent": _intent_of(named)},
            "status": status or "paid",
            "status_transitions": {"canceled_at": None, "paid_at": created},
        }
    elif event_type.startswith("checkout.session."):
        obj = {
            "id": object_id,
            "object": "checkout.session",
            "mode": "payment",
            "amount_subtotal": amount_minor,
            "amount_total": amount_minor,
            "currency": currency,
            "customer": psp_customer,
            "client_reference_id": None,
            "invoice": invoice,
            "payment_intent": _intent_of(object_id),
            "payment_status": status or "paid",
            "status": "complete",
            "metadata": own,
            "livemode": livemode,
        }
    elif event_type == "payment_intent.succeeded":
        charge = {"id": f"ch_{_suffix(object_id)}", "object": "charge", "amount": amount_minor}
        obj = {
            "id": object_id,
            "object": "payment_intent",
            "amount": amount_minor,
            "amount_received": amount_minor,
            "currency": currency,
            "customer": psp_customer,
            "status": status or "succeeded",
            "metadata": own,
            "livemode": livemode,
            "latest_charge": charge["id"],
        }
        if not basil:
            obj["invoice"] = invoice
            obj["charges"] = {"object": "list", "data": [charge], "has_more": False}
    elif event_type in ("refund.created", "refund.updated"):
        target = payment or object_id
        obj = {
            "id": object_id,
            "object": "refund",
            "amount": amount_minor,
            "charge": f"ch_{_suffix(target)}",
            "payment_intent": _intent_of(target),
            "currency": currency,
            "status": status or "succeeded",
            "reason": "requested_by_customer",
            "metadata": dict(metadata or {}),
            "created": created,
        }
    elif event_type == "charge.refunded":
        charge_id = f"ch_{_suffix(payment)}" if payment else object_id
        paid = max(payment_amount_minor or amount_minor, amount_minor)
        obj = {
            "id": charge_id,
            "object": "charge",
            "amount": paid,
            "amount_captured": paid,
            "amount_refunded": amount_minor,
            "refunded": amount_minor >= paid,
            "currency": currency,
            "customer": psp_customer,
            "payment_intent": _intent_of(payment) if payment else None,
            "metadata": dict(metadata or {}),
            "status": "succeeded",
        }
        if not basil:
            obj["invoice"] = invoice
    elif event_type.startswith("charge.dispute."):
        target = payment or object_id
        default = DISPUTE_SAMPLE_STATUSES.get(event_type)
        if default is None:
            raise ValueError(f"no sample for Stripe event type {event_type}")
        obj = {
            "id": object_id,
            "object": "dispute",
            "amount": amount_minor,
            "charge": f"ch_{_suffix(target)}",
            "payment_intent": _intent_of(target),
            "currency": currency,
            "status": status or default,
            "reason": "fraudulent",
            "metadata": dict(metadata or {}),
            "created": created,
        }
    else:
        raise ValueError(f"no sample for Stripe event type {event_type}")
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "livemode": livemode,
        "type": event_type,
        "data": {"object": obj},
    }


# The status a sample dispute has in each event.
DISPUTE_SAMPLE_STATUSES = {
    "charge.dispute.created": "needs_response",
    "charge.dispute.funds_withdrawn": "needs_response",
    "charge.dispute.funds_reinstated": "won",
    "charge.dispute.closed": "won",
}


def _sample_invoice(
    invoice_id: str,
    customer: str | None,
    psp_customer: str,
    amount_minor: int,
    currency: str,
    basil: bool,
    billing_reason: str,
    price: str,
    product: str,
    quantity: int,
    created: int,
    metadata: dict[str, str],
) -> dict[str, Any]:
    subscription_metadata = {"credyt_customer_id": customer} if customer else {}
    line: dict[str, Any] = {
        "id": f"il_{_suffix(invoice_id)}",
        "object": "line_item",
        "amount": amount_minor,
        "currency": currency,
        "quantity": quantity,
        "period": {"start": created, "end": created + 30 * 86400},
    }
    invoice: dict[str, Any] = {
        "id": invoice_id,
        "object": "invoice",
        "amount_paid": amount_minor,
        "amount_due": amount_minor,
        "currency": currency,
        "customer": psp_customer,
        "billing_reason": billing_reason,
        "status": "paid",
        "metadata": metadata,
        "lines": {"object": "list", "data": [line]},
    }
    if basil:
        line["pricing"] = {
            "type": "price_details",
            "price_details": {"price": price, "product": product},
        }
        invoice["parent"] = {
            "type": "subscription_details",
            "subscription_details": {"subscription": "sub_demo", "metadata": subscription_metadata},
        }
    else:
        line["price"] = {"id": price, "object": "price", "product": product}
        invoice["subscription"] = "sub_demo"
        invoice["subscription_details"] = {"metadata": subscription_metadata}
        invoice["payment_intent"] = _intent_of(invoice_id)
        invoice["charge"] = f"ch_{_suffix(invoice_id)}"
    return invoice


def _suffix(object_id: str) -> str:
    return object_id.partition("_")[2] or object_id


def _intent_of(payment: str) -> str | None:
    """The sample PaymentIntent of a payment named by any of its ids (none for a bare charge)."""
    if payment.startswith("pi_"):
        return payment
    return None if payment.startswith("ch_") else f"pi_{_suffix(payment)}"


# -- payload readers ---------------------------------------------------------------


def _verify_with(body: bytes, header: str, secret: str) -> bool:
    # Decoded here: stripe before 16 formats a bytes payload as "b'...'" (never matching),
    # and 16 decodes it without catching a body that is not UTF-8.
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
    except stripe.SignatureVerificationError:
        return False
    return True


def _header_timestamp(header: str) -> int:
    """The one `t` of a Stripe-Signature header, read as stripe's WebhookSignature reads it.

    The library splits on `,` then on `=`, keys taken as they are (` t` is not `t`), and
    signs with the first `t`. A header with any other item that is a `t` once stripped
    (`t=NOW, t=OLD` or `v1=SIG, t=NOW,t=OLD`) is refused: the tolerance must be checked
    against the very timestamp the signature covers, and no reader may see another."""
    items = [item.split("=", 2) for item in header.split(",")]
    if sum(1 for item in items if item[0].strip() == "t") != 1:
        raise SignatureError(
            "Stripe-Signature must carry exactly one t= timestamp", reason="malformed"
        )
    found = [item for item in items if item[0] == "t"]
    if not found or len(found[0]) < 2 or not found[0][1].isdigit():
        raise SignatureError("Stripe-Signature has no valid t= timestamp", reason="malformed")
    return int(found[0][1])


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


def _mapping(value: Any) -> Raw:
    return value if isinstance(value, Mapping) else {}


def _ids(*values: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _first_charge(intent: Raw) -> str | None:
    """Before 2022-11-15 a PaymentIntent lists its charges; later ones name latest_charge."""
    data = _mapping(intent.get("charges")).get("data")
    if isinstance(data, list) and data and isinstance(data[0], Mapping):
        return _id_of(data[0].get("id"))
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
    return moment_of_unix("the invoice line's period end", max(ends)) if ends else None
