"""Producing Stripe webhooks as Stripe sends them, for `send`, the demo and the tests."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

from connectors import SampleRequest
from connectors.base import sample_arguments


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
    tax_minor: int = 0,
) -> dict[str, object]:
    """A realistic Stripe event of `event_type` in the given API version's shape.

    `object_id` is the id of the event's object (in_, inpay_, cs_, pi_, re_, ch_, dp_).
    The ids of one payment share their suffix: invoice `in_X` was paid by PaymentIntent
    `pi_X` through charge `ch_X`, and session `cs_X` made `pi_X`. Reversals, and
    invoice_payment.paid, name the payment they belong to with `payment` (any of its
    ids); `amount_minor` is then the refunded, disputed or (charge.refunded) cumulative
    refunded amount. `status` overrides the object's status (refund `pending`, session
    `unpaid`, dispute `lost`...); `invoice` makes a session or a pre-basil PaymentIntent
    belong to an invoice; `metadata` is the object's own metadata. `tax_minor` is the
    tax inside a payment's `amount_minor` (tax-exclusive pricing: the list price is
    the rest), in each object's own tax fields.
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
            tax_minor,
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
            "amount_subtotal": amount_minor - tax_minor,
            "amount_total": amount_minor,
            "total_details": {
                "amount_discount": 0,
                "amount_shipping": 0,
                "amount_tax": tax_minor,
            },
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
    tax_minor: int,
) -> dict[str, Any]:
    subscription_metadata = {"credyt_customer_id": customer} if customer else {}
    line: dict[str, Any] = {
        "id": f"il_{_suffix(invoice_id)}",
        "object": "line_item",
        "amount": amount_minor - tax_minor,
        "currency": currency,
        "quantity": quantity,
        "period": {"start": created, "end": created + 30 * 86400},
    }
    invoice: dict[str, Any] = {
        "id": invoice_id,
        "object": "invoice",
        "amount_paid": amount_minor,
        "amount_due": amount_minor,
        "subtotal": amount_minor - tax_minor,
        "total": amount_minor,
        "total_excluding_tax": amount_minor - tax_minor,
        "subtotal_excluding_tax": amount_minor - tax_minor,
        "starting_balance": 0,
        "currency": currency,
        "customer": psp_customer,
        "billing_reason": billing_reason,
        "status": "paid",
        "metadata": metadata,
        "lines": {"object": "list", "data": [line]},
    }
    tax = {"amount": tax_minor, "taxable_amount": amount_minor - tax_minor}
    if basil:
        invoice["total_taxes"] = (
            [{**tax, "tax_behavior": "exclusive", "type": "tax_rate_details"}] if tax_minor else []
        )
        line["pricing"] = {
            "type": "price_details",
            "price_details": {"price": price, "product": product},
        }
        invoice["parent"] = {
            "type": "subscription_details",
            "subscription_details": {"subscription": "sub_demo", "metadata": subscription_metadata},
        }
    else:
        invoice["tax"] = tax_minor or None
        invoice["total_tax_amounts"] = (
            [{"amount": tax_minor, "inclusive": False, "tax_rate": "txr_demo"}] if tax_minor else []
        )
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


def sample(request: SampleRequest) -> dict[str, object]:
    """`sample_event` for `credyt-bridge send`: a reversal names its payment with `payment`."""
    arguments = sample_arguments(request, payment_keyword="payment")
    arguments["currency"] = request.currency.lower()
    return sample_event(request.event_type, **arguments)
