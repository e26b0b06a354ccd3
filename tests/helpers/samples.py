"""Signed-ready PSP events the tests send most."""

from __future__ import annotations

from typing import Any

from connectors import stripe


def invoice_event(
    event_id: str,
    invoice: str,
    *,
    customer: str | None = None,
    psp_customer: str = "cus_flow",
    amount_minor: int = 2500,
    currency: str = "usd",
    event_type: str = "invoice.paid",
    api_version: str = "2025-03-31.basil",
    billing_reason: str = "subscription_cycle",
) -> dict[str, Any]:
    return stripe.sample_event(
        event_type,
        event_id=event_id,
        object_id=invoice,
        customer=customer,
        psp_customer=psp_customer,
        amount_minor=amount_minor,
        currency=currency,
        api_version=api_version,
        billing_reason=billing_reason,
    )
