"""Producing Paddle webhooks as Paddle sends them, for `send`, the demo and the tests."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors import SampleRequest
from connectors.base import sample_arguments


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
    tax_minor: int = 0,
) -> dict[str, object]:
    """A realistic Paddle Billing event of `event_type`.

    `object_id` is the transaction id (txn_...) for `transaction.*` samples and the
    adjustment id (adj_...) for `adjustment.*` samples, which also need the
    `transaction_id` they adjust. `created` is a Unix time (default now). `tax_minor` is
    the tax inside `amount_minor` (tax-exclusive pricing: `subtotal` is the rest), for a
    refund its share of the refunded amount.
    """
    created = int(time.time()) if created is None else created
    when = datetime.fromtimestamp(created, UTC)
    currency = currency.upper()
    amount = str(amount_minor)
    tax, net = str(tax_minor), str(amount_minor - tax_minor)
    data: dict[str, Any]
    if event_type in ("transaction.completed", "transaction.paid"):
        data = _sample_transaction(
            event_type,
            object_id=object_id,
            customer=customer,
            psp_customer=psp_customer,
            amount=amount,
            tax=tax,
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
                    "totals": {"subtotal": net, "tax": tax, "total": amount},
                }
            ],
            "totals": {
                "subtotal": net,
                "tax": tax,
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
    tax: str,
    currency: str,
    origin: str,
    price: str,
    product: str,
    subscription: str | None,
    when: datetime,
) -> dict[str, Any]:
    completed = event_type == "transaction.completed"
    net = str(int(amount) - int(tax))
    totals = {
        "subtotal": net,
        "discount": "0",
        "tax": tax,
        "total": amount,
        "credit": "0",
        "credit_to_balance": "0",
        "balance": "0",
        "grand_total": amount,
        "grand_total_tax": tax,
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
                    "unit_price": {"amount": net, "currency_code": currency},
                    "tax_mode": "external",
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
                    "tax_rate": str(Decimal(tax) / Decimal(net)) if int(net) else "0",
                    "totals": {"subtotal": net, "discount": "0", "tax": tax, "total": amount},
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


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sample(request: SampleRequest) -> dict[str, object]:
    """`sample_event` for `credyt-bridge send`: an adjustment names its `transaction_id`."""
    arguments = sample_arguments(request, payment_keyword="transaction_id")
    arguments["currency"] = request.currency.upper()
    return sample_event(request.event_type, **arguments)
